"""Audio files for transcription: recognise the format from the bytes, name uploads right, split big files."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING

from bot import errors

if TYPE_CHECKING:
    import av
    import av.container

log = logging.getLogger(__name__)

# What the transcription API accepts; it decides by the file name's extension.
API_EXTENSIONS: tuple[str, ...] = ("flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm")
API_LIMIT_BYTES = 25 * 1024 * 1024
# gpt-4o(-mini)-transcribe refuse requests longer than 1500 s, whatever their size.
MAX_PART_SECONDS = 1200.0
# Parts are re-encoded as Ogg Opus mono: 32 kbit/s is what Discord uses for voice messages.
PART_BITRATE = 32_000
PART_RATE = 48_000
_AUDIO_HINTS = (*API_EXTENSIONS, "opus", "oga", "aac", "amr", "mov", "mkv", "m4v", "3gp", "wma", "aiff")
_NOT_MEDIA_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"PK\x03\x04", b"\x7fELF")

ACCEPTED_TEXT = "flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav, webm"


class NotAudio(errors.InvalidInput):
    """The file is not audio or video at all."""


class CorruptAudio(errors.InvalidInput):
    """The file claims to be audio or video but cannot be decoded."""


@dataclass(frozen=True)
class AudioPart:
    """One upload for the API: a name whose extension the API accepts, and its bytes."""

    filename: str
    data: bytes
    seconds: float | None = None


def sniff_format(data: bytes) -> str | None:
    """The API extension matching the bytes' container, or None when they are no known audio/video."""
    head = data[:64]
    if head.startswith(b"OggS"):
        return "ogg"  # Ogg Opus (Discord voice messages) and Ogg Vorbis: `.opus` would be refused
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "webm"  # EBML: WebM and Matroska
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "m4a" if brand.startswith((b"M4A", b"M4B")) else "mp4"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def looks_like_media(filename: str, content_type: str | None) -> bool:
    """Whether the name or the declared type says audio/video (used to word refusals, never to accept)."""
    if content_type and content_type.split("/")[0] in {"audio", "video"}:
        return True
    return PurePath(filename).suffix.lower().lstrip(".") in _AUDIO_HINTS


def upload_name(filename: str, extension: str) -> str:
    stem = PurePath(filename).stem or "audio"
    return f"{stem}.{extension}"


@dataclass(frozen=True)
class Probe:
    seconds: float | None
    has_audio: bool


def probe(data: bytes) -> Probe:
    """Open the container and decode its first audio frames; raises ValueError-like av errors when corrupt."""
    import av  # imported on first use: PyAV is ~16 MiB resident (docs/performance.md)

    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.audio:
            return Probe(None, False)
        seconds = float(container.duration) / 1_000_000 if container.duration else None
        decoded = 0
        for _frame in container.decode(audio=0):
            decoded += 1
            if decoded >= 5:
                break
        if decoded == 0:
            raise av.error.InvalidDataError(0, "no audio frame could be decoded")
        return Probe(seconds, True)


def _refuse_unreadable(filename: str, content_type: str | None) -> errors.InvalidInput:
    if looks_like_media(filename, content_type):
        return CorruptAudio(message_id="input.audio.corrupt", name=filename)
    return NotAudio(message_id="input.audio.not_audio", name=filename, formats=ACCEPTED_TEXT)


class TooLong(errors.InvalidInput):
    """Audio longer than the bot transcribes in one request (TRANSCRIPTION_MAX_MINUTES)."""

    def __init__(self, filename: str, max_seconds: float) -> None:
        super().__init__(message_id="input.audio.too_long", name=filename, minutes=f"{max_seconds / 60:g}")


def prepare_upload(
    filename: str,
    content_type: str | None,
    data: bytes,
    *,
    limit_bytes: int = API_LIMIT_BYTES,
    max_part_seconds: float = MAX_PART_SECONDS,
    max_seconds: float = float("inf"),
) -> list[AudioPart]:
    """The uploads that carry this file's audio, in order. Blocking (PyAV): run it in a thread.

    A file the API takes as it is goes up once, named with the extension of its real format. A file over
    `limit_bytes` (or longer than one request may be) is decoded and re-encoded as Ogg Opus parts.
    """
    import av

    if not data:
        raise NotAudio(message_id="input.audio.empty", name=filename, formats=ACCEPTED_TEXT)
    extension = sniff_format(data)
    if extension is None or data.startswith(_NOT_MEDIA_MAGIC):
        raise _refuse_unreadable(filename, content_type)
    try:
        found = probe(data)
    except (av.error.FFmpegError, ValueError, IndexError, OSError) as exc:
        log.info("audio probe failed: %s", type(exc).__name__)
        raise _refuse_unreadable(filename, content_type or "audio/unknown") from exc
    if not found.has_audio:
        raise NotAudio(message_id="input.audio.no_sound", name=filename)
    # Decoding costs worker time in proportion to the length, however small the file: a long silence
    # compresses to almost nothing. The header's duration refuses it before any decoding.
    if found.seconds is not None and found.seconds > max_seconds:
        raise TooLong(filename, max_seconds)
    too_long = found.seconds is not None and found.seconds > max_part_seconds
    if len(data) <= limit_bytes and not too_long:
        return [AudioPart(upload_name(filename, extension), data, found.seconds)]
    return split_audio(
        filename, data, limit_bytes=limit_bytes, max_part_seconds=max_part_seconds, max_seconds=max_seconds
    )


def split_audio(
    filename: str,
    data: bytes,
    *,
    limit_bytes: int,
    max_part_seconds: float = MAX_PART_SECONDS,
    max_seconds: float = float("inf"),
) -> list[AudioPart]:
    """Decode `data` and re-encode it as Ogg Opus parts, each under `limit_bytes` and `max_part_seconds`."""
    import av

    # Opus is variable bitrate: plan for 60% of the limit (Ogg pages, VBR peaks), then halve on overflow.
    seconds = min(max_part_seconds, limit_bytes * 0.6 * 8 / PART_BITRATE)
    for _attempt in range(4):
        try:
            parts = list(_encode_parts(filename, data, seconds, max_seconds))
        except (av.error.FFmpegError, ValueError, IndexError, OSError) as exc:
            raise _refuse_unreadable(filename, "audio/unknown") from exc
        if all(len(part.data) <= limit_bytes for part in parts):
            return parts
        seconds /= 2
    raise errors.InvalidInput(
        message_id="input.audio.unsplittable", name=filename, mib=f"{limit_bytes / 1024 / 1024:.0f}"
    )


class _PartWriter:
    def __init__(self) -> None:
        import av

        self.buffer = io.BytesIO()
        self.container = av.open(self.buffer, mode="w", format="ogg")
        self.stream = self.container.add_stream("libopus", rate=PART_RATE)
        self.stream.layout = "mono"
        self.stream.bit_rate = PART_BITRATE
        self.samples = 0

    def write(self, frame: av.AudioFrame | None) -> None:
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        if frame is not None:
            self.samples += frame.samples

    def close(self) -> bytes:
        self.write(None)
        self.container.close()
        return self.buffer.getvalue()


def _resampled(source: av.container.InputContainer, resampler: av.AudioResampler) -> Iterator[av.AudioFrame]:
    """Decoded frames as mono 48 kHz, one at a time (a long file never sits decoded in memory)."""
    for frame in source.decode(audio=0):
        yield from resampler.resample(frame)
    yield from resampler.resample(None)


def _encode_parts(filename: str, data: bytes, part_seconds: float, max_seconds: float) -> Iterator[AudioPart]:
    import av

    stem = PurePath(filename).stem or "audio"
    part_samples = max(PART_RATE, int(part_seconds * PART_RATE))
    resampler = av.AudioResampler(format="s16", layout="mono", rate=PART_RATE)
    index = 0
    writer = _PartWriter()
    max_samples = max_seconds * PART_RATE
    decoded = 0
    with av.open(io.BytesIO(data), mode="r") as source:
        for frame in _resampled(source, resampler):
            decoded += frame.samples
            if decoded > max_samples:  # a header that gave no duration, or a false one
                raise TooLong(filename, max_seconds)
            if writer.samples >= part_samples:
                index += 1
                yield AudioPart(f"{stem}-part{index}.ogg", writer.close(), writer.samples / PART_RATE)
                writer = _PartWriter()
            frame.pts = None  # each part starts its own timeline
            writer.write(frame)
    if writer.samples:
        index += 1
        yield AudioPart(f"{stem}-part{index}.ogg", writer.close(), writer.samples / PART_RATE)

"""Audio for the fake OpenAI server: transcriptions, translations (multipart uploads) and speech."""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import struct
import wave
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .common import (
    ApiError,
    FakeBase,
    RecordedRequest,
    estimate_tokens,
    invalid_value,
    missing_param,
    sse,
    too_long,
)

MAX_UPLOAD_BYTES = 26214400  # 25 MiB, on the whole request body
AUDIO_EXTENSIONS: tuple[str, ...] = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
BYTES_PER_SECOND_GUESS = 4000  # ~32 kbit/s (Discord voice messages) when the duration cannot be probed
SPEECH_FORMATS: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
SPEECH_MAGIC: dict[str, bytes] = {
    "mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "opus": b"OggS\x00\x02",
    "aac": b"\xff\xf1\x50\x80",
    "flac": b"fLaC",
}
SPEECH_VOICES: tuple[str, ...] = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
# tts-1 and tts-1-hd predate the newer voices and take no `instructions`.
CLASSIC_SPEECH_VOICES: frozenset[str] = frozenset(
    {"alloy", "ash", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer"}
)
MAX_INSTRUCTIONS_CHARS = 4096
LANGUAGES: dict[str, str] = {
    "en": "english",
    "fr": "french",
    "de": "german",
    "es": "spanish",
    "ja": "japanese",
}


def probe_duration(data: bytes) -> float:
    """Audio length in seconds: read by PyAV when the bytes are real audio, else guessed from the size."""
    try:
        import av

        with av.open(io.BytesIO(data), mode="r") as container:
            if container.duration:
                return float(container.duration) / 1_000_000
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    except Exception:  # anything PyAV cannot read falls back to the estimate
        pass
    return len(data) / BYTES_PER_SECOND_GUESS


def srt_time(seconds: float, sep: str) -> str:
    """`HH:MM:SS,mmm` (srt) or `HH:MM:SS.mmm` (vtt)."""
    ms = int(round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def speech_seconds(text: str) -> float:
    """How long the fake's speech of `text` lasts (about 15 characters a second, at most 10 s)."""
    return min(10.0, 0.5 + len(text) / 15)


def speech_pcm(text: str, seconds: float) -> bytes:
    """24 kHz 16-bit mono: a 220 Hz tone whose loudness rises and falls once per word, like speech."""
    samples = int(24000 * seconds)
    words = max(1, len(text.split()))
    out = bytearray()
    for k in range(samples):
        envelope = abs(math.sin(math.pi * words * k / samples))
        out += struct.pack("<h", int(8000 * envelope * math.sin(2 * math.pi * 220 * k / 24000)))
    return bytes(out)


def speech_bytes(text: str, fmt: str) -> bytes:
    """Deterministic audio-looking bytes; real WAV for wav and raw 24 kHz PCM for pcm (a spoken-like tone)."""
    seconds = speech_seconds(text)
    if fmt in ("wav", "pcm"):
        frames = speech_pcm(text, seconds)
        if fmt == "pcm":
            return frames
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(24000)
            w.writeframes(frames)
        return out.getvalue()
    size = int(BYTES_PER_SECOND_GUESS * seconds)
    block = hashlib.sha256(f"{fmt}\x00{text}".encode()).digest()
    return (SPEECH_MAGIC[fmt] + block * (size // len(block) + 1))[:size]


class AudioMixin(FakeBase):
    """POST /v1/audio/transcriptions, /v1/audio/translations and /v1/audio/speech."""

    transcript_text: str | Callable[[RecordedRequest], str]
    audio_latency: float
    media_usage: bool  # see ImagesMixin._init_images

    def _init_audio(self) -> None:
        self.transcript_text = "hello from the fake transcriber."
        self.audio_latency = 0.0

    def _transcript(self, rec: RecordedRequest) -> str:
        text = self.transcript_text
        return text if isinstance(text, str) else str(text(rec))

    def _check_upload(self, rec: RecordedRequest) -> tuple[str, bytes]:
        """Size, model, file name and content checks shared by transcriptions and translations."""
        if rec.body_size > MAX_UPLOAD_BYTES:
            raise ApiError(
                413,
                f"Maximum content size limit ({MAX_UPLOAD_BYTES}) exceeded ({rec.body_size} bytes read)",
                type="server_error",
            )
        upload = next((f for f in rec.files if f[0] == "file"), None)
        if upload is None:
            raise missing_param("file")
        model = self._require_model(rec.form.get("model"))
        _, filename, data, _ = upload
        ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if ext not in AUDIO_EXTENSIONS:
            raise ApiError(400, f"Invalid file format. Supported formats: {sorted(AUDIO_EXTENSIONS)}")
        if not data or data.startswith(b"NOTAUDIO"):
            raise ApiError(
                400, "Audio file might be corrupted or unsupported", param="file", code="invalid_value"
            )
        return model, data

    def _segments(self, text: str, duration: float) -> list[dict[str, Any]]:
        return [
            {
                "id": 0,
                "seek": 0,
                "start": 0.0,
                "end": round(duration, 2),
                "text": " " + text,
                "tokens": [50364 + k for k in range(estimate_tokens(text))],
                "temperature": 0.0,
                "avg_logprob": -0.25,
                "compression_ratio": 1.2,
                "no_speech_prob": 0.01,
            }
        ]

    def _text_answer(self, rec: RecordedRequest, text: str) -> web.Response:
        rec.status = 200
        return web.Response(text=text, content_type="text/plain", headers=self._headers(rec))

    async def _handle_transcription(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        return await self._audio_to_text(request, rec, translate=False)

    async def _handle_translation(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        return await self._audio_to_text(request, rec, translate=True)

    async def _audio_to_text(
        self, request: web.Request, rec: RecordedRequest, *, translate: bool
    ) -> web.StreamResponse:
        model, data = self._check_upload(rec)
        whisper = model.startswith("whisper")
        fmt = rec.form.get("response_format") or "json"
        if fmt not in ("json", "text", "srt", "verbose_json", "vtt", "diarized_json"):
            raise invalid_value("response_format", fmt, ["json", "text", "srt", "verbose_json", "vtt"])
        if not whisper and fmt not in ("json", "text"):
            raise ApiError(
                400,
                f"response_format '{fmt}' is not compatible with model '{model}'. Use 'json' or 'text' instead.",
                param="response_format",
                code="unsupported_value",
            )
        if fmt == "diarized_json":
            raise ApiError(
                400,
                f"response_format 'diarized_json' is not compatible with model '{model}'.",
                param="response_format",
                code="unsupported_value",
            )
        stream = rec.form.get("stream", "").lower() == "true"
        if stream and (whisper or translate):
            raise ApiError(
                400,
                f"Streaming is not supported for the model {model}.",
                param="stream",
                code="unsupported_value",
            )
        duration = await asyncio.to_thread(probe_duration, data)
        if self.audio_latency:
            await asyncio.sleep(self.audio_latency)
        text = self._transcript(rec)
        seconds = max(1, round(duration))  # billed to the nearest second
        if whisper:
            usage: dict[str, Any] = {"type": "duration", "seconds": seconds}
        else:
            audio_tokens = max(1, math.ceil(duration * 10))
            text_tokens = estimate_tokens(rec.form["prompt"]) if rec.form.get("prompt") else 0
            output_tokens = estimate_tokens(text)
            usage = {
                "type": "tokens",
                "input_tokens": audio_tokens + text_tokens,
                "input_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
                "output_tokens": output_tokens,
                "total_tokens": audio_tokens + text_tokens + output_tokens,
            }
        if stream:
            return await self._stream_transcript(request, rec, text, usage)
        if fmt == "text":
            return self._text_answer(rec, text + "\n")
        if fmt in ("srt", "vtt"):
            sep = "," if fmt == "srt" else "."
            cue = f"{srt_time(0, sep)} --> {srt_time(duration, sep)}\n{text}\n"
            return self._text_answer(rec, f"1\n{cue}\n" if fmt == "srt" else f"WEBVTT\n\n{cue}\n")
        if fmt == "verbose_json":
            language = rec.form.get("language") or "en"
            payload: dict[str, Any] = {
                "task": "translate" if translate else "transcribe",
                "language": "english" if translate else LANGUAGES.get(language, language),
                "duration": round(duration, 2),
                "text": text,
                "segments": self._segments(text, duration),
            }
            granularities = rec.form.get("timestamp_granularities[]") or rec.form.get(
                "timestamp_granularities"
            )
            if granularities and "word" in granularities and not translate:
                words = text.split()
                step = duration / max(1, len(words))
                payload["words"] = [
                    {"word": w, "start": round(k * step, 2), "end": round((k + 1) * step, 2)}
                    for k, w in enumerate(words)
                ]
            if not translate:
                payload["usage"] = {"type": "duration", "seconds": seconds}
            return self._json(rec, payload)
        payload = {"text": text}
        if not translate and self.media_usage:
            payload["usage"] = usage
            include = rec.form.get("include[]") or rec.form.get("include") or ""
            if "logprobs" in include and not whisper:
                payload["logprobs"] = [
                    {"token": w, "logprob": -0.01, "bytes": list(w.encode())} for w in text.split()
                ]
        return self._json(rec, payload)

    async def _stream_transcript(
        self, request: web.Request, rec: RecordedRequest, text: str, usage: dict[str, Any]
    ) -> web.StreamResponse:
        rec.stream = True
        rec.status = 200
        headers = self._headers(rec)
        headers.update({"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
        resp = web.StreamResponse(status=200, headers=headers)
        await resp.prepare(request)
        words = text.split(" ")
        for k, word in enumerate(words):
            delta = word if k == 0 else " " + word
            await resp.write(sse({"type": "transcript.text.delta", "delta": delta, "logprobs": None}))
        await resp.write(
            sse({"type": "transcript.text.done", "text": text, "usage": usage, "logprobs": None})
        )
        await resp.write_eof()
        return resp

    async def _handle_speech(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        body = rec.json if isinstance(rec.json, dict) else {}
        self._require_model(body.get("model"))
        text = body.get("input")
        if text is None or text == "":
            raise missing_param("input")
        if not isinstance(text, str):
            raise ApiError(400, "Invalid type for 'input': expected a string.", param="input")
        if len(text) > 4096:
            raise too_long("input", 4096, len(text))
        model = str(body.get("model"))
        voice = body.get("voice")
        if not voice:
            raise missing_param("voice")
        voice_name = voice.get("id") if isinstance(voice, dict) else voice
        if voice_name not in SPEECH_VOICES and not str(voice_name).startswith("voice_"):
            raise invalid_value("voice", voice_name, list(SPEECH_VOICES))
        if model.startswith("tts-") and voice_name not in CLASSIC_SPEECH_VOICES:
            raise ApiError(
                400,
                f"Voice '{voice_name}' is not supported for model '{model}'.",
                param="voice",
                code="unsupported_value",
            )
        instructions = body.get("instructions")
        if instructions is not None:
            if model.startswith("tts-"):
                raise ApiError(
                    400,
                    f"Instructions are not supported for model '{model}'.",
                    param="instructions",
                    code="unsupported_parameter",
                )
            if not isinstance(instructions, str) or len(instructions) > MAX_INSTRUCTIONS_CHARS:
                raise too_long("instructions", MAX_INSTRUCTIONS_CHARS, len(str(instructions)))
        fmt = body.get("response_format") or "mp3"
        if fmt not in SPEECH_FORMATS:
            raise invalid_value("response_format", fmt, list(SPEECH_FORMATS))
        if self.audio_latency:
            await asyncio.sleep(self.audio_latency)
        audio = await asyncio.to_thread(speech_bytes, text, fmt)
        rec.status = 200
        return web.Response(body=audio, content_type=SPEECH_FORMATS[fmt], headers=self._headers(rec))

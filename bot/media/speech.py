"""/speak's core: moderate the text, read it aloud in sentence-cut parts, join them as one Ogg Opus voice file."""

from __future__ import annotations

import asyncio
import base64
import io
import math
from dataclasses import dataclass

from bot import errors
from bot.moderation.gate import ModerationGate
from bot.moderation.normalize import is_blank
from bot.openai_api.calls import CallContext
from bot.openai_api.gateway import PCM_RATE, OpenAIGateway, expected_speech_seconds
from bot.util.sentences import split_sentences

# The speech endpoint's voices (tts-1 and tts-1-hd know only the first set).
CLASSIC_VOICES: tuple[str, ...] = (
    "alloy",
    "ash",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
)
VOICES: tuple[str, ...] = (*CLASSIC_VOICES, "ballad", "verse", "marin", "cedar")
DEFAULT_VOICE = "alloy"
MAX_INPUT_CHARS = 4096  # the API's limit per request
MAX_TEXT_CHARS = 20_000  # what one /speak reads at most (several requests)
MAX_STYLE_CHARS = 1000
# Discord voice messages: Ogg Opus, mono 48 kHz; 32 kbit/s is what its clients record.
VOICE_RATE = 48_000
VOICE_BITRATE = 32_000
MAX_WAVEFORM_SAMPLES = 256
WAVEFORM_SAMPLES_PER_SECOND = 10


@dataclass(frozen=True)
class SpeechResult:
    """Speech ready to post: the Ogg Opus file, its length and the waveform Discord draws."""

    data: bytes
    seconds: float
    waveform: bytes  # one amplitude byte per sample, at most 256
    parts: int
    voice: str

    @property
    def waveform_base64(self) -> str:
        return base64.b64encode(self.waveform).decode()


def waveform(pcm: bytes, *, samples: int) -> bytes:
    """`samples` amplitude bytes (0-255) of 16-bit mono PCM: the RMS of equal slices, scaled to the loudest."""
    import numpy as np  # only /speak needs it: imported on first use

    audio = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float64)
    if audio.size == 0 or samples < 1:
        return b""
    slices = np.array_split(audio, min(samples, audio.size))
    rms = np.array([math.sqrt(float(np.mean(s * s))) if s.size else 0.0 for s in slices])
    loudest = float(rms.max())
    if loudest <= 0:
        return bytes(len(slices))
    return bytes(int(v) for v in np.clip(np.round(rms / loudest * 255), 0, 255))


def encode_voice(pcm: bytes, rate: int = PCM_RATE) -> tuple[bytes, float, bytes]:
    """(Ogg Opus bytes, seconds, waveform) of 16-bit mono PCM at `rate`. Blocking (PyAV): run in a thread."""
    import av  # about 16 MiB resident: loaded only once someone asks for speech
    import numpy as np

    pcm = pcm[: len(pcm) - len(pcm) % 2]
    seconds = len(pcm) / 2 / rate
    if not pcm:
        raise errors.UpstreamUnavailable()
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=VOICE_RATE)
        stream.layout = "mono"
        stream.bit_rate = VOICE_BITRATE
        resampler = av.AudioResampler(format="s16", layout="mono", rate=VOICE_RATE)
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.rate = rate
        for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    count = min(MAX_WAVEFORM_SAMPLES, max(1, math.ceil(seconds * WAVEFORM_SAMPLES_PER_SECOND)))
    return buffer.getvalue(), seconds, waveform(pcm, samples=count)


def check_request(text: str, voice: str, style: str | None, model: str) -> tuple[str, str | None]:
    """The text and style to read, or InvalidInput saying what to change."""
    text = text.strip()
    if is_blank(text):
        raise errors.InvalidInput(message_id="input.speech.empty")
    if len(text) > MAX_TEXT_CHARS:
        raise errors.InvalidInput(message_id="input.speech.too_long", limit=f"{MAX_TEXT_CHARS:,}")
    if voice not in VOICES:
        raise errors.InvalidInput(message_id="input.speech.voice", voice=voice[:40], voices=", ".join(VOICES))
    if model.startswith("tts-") and voice not in CLASSIC_VOICES:
        raise errors.InvalidInput(
            message_id="input.speech.voice_model", voice=voice, voices=", ".join(CLASSIC_VOICES)
        )
    style = style.strip() if style else None
    if style and len(style) > MAX_STYLE_CHARS:
        raise errors.InvalidInput(message_id="input.speech.style_too_long", limit=f"{MAX_STYLE_CHARS:,}")
    return text, style or None


class Speaker:
    """Moderation first, then one speech request per sentence-cut part, then one voice file."""

    def __init__(self, gateway: OpenAIGateway, moderation: ModerationGate) -> None:
        self.gateway = gateway
        self.moderation = moderation

    async def speak(
        self, text: str, *, voice: str, style: str | None, context: CallContext, what: str = "Your text"
    ) -> SpeechResult:
        text, style = check_request(text, voice, style, self.gateway.settings.speech_model)
        # The style is read by the model too: one moderation request checks both.
        await self.moderation.require_clean_input(
            f"{style}\n\n{text}" if style else text, context=context, what=what
        )
        parts = split_sentences(text, MAX_INPUT_CHARS)
        audio: list[bytes] = []
        for part in parts:  # in order: the parts are joined as one recording
            audio.append(
                await self.gateway.speak(
                    part,
                    context=context,
                    voice=voice,
                    instructions=style,
                    response_format="pcm",
                    expected_seconds=expected_speech_seconds(len(part)),
                )
            )
        data, seconds, wave = await asyncio.to_thread(encode_voice, b"".join(audio))
        return SpeechResult(data, seconds, wave, len(parts), voice)

"""Speech encoding and pricing: Ogg Opus out of PCM, a waveform from the audio, per-character prices."""

from __future__ import annotations

import io
import math
import struct

import av

from bot.cost.pricing import PriceTable
from bot.media.speech import encode_voice, waveform


def tone(seconds: float, *, loud_second_half: bool = False) -> bytes:
    samples = int(24000 * seconds)
    out = bytearray()
    for k in range(samples):
        level = 12000 if loud_second_half and k >= samples // 2 else 3000
        out += struct.pack("<h", int(level * math.sin(2 * math.pi * 300 * k / 24000)))
    return bytes(out)


def test_encode_voice_gives_ogg_opus_its_length_and_a_waveform() -> None:
    data, seconds, wave = encode_voice(tone(3.0, loud_second_half=True))
    assert abs(seconds - 3.0) < 1e-6 and len(wave) == 30
    with av.open(io.BytesIO(data)) as container:
        assert container.format.name == "ogg" and container.streams.audio[0].codec_context.name == "opus"
        assert container.streams.audio[0].rate == 48000
    assert max(wave[:14]) < 80 and min(wave[16:]) > 200  # the louder half draws taller bars


def test_waveform_is_capped_at_256_samples_and_silence_is_flat() -> None:
    assert len(waveform(tone(1.0), samples=256)) == 256
    assert waveform(bytes(4800), samples=10) == bytes(10)


def test_speech_prices_per_character_and_per_minute() -> None:
    prices = PriceTable.load()
    assert prices.cost("speech", "tts-1", characters=1_000_000) == 15.0
    assert prices.cost("speech", "tts-1-hd", characters=1000) == 0.03
    assert abs((prices.cost("speech", "gpt-4o-mini-tts", audio_seconds=120) or 0) - 0.03) < 1e-12

"""The price table: cached input, media from tokens, the fallback estimate, and what each was priced from."""

from __future__ import annotations

import pytest

from bot.cost.pricing import PriceTable
from bot.openai_api.calls import MediaTokens

TABLE = PriceTable.load()


def test_cached_input_is_a_tenth_for_gpt5_and_full_price_without_a_cached_price() -> None:
    price = TABLE.price("chat", "gpt-5", prompt_tokens=10_000, cached_tokens=8_000, completion_tokens=100)
    assert price.cost == pytest.approx(2_000 * 1.25e-6 + 8_000 * 0.125e-6 + 100 * 10e-6)
    assert price.basis == "tokens"
    plain = PriceTable({"m": {"input_per_million": 1.0, "output_per_million": 0}})
    assert plain.cost("chat", "m", prompt_tokens=1_000_000, cached_tokens=500_000) == pytest.approx(1.0)
    # More cached than prompt tokens (a malformed answer) never makes a cost negative or lower than all-cached.
    assert TABLE.cost("chat", "gpt-5", prompt_tokens=100, cached_tokens=500) == pytest.approx(100 * 0.125e-6)


def test_media_tokens_price_when_every_reported_kind_has_a_price_else_the_estimate() -> None:
    tokens = MediaTokens(text_input=20, image_output=1056)
    price = TABLE.price("image", "gpt-image-1-mini", images=1, image_size="1024x1024", media_tokens=tokens)
    assert price.cost == pytest.approx(20 * 2e-6 + 1056 * 8e-6) and price.basis == "tokens"
    audio_out = MediaTokens(audio_output=5)  # no audio-output price for an image model: not guessed
    fallback = TABLE.price(
        "image",
        "gpt-image-1-mini",
        images=1,
        image_size="1024x1024",
        image_quality="medium",
        media_tokens=audio_out,
    )
    assert fallback.cost == pytest.approx(0.011) and fallback.basis == "image"
    minute = TABLE.price("transcription", "gpt-4o-transcribe", audio_seconds=120)
    assert minute.cost == pytest.approx(0.012) and minute.basis == "minute"
    assert TABLE.price("moderation", "omni-moderation-latest").basis == "free"
    assert TABLE.price("chat", "no-such-model").cost is None

"""The price table: a shipped JSON file (bot/cost/prices.json), overridable per model by PRICES_FILE."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bot.openai_api.calls import MediaTokens

log = logging.getLogger(__name__)

_SNAPSHOT = re.compile(r"^(?P<base>.+?)-\d{4}-\d{2}-\d{2}$")
_SIZE = re.compile(r"^(\d+)x(\d+)$")
# Quality "auto" lets OpenAI choose; a budget estimate assumes the dearest, the ledger what was made.
_QUALITY_FALLBACK = "medium"


class PricesError(Exception):
    """PRICES_FILE cannot be read or is not a price table."""


def _read_models(text: str, origin: str) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PricesError(f"{origin} is not valid JSON: {exc}") from exc
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise PricesError(f'{origin} must hold {{"models": {{"model-name": {{...}}}}}}')
    return {str(name): dict(entry) for name, entry in models.items()}


# Stored in usage_events.priced_from: what a row's cost was computed from (the values must not change).
PRICED_BY_TOKENS = "tokens"  # the tokens the answer reported (chat, embeddings, media with a usage block)
PRICED_PER_IMAGE = "image"  # the per-image estimate by size and quality
PRICED_PER_MINUTE = "minute"  # the per-minute estimate of audio
PRICED_PER_CHARACTER = "characters"  # tts-1 and tts-1-hd bill the text they read
PRICED_FREE = "free"
_MEDIA_KINDS = ("text_input", "image_input", "audio_input", "text_output", "image_output", "audio_output")


@dataclass(frozen=True)
class Price:
    """A call's cost in USD (None: the model has no price) and what it was computed from."""

    cost: float | None
    basis: str | None


def token_priced(entry: Mapping[str, Any], media: MediaTokens) -> float | None:
    """A media answer's cost from its reported tokens; None when the entry lacks a price one of them needs."""
    prices = entry.get("per_million_tokens")
    if not isinstance(prices, dict):
        return None
    total = 0.0
    for kind in _MEDIA_KINDS:
        count = int(getattr(media, kind))
        if not count:
            continue
        if kind not in prices:
            return None
        total += count * float(prices[kind]) / 1_000_000
    return total


class PriceTable:
    """Costs in USD of metered calls; None when a model has no price."""

    def __init__(self, models: Mapping[str, Mapping[str, Any]]) -> None:
        self.models = {name: dict(entry) for name, entry in models.items()}

    @classmethod
    def load(cls, override_path: str | None = None) -> PriceTable:
        shipped = resources.files("bot.cost").joinpath("prices.json").read_text(encoding="utf-8")
        models = _read_models(shipped, "the shipped price table")
        if override_path:
            path = Path(override_path)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise PricesError(f"PRICES_FILE={path} cannot be read: {exc}") from exc
            models.update(_read_models(text, f"PRICES_FILE={path}"))
        return cls(models)

    def lookup(self, model: str) -> dict[str, Any] | None:
        """The entry of a model, or of the model a dated snapshot (gpt-4o-2024-08-06) belongs to."""
        if model in self.models:
            return self.models[model]
        match = _SNAPSHOT.match(model)
        return self.models.get(match.group("base")) if match else None

    def unknown(self, models: Iterable[str]) -> list[str]:
        return sorted({m for m in models if m and self.lookup(m) is None})

    def cost(
        self,
        kind: str,
        model: str,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        images: int = 0,
        image_size: str | None = None,
        image_quality: str | None = None,
        audio_seconds: float = 0.0,
        characters: int = 0,
        cached_tokens: int = 0,
        media_tokens: MediaTokens | None = None,
        worst_case: bool = False,
    ) -> float | None:
        return self.price(
            kind,
            model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            images=images,
            image_size=image_size,
            image_quality=image_quality,
            audio_seconds=audio_seconds,
            characters=characters,
            cached_tokens=cached_tokens,
            media_tokens=media_tokens,
            worst_case=worst_case,
        ).cost

    def price(
        self,
        kind: str,
        model: str,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        images: int = 0,
        image_size: str | None = None,
        image_quality: str | None = None,
        audio_seconds: float = 0.0,
        characters: int = 0,
        cached_tokens: int = 0,
        media_tokens: MediaTokens | None = None,
        worst_case: bool = False,
    ) -> Price:
        """The cost of a call: from the tokens its answer reported where the table prices them, else
        from the per-image, per-minute or per-character estimate."""
        entry = self.lookup(model)
        if entry is None:
            return Price(None, None)
        if entry.get("free"):
            return Price(0.0, PRICED_FREE)
        if media_tokens is not None:
            from_tokens = token_priced(entry, media_tokens)
            if from_tokens is not None:
                return Price(from_tokens, PRICED_BY_TOKENS)
        total = 0.0
        basis: str | None = None
        if "input_per_million" in entry:
            input_price = float(entry["input_per_million"])
            # A model without a cached price bills cached tokens as any other input.
            cached_price = float(entry.get("cached_input_per_million", input_price))
            cached = min(max(cached_tokens, 0), prompt_tokens)
            total += ((prompt_tokens - cached) * input_price + cached * cached_price) / 1_000_000
            basis = PRICED_BY_TOKENS
        if "output_per_million" in entry:
            total += completion_tokens * float(entry["output_per_million"]) / 1_000_000
        if "per_minute" in entry:
            total += audio_seconds * float(entry["per_minute"]) / 60
            basis = PRICED_PER_MINUTE
        if "per_million_characters" in entry:  # tts-1 and tts-1-hd bill the text they read
            total += characters * float(entry["per_million_characters"]) / 1_000_000
            basis = PRICED_PER_CHARACTER
        if isinstance(entry.get("per_image"), dict):
            per_image = self._image_price(entry["per_image"], image_size, image_quality, worst_case)
            if per_image is None:
                return Price(None, None)
            total += images * per_image
            basis = PRICED_PER_IMAGE
        return Price(total, basis) if basis is not None else Price(None, None)

    @staticmethod
    def _image_price(
        table: dict[str, dict[str, float]], size: str | None, quality: str | None, worst_case: bool
    ) -> float | None:
        if quality in table:
            qualities = [table[str(quality)]]
        elif worst_case:
            qualities = list(table.values())
        else:
            qualities = [table.get(_QUALITY_FALLBACK) or next(iter(table.values()))]
        prices: list[float] = []
        for by_size in qualities:
            if size in by_size:
                prices.append(float(by_size[str(size)]))
                continue
            match = _SIZE.match(size or "")
            if match and "1024x1024" in by_size:
                # Newer models take any WxH: scale the square price by the pixels.
                pixels = int(match.group(1)) * int(match.group(2))
                prices.append(float(by_size["1024x1024"]) * pixels / (1024 * 1024))
            elif by_size:
                prices.append(max(float(v) for v in by_size.values()))  # "auto": the dearest size
        return max(prices) if prices else None


def load_prices(override_path: str | None) -> PriceTable:
    """The table the bot runs with; a broken PRICES_FILE falls back to the shipped table, loudly."""
    try:
        return PriceTable.load(override_path)
    except PricesError as exc:
        log.warning("%s; using the shipped price table", exc)
        return PriceTable.load(None)

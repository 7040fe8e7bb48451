"""The price table: a shipped JSON file (bot/cost/prices.json), overridable per model by PRICES_FILE."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

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
        worst_case: bool = False,
    ) -> float | None:
        entry = self.lookup(model)
        if entry is None:
            return None
        if entry.get("free"):
            return 0.0
        total = 0.0
        priced = False
        if "input_per_million" in entry:
            total += prompt_tokens * float(entry["input_per_million"]) / 1_000_000
            priced = True
        if "output_per_million" in entry:
            total += completion_tokens * float(entry["output_per_million"]) / 1_000_000
        if "per_minute" in entry:
            total += audio_seconds * float(entry["per_minute"]) / 60
            priced = True
        if "per_million_characters" in entry:  # tts-1 and tts-1-hd bill the text they read
            total += characters * float(entry["per_million_characters"]) / 1_000_000
            priced = True
        if isinstance(entry.get("per_image"), dict):
            per_image = self._image_price(entry["per_image"], image_size, image_quality, worst_case)
            if per_image is None:
                return None
            total += images * per_image
            priced = True
        return total if priced else None

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

"""`python -m bot prices`: the shipped price table, PRICES_FILE's overrides, and configured models without a price."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from bot.cost.pricing import PricesError, PriceTable
from bot.settings import Settings

# Called by model name in the code, not by a setting: /transcribe translate=English goes to whisper-1.
FIXED_MODELS = {"whisper-1": "the translations endpoint (/transcribe translate:English)"}


def configured_models(settings: Settings) -> dict[str, str]:
    """Every model the configuration can call, and what it is used for."""
    used: dict[str, str] = {}
    for env, model in settings.models().items():
        if model:
            used.setdefault(model, env)
    for model, why in FIXED_MODELS.items():
        used.setdefault(model, why)
    return used


def describe_entry(entry: dict[str, Any]) -> str:
    if entry.get("free"):
        return "free"
    parts = []
    if "input_per_million" in entry:
        parts.append(f"in ${entry['input_per_million']}/M")
    if "cached_input_per_million" in entry:
        parts.append(f"cached in ${entry['cached_input_per_million']}/M")
    if "output_per_million" in entry:
        parts.append(f"out ${entry['output_per_million']}/M")
    if isinstance(entry.get("per_million_tokens"), dict):
        tokens = ", ".join(f"{k} ${v}/M" for k, v in entry["per_million_tokens"].items())
        parts.append(f"tokens: {tokens}")
    if isinstance(entry.get("per_image"), dict):
        squares = [
            f"{quality} ${sizes['1024x1024']}"
            for quality, sizes in entry["per_image"].items()
            if "1024x1024" in sizes
        ]
        parts.append("per 1024x1024 image: " + ", ".join(squares))
    if "per_minute" in entry:
        parts.append(f"${entry['per_minute']}/min estimate")
    if "per_million_characters" in entry:
        parts.append(f"${entry['per_million_characters']}/M characters")
    return "; ".join(parts) or "(no price fields)"


def report(settings: Settings) -> dict[str, Any]:
    shipped_text = resources.files("bot.cost").joinpath("prices.json").read_text(encoding="utf-8")
    shipped: dict[str, Any] = json.loads(shipped_text)["models"]
    overrides: dict[str, Any] = {}
    error = None
    if settings.prices_file:
        try:
            overrides = json.loads(Path(settings.prices_file).read_text(encoding="utf-8")).get("models") or {}
        except (OSError, ValueError, AttributeError) as exc:
            error = f"PRICES_FILE={settings.prices_file} cannot be used ({exc}); the shipped table applies"
    try:
        table = PriceTable.load(settings.prices_file if error is None else None)
    except PricesError as exc:
        error, table = str(exc), PriceTable.load(None)
    used = configured_models(settings)
    return {
        "shipped": shipped,
        "prices_file": settings.prices_file,
        "overrides": overrides,
        "error": error,
        "unpriced": {model: used[model] for model in table.unknown(used)},
    }


def prices_command(settings: Settings, *, as_json: bool = False) -> int:
    """Print the tables; exit 1 when a configured model has no price (its usage would be recorded at no cost)."""
    data = report(settings)
    if as_json:
        print(json.dumps(data, indent=2))
        return 1 if data["unpriced"] or data["error"] else 0
    print("Shipped price table (bot/cost/prices.json), USD:")
    for model, entry in data["shipped"].items():
        print(f"  {model}: {describe_entry(entry)}")
    if data["error"]:
        print(f"\n{data['error']}")
    elif data["prices_file"]:
        print(
            f"\nOverrides from PRICES_FILE={data['prices_file']} (replace the shipped entry of each model):"
        )
        for model, entry in data["overrides"].items():
            print(f"  {model}: {describe_entry(entry) if isinstance(entry, dict) else entry}")
        if not data["overrides"]:
            print("  (none)")
    else:
        print("\nNo PRICES_FILE: no overrides.")
    if data["unpriced"]:
        print("\nConfigured models with no price (recorded with no cost; budgets cannot count them):")
        for model, why in data["unpriced"].items():
            print(f"  {model} ({why})")
        return 1
    print("\nEvery model the configuration can use has a price.")
    return 0

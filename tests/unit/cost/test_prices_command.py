"""`python -m bot prices`: the shipped table, PRICES_FILE's overrides, and configured models without a price."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.ops.prices import prices_command
from bot.settings import Settings


def test_lists_the_table_overrides_and_unpriced_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    override = tmp_path / "prices.json"
    override.write_text(
        json.dumps({"models": {"gpt-5-mini": {"input_per_million": 9, "output_per_million": 9}}})
    )
    settings = Settings(
        discord_token="x", openai_api_key="x", prices_file=str(override), chat_model="gpt-9-max"
    )
    assert prices_command(settings) == 1
    out = capsys.readouterr().out
    assert "gpt-5: in $1.25/M; cached in $0.125/M; out $10.0/M" in out
    assert f"PRICES_FILE={override}" in out and "gpt-5-mini: in $9/M; out $9/M" in out
    assert "gpt-9-max (CHAT_MODEL)" in out
    assert prices_command(Settings(discord_token="x", openai_api_key="x")) == 0

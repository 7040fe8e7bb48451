"""Settings: one definition drives loading and the generated docs; building them directly reads nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import Settings, SettingsError, documented_settings, load_settings, variables
from bot.settings.docs import ROOT, generated_files

REQUIRED = {"DISCORD_TOKEN": "token", "OPENAI_API_KEY": "sk-test"}


@pytest.mark.parametrize("path", list(generated_files()), ids=lambda path: str(path.relative_to(ROOT)))
def test_generated_file_matches_the_definition(path: Path) -> None:
    expected = generated_files()[path]
    assert path.read_text(encoding="utf-8") == expected, (
        f"{path.relative_to(ROOT)} is out of date: run `python -m bot.settings`"
    )


def test_every_setting_is_documented_once_with_a_short_meaning() -> None:
    names = [name for name, _, _ in documented_settings()]
    assert len(names) == len(set(names)) == len(Settings.model_fields)
    for v in variables():
        assert v.doc.endswith(".") and len(v.doc) < 100, v.env


def test_building_settings_directly_reads_neither_environment_nor_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("CHAT_MODEL=from-env-file\nDISCORD_TOKEN=from-env-file\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHAT_MODEL", "from-environment")
    monkeypatch.setenv("OPENAI_API_KEY", "from-environment")
    settings = Settings(stream_edit_interval=0.05)
    assert (settings.chat_model, settings.discord_token, settings.openai_api_key) == ("gpt-5-mini", "", "")
    assert settings.stream_edit_interval == 0.05


def test_an_explicit_environ_replaces_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAT_MODEL", "gpt-from-process")
    (tmp_path / ".env").write_text("SUMMARY_MODEL=gpt-from-file\nCHAT_MODEL=gpt-file-loses\n")
    environ = {**REQUIRED, "CHAT_MODEL": "gpt-from-mapping", "DATABASE_URL": f"sqlite:///{tmp_path}/bot.db"}
    settings = load_settings(environ, env_file=tmp_path / ".env")
    assert (settings.chat_model, settings.summary_model) == ("gpt-from-mapping", "gpt-from-file")
    assert "gpt-from-process" == os.environ["CHAT_MODEL"]


def test_each_bad_variable_is_one_problem_and_good_ones_are_still_checked(tmp_path: Path) -> None:
    environ = {
        **REQUIRED,
        "USER_BURST": "0",
        "ALLOWED_GUILD_IDS": "12, x",
        "EVENT_LOOP": "trio",
        "MODERATION_BATCH_WINDOW": "nan",
        "IMAGE_MODEL": "dall-e-3",
        "DATABASE_URL": f"sqlite:///{tmp_path}/bot.db",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(environ, env_file=None)
    # Field problems in the order the docs list the variables, then the checks across variables.
    assert caught.value.problems == [
        "ALLOWED_GUILD_IDS must be server ids separated by commas (got '12, x')",
        "MODERATION_BATCH_WINDOW must be a number, zero or more (got 'nan')",
        "USER_BURST must be a positive whole number (got '0')",
        "EVENT_LOOP must be auto, uvloop or asyncio",
        "IMAGE_MODEL='dall-e-3' is not a known model family (expected a name starting with gpt-image)",
    ]


def test_values_from_the_environment_are_parsed(tmp_path: Path) -> None:
    environ = {
        **REQUIRED,
        "ALLOWED_GUILD_IDS": " 12, 34 56 ",
        "ALLOW_DMS": "Yes",
        "SYNC_COMMANDS": "off",
        "OPENAI_TIMEOUT": " 2.5 ",
        "TLDR_MAX_MESSAGES": "2000",
        "OPENAI_BASE_URL": "http://localhost:11434/v1",
        "CHAT_MODEL": "llama3",
        "DATABASE_URL": f"sqlite:///{tmp_path}/bot.db",
    }
    settings = load_settings(environ, env_file=None)
    assert settings.allowed_guild_ids == frozenset({12, 34, 56})
    assert (settings.allow_dms, settings.sync_commands) == (True, False)
    assert (settings.openai_timeout, settings.tldr_max_messages) == (2.5, 2000)
    assert settings.setting_for_model("llama3") == "CHAT_MODEL"
    assert settings.database_path == tmp_path / "bot.db"


def test_settings_are_frozen_and_secrets_stay_out_of_the_repr() -> None:
    settings = Settings(discord_token="very-secret-token", openai_api_key="sk-very-secret")
    with pytest.raises(ValidationError):
        settings.chat_model = "gpt-4o"  # type: ignore[misc]
    assert "very-secret" not in repr(settings)
    changed = settings.model_copy(update={"chat_model": "gpt-4o"})
    assert (changed.chat_model, settings.chat_model) == ("gpt-4o", "gpt-5-mini")

"""Start-up: clear errors for missing or bad settings, `check` against the fakes, and the invite URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.ops.doctor import collect
from bot.ops.invite import invite_url
from bot.settings import SettingsError, load_settings
from testkit.discord import FakeDiscord, patched_discord_py
from testkit.openai import FakeOpenAI
from tests.support.server import make_settings

ROOT = Path(__file__).resolve().parents[3]


def run_module(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "OPENAI_API_KEY"}}
    clean.update(env)
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=clean,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_missing_settings_exit_with_one_clear_message(tmp_path: Path) -> None:
    result = run_module(env={}, cwd=tmp_path)
    assert result.returncode != 0
    assert "DISCORD_TOKEN is missing" in result.stderr
    assert "OPENAI_API_KEY is missing" in result.stderr
    assert ".env.example" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_empty_token_counts_as_missing(tmp_path: Path) -> None:
    result = run_module(env={"DISCORD_TOKEN": "  ", "OPENAI_API_KEY": "sk-x"}, cwd=tmp_path)
    assert result.returncode != 0
    assert "DISCORD_TOKEN is missing" in result.stderr
    assert "OPENAI_API_KEY" not in result.stderr


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DISCORD_TOKEN=abc\nOPENAI_API_KEY=sk-test\nHISTORY_TOKEN_BUDGET=123\n")
    settings = load_settings({}, env_file=tmp_path / ".env")
    assert settings.discord_token == "abc" and settings.history_token_budget == 123


@pytest.mark.parametrize(
    ("variable", "value", "phrase"),
    [
        ("HISTORY_TOKEN_BUDGET", "lots", "HISTORY_TOKEN_BUDGET must be a positive whole number"),
        ("OPENAI_TIMEOUT", "-1", "OPENAI_TIMEOUT must be a positive number"),
        ("ALLOW_DMS", "maybe", "ALLOW_DMS must be true or false"),
        ("IMAGE_MODEL", "dall-e-3", "IMAGE_MODEL='dall-e-3' is not a known model family"),
        (
            "DATABASE_URL",
            "mysql://x",
            "DATABASE_URL must look like sqlite:///path/to/bot.db or postgresql://",
        ),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, phrase: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"DISCORD_TOKEN": "t", "OPENAI_API_KEY": "k", variable: value}, env_file=None)
    assert any(phrase in problem for problem in caught.value.problems), caught.value.problems


def test_unwritable_database_path_is_a_startup_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that ignores directory permissions")
        with pytest.raises(SettingsError) as caught:
            load_settings(
                {"DISCORD_TOKEN": "t", "OPENAI_API_KEY": "k", "DATABASE_URL": f"sqlite:///{locked}/bot.db"},
                env_file=None,
            )
        assert "not writable" in str(caught.value)
    finally:
        locked.chmod(0o700)


def test_invite_url_has_scopes_and_exact_permissions() -> None:
    settings = load_settings(
        {"DISCORD_TOKEN": "MTIzNDU2Nzg5MDEyMzQ1Njc4.abc.def", "OPENAI_API_KEY": "k"}, env_file=None
    )
    url = invite_url(settings)
    assert "client_id=123456789012345678" in url
    assert "scope=bot+applications.commands" in url
    # view, send, send in threads, embed, attach, read history, manage messages, moderate members
    expected = (1 << 10) | (1 << 11) | (1 << 38) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 13) | (1 << 40)
    assert f"permissions={expected}" in url


def check_lines(results: list) -> dict[str, object]:  # type: ignore[type-arg]
    return {r.name: r for r in results}


async def test_check_passes_against_the_fakes(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    with patched_discord_py(fake_discord):
        results = await collect(make_settings(tmp_path, fake_openai))
    assert all(r.ok for r in results), [r.line() for r in results]
    names = {r.name for r in results}
    assert {
        "settings",
        "discord token",
        "message content intent",
        "shards",
        "openai key",
        "database",
        "model CHAT_MODEL",
        "model IMAGE_MODEL",
        "openai credit",
    } <= names


async def test_check_compares_shard_count_with_discords_recommendation(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_discord.shard_count = 3
    with patched_discord_py(fake_discord):
        unsharded = check_lines(await collect(make_settings(tmp_path, fake_openai)))
        too_few = check_lines(await collect(make_settings(tmp_path, fake_openai, shard_count=2)))
        enough = check_lines(
            await collect(make_settings(tmp_path, fake_openai, shard_count=4, shard_ids=frozenset({2, 3})))
        )
    assert not unsharded["shards"].ok
    assert unsharded["shards"].detail == "Discord recommends 3 shards; set SHARD_COUNT (docs/sharding.md)"
    assert not too_few["shards"].ok and "more than SHARD_COUNT=2" in too_few["shards"].detail
    assert enough["shards"].ok
    assert enough["shards"].detail == "this process runs 2, 3 of SHARD_COUNT=4; Discord recommends 3 shards"


async def test_check_reports_each_problem_specifically(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_discord = FakeDiscord(message_content_intent=False)
    await fake_discord.start()
    try:
        fake_openai.models.discard("gpt-image-1.5")
        fake_openai.inject_insufficient_quota("/chat/completions")
        with patched_discord_py(fake_discord):
            results = check_lines(await collect(make_settings(tmp_path, fake_openai)))
    finally:
        await fake_discord.close()
    assert not results["message content intent"].ok
    assert "MESSAGE CONTENT INTENT" in results["message content intent"].detail
    assert not results["model IMAGE_MODEL"].ok and "gpt-image-1.5" in results["model IMAGE_MODEL"].detail
    assert not results["openai credit"].ok and "insufficient_quota" in results["openai credit"].detail


async def test_check_reports_bad_credentials(
    tmp_path: Path, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
) -> None:
    settings = make_settings(tmp_path, fake_openai, discord_token="wrong", openai_api_key="sk-wrong")
    with patched_discord_py(fake_discord):
        results = check_lines(await collect(settings))
    assert not results["discord token"].ok and "rejected DISCORD_TOKEN" in results["discord token"].detail
    assert not results["openai key"].ok and "invalid_api_key" in results["openai key"].detail


async def test_check_reports_an_unreadable_application_instead_of_crashing(
    tmp_path: Path, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
) -> None:
    fake_discord.fail_next(
        "GET", r"/applications/@me", 403, body={"code": 50001, "message": "Missing Access"}
    )
    with patched_discord_py(fake_discord):
        results = check_lines(await collect(make_settings(tmp_path, fake_openai)))
    assert results["discord token"].ok
    intent = results["message content intent"]
    assert not intent.ok and "could not read the application's flags" in intent.detail
    assert results["database"].ok  # the remaining checks still ran

"""SHARD_COUNT, SHARD_IDS and SYNC_COMMANDS=auto: which shards a process runs and whether it syncs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.discord_io.client import OpenAIBot, ShardedOpenAIBot, create_bot
from bot.settings import Settings, SettingsError, load_settings


def load(tmp_path: Path, **env: str) -> Settings:
    environ = {
        "DISCORD_TOKEN": "token",
        "OPENAI_API_KEY": "key",
        "DATABASE_URL": f"sqlite:///{tmp_path}/bot.db",
        **env,
    }
    return load_settings(environ, env_file=None)


@pytest.mark.parametrize(
    ("env", "held", "syncs"),
    [
        ({}, (0,), True),
        ({"SHARD_COUNT": "4"}, (0, 1, 2, 3), True),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "0-1"}, (0, 1), True),
        ({"SHARD_COUNT": "4", "SHARD_IDS": " 3, 2 "}, (2, 3), False),
        ({"SHARD_COUNT": "8", "SHARD_IDS": "1,4-5"}, (1, 4, 5), False),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "1", "SYNC_COMMANDS": "true"}, (1,), True),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "0", "SYNC_COMMANDS": "off"}, (0,), False),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "1", "SYNC_COMMANDS": "AUTO"}, (1,), False),
    ],
)
def test_the_shards_a_process_runs_and_whether_it_syncs(
    tmp_path: Path, env: dict[str, str], held: tuple[int, ...], syncs: bool
) -> None:
    settings = load(tmp_path, **env)
    assert settings.held_shards == held
    assert settings.syncs_commands is syncs
    assert settings.sharded is ("SHARD_COUNT" in env)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"SHARD_IDS": "0"}, "SHARD_IDS needs SHARD_COUNT, the total number of shards across every process"),
        (
            {"SHARD_COUNT": "2", "SHARD_IDS": "0-2"},
            "SHARD_IDS lists shard 2, but SHARD_COUNT=2 numbers the shards 0 to 1",
        ),
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT must be a positive whole number (got '0')"),
        ({"SHARD_COUNT": "two"}, "SHARD_COUNT must be a positive whole number (got 'two')"),
        (
            {"SHARD_COUNT": "4", "SHARD_IDS": "0,1,1"},
            "SHARD_IDS must be shard ids or ranges separated by commas, each id once, such as 0-3 or 0,1 "
            "(got '0,1,1')",
        ),
        (
            {"SHARD_COUNT": "4", "SHARD_IDS": "0-1,1-2"},
            "SHARD_IDS must be shard ids or ranges separated by commas, each id once, such as 0-3 or 0,1 "
            "(got '0-1,1-2')",
        ),
        (
            {"SHARD_COUNT": "4", "SHARD_IDS": "3-1"},
            "SHARD_IDS must be shard ids or ranges separated by commas, each id once, such as 0-3 or 0,1 "
            "(got '3-1')",
        ),
        ({"SYNC_COMMANDS": "sometimes"}, "SYNC_COMMANDS must be auto, true or false (got 'sometimes')"),
    ],
)
def test_bad_shard_settings_are_named(tmp_path: Path, env: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(tmp_path, **env)
    assert caught.value.problems == [problem]


def test_the_bot_class_follows_the_shard_settings(tmp_path: Path) -> None:
    plain = create_bot(load(tmp_path))
    assert type(plain) is OpenAIBot
    sharded = create_bot(load(tmp_path, SHARD_COUNT="4", SHARD_IDS="2-3"))
    assert isinstance(sharded, ShardedOpenAIBot) and isinstance(sharded, OpenAIBot)
    assert (sharded.shard_count, sharded.shard_ids) == (4, [2, 3])
    every = create_bot(load(tmp_path, SHARD_COUNT="2"))
    assert (every.shard_count, getattr(every, "shard_ids", None)) == (2, [0, 1])

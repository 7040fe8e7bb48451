"""Operator tools that tell the truth: backup and restore, a newer schema, invite without a key, check's causes."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from bot.ops.backup import BackupError, backup, known_schema_version, restore
from bot.ops.doctor import check_openai, collect, run_checks
from bot.storage.store import SchemaTooNew, open_store
from testkit.discord import FakeDiscord, patched_discord_py
from testkit.openai import FakeOpenAI
from tests.e2e.ops.test_startup import run_module
from tests.support.server import BotFactory, World, make_settings

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.abc.def"  # application id 123456789012345678


def count(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(sql).fetchone()[0])


@pytest.mark.sqlite_only("SQLite's online backup API and file lock; PostgreSQL is backed up with pg_dump")
async def test_backup_while_the_bot_writes_is_consistent_and_restore_waits_for_the_bot_to_stop(
    start_bot: BotFactory, world: World, tmp_path: Path
) -> None:
    bot = await start_bot()
    store = bot.services.store
    written = 0
    stop, progressed = asyncio.Event(), asyncio.Event()

    async def keep_writing() -> None:
        nonlocal written
        while not stop.is_set():
            await store.insert(
                "INSERT INTO usage_events (created_at, guild_id, command, kind, model, cost) "
                "VALUES (?, ?, 'ask', 'chat', 'gpt-5-mini', 0.001)",
                [(time.time(), world.guild_id) for _ in range(20)],
            )
            written += 20
            progressed.set()

    writer = asyncio.create_task(keep_writing())
    while written < 100:  # the copy starts while the bot is busy writing
        progressed.clear()
        await progressed.wait()
    target = tmp_path / "backups" / "bot-backup.db"
    copied = await asyncio.to_thread(backup, store.path, target)
    after_backup = written
    while written <= after_backup:  # the bot keeps writing after the copy
        progressed.clear()
        await progressed.wait()
    stop.set()
    await writer

    assert copied.integrity == "ok"
    assert copied.schema_version == known_schema_version()
    with sqlite3.connect(target) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        in_copy = conn.execute("SELECT COUNT(*) FROM usage_events").fetchone()[0]
    # A copy of one commit: whole batches of 20, some but not all of what was written meanwhile.
    assert 0 < in_copy < written and in_copy % 20 == 0
    assert not target.with_name(target.name + ".partial").exists()

    with pytest.raises(BackupError, match="the bot is running"):
        restore(store.path, target)
    assert count(store.path, "SELECT COUNT(*) FROM usage_events") == written  # nothing was replaced

    with pytest.raises(BackupError, match="already exists"):
        backup(store.path, target)


async def test_restore_replaces_a_stopped_database_and_keeps_the_previous_one(tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    store = await open_store(database)
    await store.execute(
        "INSERT INTO usage_events (created_at, guild_id, command, kind, model, cost) "
        "VALUES (1, 1, 'ask', 'chat', 'm', 0)"
    )
    await store.close()
    saved = backup(database, tmp_path / "saved.db")
    store = await open_store(database)
    await store.execute("DELETE FROM usage_events")
    await store.close()

    restored = await asyncio.to_thread(restore, database, Path(saved.target))
    assert restored.integrity == "ok"
    assert count(database, "SELECT COUNT(*) FROM usage_events") == 1
    assert restored.kept_previous is not None
    assert count(Path(restored.kept_previous), "SELECT COUNT(*) FROM usage_events") == 0
    store = await open_store(database)  # the bot starts on the restored file
    await store.close()


async def test_a_database_from_a_newer_version_refuses_to_start_naming_both_versions(tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    store = await open_store(database)
    newer = known_schema_version() + 3
    await store.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, '9999_future.sql', 0)", (newer,)
    )
    await store.close()
    with pytest.raises(SchemaTooNew) as caught:
        await open_store(database)
    message = str(caught.value)
    assert f"schema version {newer}" in message and f"up to {known_schema_version()}" in message
    # The refusal left the file unlocked and untouched: a restore of an older backup can proceed.
    with pytest.raises(BackupError, match="newer version"):
        restore(tmp_path / "other.db", database)


def test_backup_and_restore_from_the_command_line(tmp_path: Path) -> None:
    database = tmp_path / "data" / "bot.db"
    env = {"DATABASE_URL": f"sqlite:///{database}"}
    database.parent.mkdir()
    sqlite3.connect(database).close()
    result = run_module("backup", str(tmp_path / "copy.db"), "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["integrity"] == "ok"
    result = run_module("restore", str(tmp_path / "copy.db"), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "restore:" in result.stdout and "Traceback" not in result.stderr


def test_backup_on_postgres_points_at_pg_dump(tmp_path: Path) -> None:
    result = run_module("backup", "x.dump", env={"DATABASE_URL": "postgresql://bot@db/bot"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "pg_dump" in result.stderr and "Traceback" not in result.stderr


def test_invite_needs_no_openai_key(tmp_path: Path) -> None:
    result = run_module("invite", env={"DISCORD_TOKEN": TOKEN}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "client_id=123456789012345678" in result.stdout
    assert "OPENAI_API_KEY" not in result.stdout + result.stderr


def test_invite_with_only_an_application_id_and_json(tmp_path: Path) -> None:
    result = run_module("invite", "--application-id", "42", "--json", env={}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["application_id"] == 42 and "client_id=42" in report["url"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_check_names_a_dns_failure(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, fake_openai, openai_base_url="http://does-not-exist.invalid/v1")
    [result] = await check_openai(settings)
    assert not result.ok
    assert "DNS" in result.detail and "does-not-exist.invalid" in result.detail
    assert "having trouble" not in result.detail


async def test_check_names_a_refused_connection(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    port = closed_port()
    settings = make_settings(tmp_path, fake_openai, openai_base_url=f"http://127.0.0.1:{port}/v1")
    [result] = await check_openai(settings)
    assert not result.ok
    assert "connection refused" in result.detail and f"127.0.0.1:{port}" in result.detail


async def test_check_json_for_scripts(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(tmp_path, fake_openai, openai_api_key="sk-wrong")
    with patched_discord_py(fake_discord):
        code = await run_checks(settings, as_json=True)
        names = {r.name for r in await collect(settings)}
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["ok"] is False
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == names
    assert checks["discord token"]["ok"] is True
    assert checks["openai key"]["ok"] is False and "invalid_api_key" in checks["openai key"]["detail"]

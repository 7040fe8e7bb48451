"""The numbered migrations apply on a fresh database (either backend), upgrade one made by 0001 alone keeping
its data, refuse a schema newer than the code, and run once when two processes start together."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path

import pytest

from bot.storage.base import bundled_migrations
from bot.storage.postgres import ddl, placeholders
from bot.storage.store import SchemaTooNew, Store, open_store
from tests.support.database import database_url

TABLE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)


def expected_tables() -> set[str]:
    return {name for _, _, sql in bundled_migrations() for name in TABLE.findall(sql)}


async def tables(store: Store) -> set[str]:
    return set(await store.tables())


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [version for version, _, _ in bundled_migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert len(versions) >= 4


async def test_a_fresh_database_gets_every_migration(tmp_path: Path) -> None:
    store = await open_store(database_url(tmp_path))
    try:
        applied = [row[0] for row in await store.fetchall("SELECT version FROM schema_migrations ORDER BY 1")]
        assert applied == [version for version, _, _ in bundled_migrations()]
        assert expected_tables() <= await tables(store)
        assert await store.integrity_ok()
        assert await store.migrate() == []  # nothing applies twice
    finally:
        await store.close()


@pytest.mark.sqlite_only("builds the first release's database file with sqlite3")
async def test_a_database_made_by_0001_alone_is_upgraded_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    version, name, sql = bundled_migrations()[0]
    assert version == 1
    # Exactly what the first release left behind: its schema, its bookkeeping table and some turns.
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        db.executescript(sql)
        db.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, name))
        db.execute(
            "INSERT INTO turns (guild_id, channel_id, author_id, role, content, tokens, created_at) "
            "VALUES (1, 2, 3, 'user', 'kept across the upgrade', 5, 0)"
        )
        db.execute("INSERT INTO channel_personas VALUES (2, 1, 'a pirate', 3, 0)")
    db.close()
    store = await open_store(path)
    try:
        assert await store.migrate() == []  # open() already applied the rest
        applied = [row[0] for row in await store.fetchall("SELECT version FROM schema_migrations ORDER BY 1")]
        assert applied == [v for v, _, _ in bundled_migrations()]
        assert expected_tables() <= await tables(store)
        turn = await store.fetchone("SELECT content, tokens FROM turns")
        assert turn is not None and tuple(turn) == ("kept across the upgrade", 5)
        persona = await store.fetchone("SELECT persona FROM channel_personas WHERE channel_id = 2")
        assert persona is not None and persona[0] == "a pirate"
        assert await store.integrity_ok()
    finally:
        await store.close()


async def test_a_schema_newer_than_the_code_refuses_to_start_naming_both_versions(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    store = await open_store(url)
    newest = max(version for version, _, _ in bundled_migrations())
    try:
        await store.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (newest + 1, f"{newest + 1:04d}_from_the_future.sql", time.time()),
        )
    finally:
        await store.close()
    with pytest.raises(SchemaTooNew) as refused:
        await open_store(url)
    message = str(refused.value)
    assert f"version {newest + 1}" in message and f"up to {newest}" in message


@pytest.mark.postgresql_only("the advisory lock that serialises migrations is PostgreSQL's")
async def test_two_processes_starting_at_once_migrate_once(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    stores = await asyncio.gather(*(open_store(url, pool_size=2) for _ in range(4)))
    try:
        rows = await stores[0].fetchall("SELECT version FROM schema_migrations ORDER BY version")
        assert [row[0] for row in rows] == [version for version, _, _ in bundled_migrations()]
    finally:
        for store in stores:
            await store.close()


def test_placeholders_become_numbered_outside_quotes() -> None:
    assert (
        placeholders("SELECT ? , '?', \"a?\" WHERE x IN (?, ?)")
        == "SELECT $1 , '?', \"a?\" WHERE x IN ($2, $3)"
    )


def test_the_migrations_translate_to_postgresql_types() -> None:
    translated = ddl(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, snowflake INTEGER NOT NULL, at REAL, raw BLOB);"
    )
    assert translated == (
        "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, snowflake BIGINT NOT NULL, "
        "at DOUBLE PRECISION, raw BYTEA);"
    )

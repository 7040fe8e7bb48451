"""The numbered migrations apply on a fresh database and upgrade one made by 0001 alone, keeping its data."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from bot.storage.store import Store, bundled_migrations

TABLE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)


def expected_tables() -> set[str]:
    return {name for _, _, sql in bundled_migrations() for name in TABLE.findall(sql)}


async def tables(store: Store) -> set[str]:
    rows = await store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {row[0] for row in rows}


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [version for version, _, _ in bundled_migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert len(versions) >= 4


async def test_a_fresh_database_gets_every_migration(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "fresh.db")
    try:
        applied = [row[0] for row in await store.fetchall("SELECT version FROM schema_migrations ORDER BY 1")]
        assert applied == [version for version, _, _ in bundled_migrations()]
        assert expected_tables() <= await tables(store)
        assert await store.integrity_ok()
        assert await store.migrate() == []  # nothing applies twice
    finally:
        await store.close()


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
    store = await Store.open(path)
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

"""The test database: a SQLite file per test, or (TEST_DATABASE=postgresql) a database per test on one cluster.

The cluster (testkit/postgres.py) is started once per pytest process (each xdist worker has its own), lazily
on the first test that needs a database, and stopped when the process ends.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg

from bot.storage.postgres import placeholders
from testkit.postgres import Cluster

BACKENDS = ("sqlite", "postgresql")


def backend() -> str:
    """The backend this run tests: TEST_DATABASE=postgresql (or pytest --database postgresql), else sqlite."""
    chosen = os.environ.get("TEST_DATABASE", "sqlite").strip().lower() or "sqlite"
    if chosen == "postgres":
        chosen = "postgresql"
    if chosen not in BACKENDS:
        raise RuntimeError(f"TEST_DATABASE must be one of {BACKENDS}, not {chosen!r}")
    return chosen


def on_postgres() -> bool:
    return backend() == "postgresql"


_cluster: Cluster | None = None
_urls: dict[Path, str] = {}


def cluster() -> Cluster:
    """This process's test cluster, started on first use and stopped when the process exits."""
    global _cluster
    if _cluster is None:
        started = Cluster()
        atexit.register(started.stop)
        started.start()
        _cluster = started
    return _cluster


def stop_cluster() -> None:
    global _cluster
    if _cluster is not None:
        _cluster.stop()
        _cluster = None


def database_url(tmp_path: Path) -> str:
    """The DATABASE_URL of the test owning `tmp_path`: the same on every call, so a restarted bot finds its data."""
    if not on_postgres():
        return f"sqlite:///{tmp_path / 'bot.db'}"
    if tmp_path not in _urls:
        _urls[tmp_path] = cluster().create_database()
    return _urls[tmp_path]


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows read straight from a test database (no bot code in between), from sync or async tests alike.

    SQL with `?` placeholders, in the subset both dialects share.
    """
    if not url.startswith(("postgresql://", "postgres://")):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return [tuple(row) for row in conn.execute(sql, params)]

    async def fetch() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url)
        try:
            return [tuple(row) for row in await conn.fetch(placeholders(sql), *params)]
        finally:
            await conn.close()

    # A thread of its own: the caller may be inside a running event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fetch()).result(timeout=60)


def integrity_ok(url: str) -> bool:
    """SQLite's page-by-page integrity check; PostgreSQL checks its own pages, so only that it answers."""
    if url.startswith(("postgresql://", "postgres://")):
        return query(url, "SELECT 1") == [(1,)]
    return query(url, "PRAGMA integrity_check") == [("ok",)]


def table_names(url: str) -> set[str]:
    if url.startswith(("postgresql://", "postgres://")):
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return {str(row[0]) for row in query(url, sql)}

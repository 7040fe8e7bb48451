"""The storage interface every driver implements, group commit, and the numbered migrations they share."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from bot import errors
from bot.util.metrics import Metrics

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
Params = Sequence[Any] | dict[str, Any]
# sqlite3.Row or asyncpg.Record: both read by name (row["col"]), by index (row[0]) and unpack as a tuple.
Row = Any


class StoreError(errors.StorageUnavailable):
    """The database could not be opened or written (permissions, disk full, corruption, a lost server).

    A domain error, so a command whose write fails tells its user why instead of "something went wrong".
    """


class SchemaTooNew(StoreError):
    """The database was migrated by a newer version of the bot than this one."""


def bundled_migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped in bot/storage/migrations, in order."""
    found: list[tuple[int, str, str]] = []
    for entry in resources.files("bot.storage.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [version for version, _, _ in found]
    if len(versions) != len(set(versions)):
        raise StoreError(f"two migrations share a number: {[name for _, name, _ in found]}")
    return found


def refuse_newer_schema(applied: Iterable[int]) -> None:
    """A database migrated past this code's newest migration would be misread: refuse to start."""
    newest_known = max((version for version, _, _ in bundled_migrations()), default=0)
    newest_applied = max(applied, default=0)
    if newest_applied > newest_known:
        raise SchemaTooNew(
            f"the database has schema version {newest_applied}, but this version of the bot only knows "
            f"versions up to {newest_known}: run the newer bot that migrated it, or restore a backup"
        )


def statements(script: str) -> Iterable[str]:
    """A migration script split into its statements (comments between them are dropped with them)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()
    ):
        raise StoreError("a migration ends with an incomplete statement")


@dataclass
class Result:
    """What a statement inside a transaction returned: its rows (if any) and how many rows it changed.

    fetchone/fetchall are coroutines, as on a DB-API cursor, so repositories read both drivers alike.
    A new row's id comes back with `INSERT ... RETURNING id` (SQLite 3.35+ and PostgreSQL), not lastrowid.
    """

    rows: list[Row] = field(default_factory=list)
    rowcount: int = -1

    async def fetchone(self) -> Row | None:
        return self.rows[0] if self.rows else None

    async def fetchall(self) -> list[Row]:
        return list(self.rows)


class Transaction(ABC):
    """The statements of one write transaction, with `?` placeholders on every driver."""

    @abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> Result: ...

    @abstractmethod
    async def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...


@dataclass
class _QueuedInsert:
    sql: str
    rows: Sequence[Params]
    done: asyncio.Future[None]


class Store(ABC):
    """The database, whichever the driver: short write transactions, reads, and group-committed inserts.

    Repositories write SQL once, in the subset both dialects share, with `?` placeholders; the drivers
    (bot/storage/sqlite.py, bot/storage/postgres.py) translate what differs (docs/storage.md).
    """

    dialect: str = ""
    # Whether other processes may write the same database (PostgreSQL), so per-process state cannot stand in
    # for shared state; SQLite's file belongs to one process (docs/storage.md).
    shared_by_processes: bool = False

    def __init__(self) -> None:
        self._queued: list[_QueuedInsert] = []
        self._flusher: asyncio.Task[None] | None = None
        # Set by open_store: write latency for /metrics (docs/operations.md).
        self.metrics: Metrics | None = None

    def observe_write(self, started: float) -> None:
        """Record how long a write (a transaction or a group commit) took since `started` (perf_counter)."""
        if self.metrics is not None:
            self.metrics.db_writes.observe(time.perf_counter() - started)

    @abstractmethod
    def transaction(self, *, lock_key: int | str | None = None) -> AbstractAsyncContextManager[Transaction]:
        """A short write transaction; commits on success, rolls back on any exception.

        `lock_key` (a Discord id, or a name such as `cost:<guild>`): transactions given the same key run one
        at a time, across processes too, so a check-then-write inside one (sum the reservations, then insert
        one; look for an earlier strike, then record one) cannot interleave with another. SQLite's write
        transactions already do.
        """

    @abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query that returns one row (a key lookup or an aggregate)."""
        return next(iter(await self.fetchall(sql, params)), None)

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write statement in its own transaction; returns the affected row count."""
        async with self.transaction() as db:
            return (await db.execute(sql, params)).rowcount

    @abstractmethod
    async def migrate(self) -> list[int]:
        """Apply every bundled migration not yet recorded; refuse a schema newer than this code."""

    @abstractmethod
    async def checkpoint(self) -> bool:
        """Make deleted data unreadable on disk as far as the backend allows (docs/privacy.md)."""

    @abstractmethod
    async def integrity_ok(self) -> bool: ...

    @abstractmethod
    async def tables(self) -> list[str]:
        """The names of every table the migrations created (schema_migrations included)."""

    @abstractmethod
    async def columns(self, table: str) -> list[str]:
        """A table's column names, in their order."""

    @abstractmethod
    async def reset_identity(self, table: str) -> None:
        """After rows were copied in with their ids, the next generated id follows the largest."""

    @abstractmethod
    async def _write_batch(self, statements: list[tuple[str, list[Params]]]) -> None:
        """Every statement's rows (executemany) in one transaction, rolled back whole if any fails."""

    @abstractmethod
    async def _close_connections(self) -> None: ...

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.wait({self._flusher}, timeout=5)  # queued inserts are committed first
        await self._close_connections()

    async def insert(self, sql: str, rows: Sequence[Params]) -> None:
        """Insert `rows` atomically, committed together with the other inserts queued meanwhile.

        Every /ask writes its usage and its exchange: one transaction each made concurrent /asks queue for
        the writer (docs/performance.md). Queued inserts share one transaction and one executemany per
        statement; the caller still returns only once its rows are committed (or gets the StoreError).
        """
        await self.insert_soon(sql, rows)

    async def write_grouped(self, sql: str, rows: Sequence[Params]) -> None:
        """Run a write statement (an upsert or delete by key) for `rows` with the next group commit, as
        `insert` does; for writes of one /ask's own keys, which no concurrent statement orders against.

        A transaction of its own is three trips to the writer's thread (BEGIN, the statement, COMMIT)
        behind the write lock; an /ask made two of them (docs/performance.md).
        """
        await self.insert_soon(sql, rows)

    def insert_soon(self, sql: str, rows: Sequence[Params]) -> asyncio.Future[None]:
        """Queue `rows` now and return the future of their commit (a StoreError when it failed).

        Inserts commit in the order they were queued: a write awaited after this one commits after it.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append(_QueuedInsert(sql, rows, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_inserts(), name="store-inserts")
        return done

    async def _flush_inserts(self) -> None:
        try:
            await self._flush_queued()
        finally:
            # Cancelled (the loop is closing): nobody may wait for ever on rows that were not written.
            for item in self._queued:
                _settle(item.done, StoreError("the database was closing"))
            self._queued = []

    async def _flush_queued(self) -> None:
        while self._queued:
            # A caller cancelled before its turn (a shutdown) does not want its rows any more.
            batch = [item for item in self._queued if not item.done.done()]
            self._queued = []
            if not batch:
                continue
            try:
                await self._insert_together(batch)
            except asyncio.CancelledError:
                for item in batch:
                    _settle(item.done, StoreError("the database was closing"))
                raise
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0].done, exc)
                    continue
                # One bad insert must not fail the others: each alone, in its own transaction.
                for item in batch:
                    try:
                        await self._insert_together([item])
                    except Exception as alone:
                        _settle(item.done, alone)
                    else:
                        _settle(item.done, None)
                continue
            for item in batch:
                _settle(item.done, None)

    async def _insert_together(self, batch: list[_QueuedInsert]) -> None:
        by_sql: dict[str, list[Params]] = {}
        for item in batch:
            by_sql.setdefault(item.sql, []).extend(item.rows)
        await self._write_batch(list(by_sql.items()))


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)

"""SQLite through aiosqlite: WAL, numbered migrations, one writer with short BEGIN IMMEDIATE transactions."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from bot import errors
from bot.storage.lock import DatabaseLock
from bot.util.metrics import Metrics

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
Params = Sequence[Any] | dict[str, Any]


class StoreError(errors.StorageUnavailable):
    """The database could not be opened or written (permissions, disk full, corruption).

    A domain error, so a command whose write fails tells its user why instead of "something went wrong".
    """


class SchemaTooNew(StoreError):
    """The database was migrated by a newer version of the bot than this one."""

    def __init__(self, path: Path, found: int, known: int) -> None:
        super().__init__(
            f"the database at {path} has schema version {found}, written by a newer version of the bot; "
            f"this version knows schema versions up to {known}. Upgrade the bot, or restore a backup taken "
            "before the upgrade (docs/operations.md)"
        )
        self.found = found
        self.known = known


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


def _statements(script: str) -> Iterable[str]:
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
class _QueuedInsert:
    sql: str
    rows: Sequence[Params]
    done: asyncio.Future[None]


class Store:
    """One writer connection (serialised by a lock) and one reader connection, both in WAL mode."""

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        metrics: Metrics | None = None,
    ) -> None:
        self.path = path
        self.metrics = metrics
        self.lock: DatabaseLock | None = None
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._queued: list[_QueuedInsert] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path | str, *, metrics: Metrics | None = None) -> Store:
        path = Path(path)
        lock = DatabaseLock(path)
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
                # Held while open, so `python -m bot restore` refuses to replace the file under us.
                lock.hold_shared()
            writer = await cls._connect(path)
            reader = await cls._connect(path)
        except BlockingIOError as exc:
            raise StoreError(
                f"the database at {path} is being restored; start the bot when it is done"
            ) from exc
        except (OSError, sqlite3.Error) as exc:
            lock.release()
            raise StoreError(f"cannot open the database at {path}: {exc}") from exc
        store = cls(path, writer, reader, metrics)
        store.lock = lock
        try:
            await store.migrate()
        except BaseException:
            await store.close()
            raise
        return store

    @staticmethod
    async def _connect(path: Path) -> aiosqlite.Connection:
        # isolation_level=None: transactions are begun explicitly, so writes are BEGIN IMMEDIATE.
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=5000")
        # Deleted rows are overwritten with zeros, not left readable in free space (docs/privacy.md).
        await conn.execute("PRAGMA secure_delete=ON")
        return conn

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.wait({self._flusher}, timeout=5)  # queued inserts are committed first
        for conn in (self._reader, self._writer):
            try:
                await conn.close()
            except (sqlite3.Error, ValueError):
                log.warning("closing a database connection failed", exc_info=True)
        if self.lock is not None:
            self.lock.release()

    async def migrate(self) -> list[int]:
        """Apply every bundled migration not yet recorded; each one in its own transaction."""
        async with self.transaction() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
        applied = {row[0] for row in await self.fetchall("SELECT version FROM schema_migrations")}
        bundled = bundled_migrations()
        known = max((version for version, _, _ in bundled), default=0)
        if applied and max(applied) > known:
            # Its tables may no longer mean what this version's code assumes: refuse rather than corrupt them.
            raise SchemaTooNew(self.path, max(applied), known)
        newly: list[int] = []
        for version, name, sql in bundled:
            if version in applied:
                continue
            async with self.transaction() as db:
                for statement in _statements(sql):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
            log.info("applied database migration %s", name)
            newly.append(version)
        return newly

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A short write transaction; commits on success, rolls back on any exception."""
        started = time.perf_counter()
        async with self._write_lock:
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._failed("the database is not writable", exc) from exc
            try:
                yield self._writer
            except BaseException as exc:
                await self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise self._failed("the database could not save", exc) from exc
                raise
            try:
                await self._writer.execute("COMMIT")
            except sqlite3.Error as exc:
                await self._rollback()
                raise self._failed("the database could not save", exc) from exc
            self._observe_write(started)

    def _observe_write(self, started: float) -> None:
        if self.metrics is not None:
            self.metrics.db_writes.observe(time.perf_counter() - started)

    async def _rollback(self) -> None:
        # SQLite may already have rolled back (SQLITE_FULL, SQLITE_IOERR): a second ROLLBACK must not
        # replace the real error with "no transaction is active".
        try:
            await self._writer.execute("ROLLBACK")
        except sqlite3.Error:
            log.debug("rollback after a failed write: no transaction was active")

    def _failed(self, what: str, exc: sqlite3.Error) -> StoreError:
        # An admin must hear about a full or read-only disk even though users get a clear message.
        log.warning("%s (%s): %s", what, self.path, exc)
        return StoreError(f"{what}: {exc}")

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write statement in its own transaction; returns the affected row count."""
        async with self.transaction() as db:
            cursor = await db.execute(sql, params)
            return cursor.rowcount

    async def insert(self, sql: str, rows: Sequence[Params]) -> None:
        """Insert `rows` atomically, committed together with the other inserts queued meanwhile.

        Every /ask writes its usage and its exchange: one transaction each, through the one writer, made
        concurrent /asks queue for the writer lock, three trips to its thread per write (README,
        "Performance"). Queued inserts share one transaction and one executemany per statement; the
        caller still returns only once its rows are committed (or gets the StoreError).
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
        writer = self._writer
        started = time.perf_counter()
        async with self._write_lock:
            try:
                # One trip to the writer's thread for the whole transaction, not one per statement: under
                # load every trip waited for a turn of the busy event loop, and each /ask awaits two of
                # these commits (README, "Performance"). aiosqlite's `_execute` queues a callable on that
                # thread; tests/test_hot_path.py pins the atomicity this relies on.
                await writer._execute(_write_batch, writer, list(by_sql.items()))
            except sqlite3.Error as exc:
                raise self._failed("the database could not save", exc) from exc
        self._observe_write(started)

    async def fetchall(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
        # One trip to the connection's thread, not three (execute, fetch, close): under load each trip
        # waits for a turn of a busy event loop (README, "Performance").
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise self._failed("the database could not be read", exc) from exc

    async def fetchone(self, sql: str, params: Params = ()) -> aiosqlite.Row | None:
        """The first row of a query that returns one row (a key lookup or an aggregate)."""
        return next(iter(await self.fetchall(sql, params)), None)

    async def checkpoint(self) -> bool:
        """Copy the WAL into the database file and truncate it to zero bytes.

        Until then the -wal file still holds the pages as they were before a deletion, so deleted text stays
        readable on disk. False when a reader kept the checkpoint from finishing (the next one catches up).
        """
        async with self._write_lock:
            try:
                cursor = await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                row = await cursor.fetchone()
                await cursor.close()
            except sqlite3.Error as exc:
                raise self._failed("the database could not be checkpointed", exc) from exc
        if row is not None and row[0]:
            log.warning(
                "a WAL checkpoint could not finish (a reader was busy); deleted data waits for the next"
            )
            return False
        return True

    async def integrity_ok(self) -> bool:
        row = await self.fetchone("PRAGMA integrity_check")
        return row is not None and row[0] == "ok"


def _write_batch(writer: aiosqlite.Connection, statements: list[tuple[str, list[Params]]]) -> None:
    """In the writer's thread: every statement in one transaction, rolled back whole if any fails."""
    conn = writer._conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in statements:
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may already have rolled back (SQLITE_FULL, SQLITE_IOERR).
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)

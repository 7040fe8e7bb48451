"""SQLite through aiosqlite: WAL, numbered migrations, one writer with short BEGIN IMMEDIATE transactions."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from bot.storage.base import (
    Params,
    Result,
    Row,
    Store,
    StoreError,
    Transaction,
    bundled_migrations,
    refuse_newer_schema,
    statements,
)
from bot.storage.lock import DatabaseLock

log = logging.getLogger(__name__)


class _SqliteTransaction(Transaction):
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> Result:
        # One trip to the connection's thread per statement: run, read every row, count.
        return await self._conn._execute(_execute_here, self._conn._conn, sql, params)

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        await self._conn.executemany(sql, rows)


def _execute_here(conn: sqlite3.Connection, sql: str, params: Params) -> Result:
    cursor = conn.execute(sql, params)
    try:
        rows = cursor.fetchall()
        return Result(rows, cursor.rowcount)
    finally:
        cursor.close()


class SqliteStore(Store):
    """One writer connection (serialised by a lock) and one reader connection, both in WAL mode."""

    dialect = "sqlite"

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        super().__init__()
        self.path = path
        self.lock: DatabaseLock | None = None
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str) -> SqliteStore:
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
        store = cls(path, writer, reader)
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

    async def _close_connections(self) -> None:
        for conn in (self._reader, self._writer):
            try:
                await conn.close()
            except (sqlite3.Error, ValueError):
                log.warning("closing a database connection failed", exc_info=True)
        if self.lock is not None:
            self.lock.release()

    async def migrate(self) -> list[int]:
        """Apply every bundled migration not yet recorded; each one in its own transaction.

        One process owns a SQLite file, so no lock beyond BEGIN IMMEDIATE is needed here.
        """
        async with self.transaction() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
        applied = {row[0] for row in await self.fetchall("SELECT version FROM schema_migrations")}
        refuse_newer_schema(applied)
        newly: list[int] = []
        for version, name, sql in bundled_migrations():
            if version in applied:
                continue
            async with self.transaction() as db:
                for statement in statements(sql):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
            log.info("applied database migration %s", name)
            newly.append(version)
        return newly

    @asynccontextmanager
    async def transaction(self, *, lock_key: int | str | None = None) -> AsyncIterator[Transaction]:
        """A short write transaction; commits on success, rolls back on any exception.

        Every BEGIN IMMEDIATE transaction already excludes every other writer of the file, in this process
        and any other, so `lock_key` needs nothing more.
        """
        started = time.perf_counter()
        async with self._write_lock:
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._failed("the database is not writable", exc) from exc
            try:
                yield _SqliteTransaction(self._writer)
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
        self.observe_write(started)

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

    async def _write_batch(self, statements: list[tuple[str, list[Params]]]) -> None:
        writer = self._writer
        started = time.perf_counter()
        async with self._write_lock:
            try:
                # One trip to the writer's thread for the whole transaction, not one per statement: under
                # load every trip waited for a turn of the busy event loop, and each /ask awaits two of
                # these commits (docs/performance.md). aiosqlite's `_execute` queues a callable on that
                # thread; tests/e2e/ask/test_hot_path.py pins the atomicity this relies on.
                await writer._execute(_write_batch_here, writer, statements)
            except sqlite3.Error as exc:
                raise self._failed("the database could not save", exc) from exc
        self.observe_write(started)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        # One trip to the connection's thread, not three (execute, fetch, close): under load each trip
        # waits for a turn of a busy event loop (docs/performance.md).
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise self._failed("the database could not be read", exc) from exc

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

    async def reset_identity(self, table: str) -> None:
        """Nothing to do: SQLite's next rowid is always past the largest one in the table."""

    async def columns(self, table: str) -> list[str]:
        return [str(row[1]) for row in await self.fetchall("SELECT * FROM pragma_table_info(?)", (table,))]

    async def tables(self) -> list[str]:
        rows = await self.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        )
        return [str(row[0]) for row in rows]


def _write_batch_here(writer: aiosqlite.Connection, statements: list[tuple[str, list[Params]]]) -> None:
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

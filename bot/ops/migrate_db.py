"""`python -m bot migrate-db --from sqlite:///data/bot.db --to postgresql://...`: copy every table, then verify."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from bot.storage.store import SqliteStore, Store, StoreError, open_store

BATCH_ROWS = 5000
BAR_WIDTH = 30


class TargetNotEmpty(StoreError):
    """The target database already holds rows; copying into it would mix two histories."""


@dataclass
class CopyReport:
    copied: dict[str, int] = field(default_factory=dict)
    mismatched: dict[str, tuple[int, int]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.copied.values())

    def render(self) -> str:
        lines = [f"  {table:<28} {count:>12,} rows" for table, count in self.copied.items()]
        lines.append(f"  {'total':<28} {self.rows:>12,} rows in {self.seconds:.1f} s")
        for table, (source, target) in self.mismatched.items():
            lines.append(f"  MISMATCH {table}: {source:,} rows in the source, {target:,} in the target")
        return "\n".join(lines)


class Progress:
    """One line per table on stderr, redrawn in place: a bar, rows done of rows to do, and the rate."""

    def __init__(self, out: TextIO, table: str, total: int) -> None:
        self.out, self.table, self.total = out, table, total
        self.started = time.perf_counter()
        self.interactive = out.isatty()

    def update(self, done: int, *, final: bool = False) -> None:
        if not (self.interactive or final):
            return
        filled = BAR_WIDTH if self.total == 0 else int(BAR_WIDTH * done / self.total)
        rate = done / max(time.perf_counter() - self.started, 1e-9)
        line = (
            f"\r{self.table:<28} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
            f"{done:,}/{self.total:,} rows  {rate:,.0f} rows/s"
        )
        self.out.write(line + ("\n" if final else ""))
        self.out.flush()


async def _count(store: Store, table: str) -> int:
    row = await store.fetchone(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - names from the schema
    return int(row[0]) if row else 0


async def copy_database(
    source: SqliteStore, target: Store, *, force: bool = False, batch_rows: int = BATCH_ROWS, out: TextIO
) -> CopyReport:
    """Copy every table of `source` into `target` (both migrated to this code's schema), then verify counts.

    Tables are copied in the order they were created, so a row's foreign key target arrives before it.
    """
    tables = [t for t in await source.tables() if t != "schema_migrations"]
    missing = sorted(set(tables) - set(await target.tables()))
    if missing:
        raise StoreError(f"the target has no tables {missing}: is it migrated by the same version?")
    held = {table: n for table in tables if (n := await _count(target, table))}
    if held and not force:
        listing = ", ".join(f"{table} ({n:,} rows)" for table, n in held.items())
        raise TargetNotEmpty(f"the target already holds data: {listing}. Use --force to replace it")
    if held:
        async with target.transaction() as db:
            for table in reversed(tables):
                await db.execute(f"DELETE FROM {table}")  # noqa: S608
    report = CopyReport()
    started = time.perf_counter()
    for table in tables:
        columns = await source.columns(table)
        names = ", ".join(columns)
        insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in columns)})"  # noqa: S608
        total = await _count(source, table)
        progress = Progress(out, table, total)
        done, last_rowid = 0, -(2**63)
        while True:
            # Keyset pages over SQLite's rowid: each page is an index seek, not an ever longer OFFSET scan.
            rows = await source.fetchall(
                f"SELECT rowid, {names} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?",  # noqa: S608
                (last_rowid, batch_rows),
            )
            if not rows:
                break
            last_rowid = rows[-1][0]
            async with target.transaction() as db:
                await db.executemany(insert, [tuple(row)[1:] for row in rows])
            done += len(rows)
            progress.update(done)
        progress.update(done, final=True)
        await target.reset_identity(table)
        report.copied[table] = done
    report.seconds = time.perf_counter() - started
    for table in tables:
        source_rows, target_rows = await _count(source, table), await _count(target, table)
        if source_rows != target_rows:
            report.mismatched[table] = (source_rows, target_rows)
    return report


async def run_migrate_db(source_url: str, target_url: str, *, force: bool, out: TextIO = sys.stderr) -> int:
    if not source_url.startswith("sqlite:///"):
        print("--from must be a sqlite:///path URL (the database the bot used until now)", file=out)
        return 2
    try:
        source = await open_store(source_url)
    except StoreError as exc:
        print(f"cannot open the source: {exc}", file=out)
        return 1
    try:
        assert isinstance(source, SqliteStore)
        try:
            target = await open_store(target_url, pool_size=2)
        except StoreError as exc:
            print(f"cannot open the target: {exc}", file=out)
            return 1
        try:
            report = await copy_database(source, target, force=force, out=out)
        except TargetNotEmpty as exc:
            print(f"refused: {exc}", file=out)
            return 1
        except StoreError as exc:
            print(f"the copy failed: {exc}", file=out)
            return 1
        finally:
            await target.close()
    finally:
        await source.close()
    print("copied:", file=out)
    print(report.render(), file=out)
    if report.mismatched:
        print("row counts differ: the copy is incomplete, do not switch DATABASE_URL yet", file=out)
        return 1
    print("every table's row count matches: set DATABASE_URL to the target and start the bot", file=out)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot migrate-db",
        description="Copy an existing SQLite database into an empty PostgreSQL (or SQLite) one.",
    )
    parser.add_argument("--from", dest="source", required=True, help="sqlite:///path/to/bot.db")
    parser.add_argument("--to", dest="target", required=True, help="postgresql://user:password@host:5432/db")
    parser.add_argument("--force", action="store_true", help="replace whatever the target already holds")
    args = parser.parse_args(argv)
    return asyncio.run(run_migrate_db(args.source, args.target, force=args.force))

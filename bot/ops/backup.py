"""`python -m bot backup PATH` and `restore PATH`: consistent online copies of the SQLite database, verified."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from dotenv import dotenv_values

from bot.storage.lock import DatabaseLock
from bot.storage.store import bundled_migrations

POSTGRES_SCHEMES = ("postgres://", "postgresql://", "postgresql+")


class BackupError(Exception):
    """A backup or restore that could not be done; the message says why and what to do."""


@dataclass(frozen=True)
class Copied:
    """A verified copy: where from, where to, its size and schema version."""

    source: str
    target: str
    bytes: int
    schema_version: int
    integrity: str
    seconds: float
    kept_previous: str | None = None


def postgres_refusal(environ: Mapping[str, str], env_file: str | Path = ".env") -> str | None:
    """The answer for a PostgreSQL DATABASE_URL: these tools copy SQLite files; pg_dump copies PostgreSQL."""
    url = environ.get("DATABASE_URL") or dotenv_values(env_file).get("DATABASE_URL") or ""
    if not url.startswith(POSTGRES_SCHEMES):
        return None
    return (
        "DATABASE_URL points at PostgreSQL: back it up with pg_dump "
        '(pg_dump --format=custom --file=bot.dump "$DATABASE_URL") and restore it with pg_restore. '
        "`python -m bot backup` and `restore` copy SQLite databases only."
    )


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        yield conn
    finally:
        conn.close()


def _integrity(conn: sqlite3.Connection) -> str:
    rows = conn.execute("PRAGMA integrity_check").fetchall()
    return "; ".join(str(row[0]) for row in rows[:5])


def _schema_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    except sqlite3.DatabaseError:
        return 0
    return int(row[0] or 0) if row else 0


def known_schema_version() -> int:
    return max((version for version, _, _ in bundled_migrations()), default=0)


def backup(database: Path, target: Path) -> Copied:
    """Copy `database` to `target` while the bot may be writing, then verify the copy.

    SQLite's backup API copies every page inside one read transaction: in WAL mode the bot's writes go on
    meanwhile, and the copy is the database as of one commit. It is written beside `target` and renamed
    once verified, so a failed backup never leaves a file that looks like one.
    """
    if not database.exists():
        raise BackupError(f"there is no database at {database} (check DATABASE_URL)")
    if target.exists():
        raise BackupError(f"{target} already exists; choose a new file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    started = time.monotonic()
    try:
        with _connect(database) as source, _connect(partial) as copy:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            integrity, version = _integrity(copy), _schema_version(copy)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"the backup failed: {exc}") from exc
    if integrity != "ok":
        partial.unlink(missing_ok=True)
        raise BackupError(
            f"the copy failed PRAGMA integrity_check ({integrity}); the database may be damaged"
        )
    partial.replace(target)
    return Copied(
        str(database), str(target), target.stat().st_size, version, integrity, time.monotonic() - started
    )


def restore(database: Path, source: Path) -> Copied:
    """Replace `database` with the backup `source`, only while no bot has the database open.

    The database it replaces is first copied to `<database>.before-restore`, so a restore can be undone.
    """
    if not source.exists():
        raise BackupError(f"there is no backup at {source}")
    with _connect(source) as backup_file:
        integrity, version = _integrity(backup_file), _schema_version(backup_file)
    if integrity != "ok":
        raise BackupError(f"{source} failed PRAGMA integrity_check ({integrity}); it cannot be restored")
    if version > known_schema_version():
        raise BackupError(
            f"{source} has schema version {version}, written by a newer version of the bot; this version "
            f"knows schema versions up to {known_schema_version()}. Upgrade the bot first."
        )
    lock = DatabaseLock(database)
    if not lock.supported:
        raise BackupError(
            "this system has no advisory file locks to tell whether the bot runs; copy the file by hand"
        )
    with lock:
        if not lock.try_exclusive():
            raise BackupError(
                f"the bot is running on {database} (it holds {lock.path}); stop it, then restore again"
            )
        started = time.monotonic()
        kept: str | None = None
        if database.exists():
            previous = database.with_name(database.name + ".before-restore")
            previous.unlink(missing_ok=True)
            with _connect(database) as current, _connect(previous) as aside:
                current.backup(aside)
            kept = str(previous)
        with _connect(source) as backup_file, _connect(database) as live:
            backup_file.backup(live)
            integrity = _integrity(live)
    if integrity != "ok":
        raise BackupError(f"the restored database failed PRAGMA integrity_check ({integrity})")
    return Copied(
        str(source),
        str(database),
        database.stat().st_size,
        version,
        integrity,
        time.monotonic() - started,
        kept_previous=kept,
    )


def _report(action: str, run: Copied | BackupError, as_json: bool) -> int:
    if isinstance(run, BackupError):
        if as_json:
            print(json.dumps({"ok": False, "action": action, "error": str(run)}))
        else:
            print(f"{action} refused: {run}")
        return 1
    if as_json:
        print(json.dumps({"ok": True, "action": action, **asdict(run)}))
        return 0
    print(
        f"{action}: {run.source} -> {run.target} ({run.bytes} bytes, schema version {run.schema_version}, "
        f"integrity {run.integrity}, {run.seconds:.2f} s)"
    )
    if run.kept_previous:
        print(f"the database it replaced is kept at {run.kept_previous}")
    return 0


def backup_command(database: Path, target: str, *, as_json: bool = False) -> int:
    try:
        return _report("backup", backup(database, Path(target)), as_json)
    except BackupError as exc:
        return _report("backup", exc, as_json)


def restore_command(database: Path, source: str, *, as_json: bool = False) -> int:
    try:
        return _report("restore", restore(database, Path(source)), as_json)
    except BackupError as exc:
        return _report("restore", exc, as_json)

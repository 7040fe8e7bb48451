"""The test database: a SQLite file per test, or (TEST_DATABASE=postgresql) a database per test on one cluster.

The cluster is started once per pytest process (each xdist worker has its own), lazily on the first test
that needs a database: `initdb` into a temporary folder as the `postgres` user when run as root, then the
`postgres` server as a direct child that dies with this process (PR_SET_PDEATHSIG) and is stopped at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import glob
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from bot.storage.postgres import placeholders

T = TypeVar("T")
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


def postgres_bindir() -> Path:
    """Debian puts the server binaries in /usr/lib/postgresql/<version>/bin, off PATH: newest first."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]), reverse=True
    )
    if found:
        return Path(found[0]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("no PostgreSQL server binaries (initdb): apt-get install -y postgresql")


def _die_with_parent() -> None:
    # Runs in the child after it changed user: a server that outlived this process would keep its port.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """One throwaway PostgreSQL server: trust authentication on 127.0.0.1, fsync off, many connections."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bot-test-pg-"))
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-postgres", daemon=True)
        self._admin: asyncpg.Connection | None = None
        self._created = 0
        self._lock = threading.Lock()

    @property
    def url_base(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def start(self) -> None:
        bindir = postgres_bindir()
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            shutil.chown(self.folder, "postgres", "postgres")
            as_user = {"user": "postgres", "group": "postgres", "extra_groups": []}
        data = self.folder / "data"
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **as_user,
        )
        self.process = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D", str(data),
                "-p", str(self.port),
                "-k", str(self.folder),
                "-c", "listen_addresses=127.0.0.1",
                "-c", "fsync=off",  # a throwaway server: durability is not under test
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=500",
                "-c", "shared_buffers=32MB",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "server.log", "wb"),  # noqa: SIM115 - the child keeps it open
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads run Python in the child before exec
            **as_user,
        )  # fmt: skip
        self._thread.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                self._admin = self._run(asyncpg.connect(f"{self.url_base}/postgres", timeout=2))
                break
            except (TimeoutError, OSError, asyncpg.PostgresError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.folder / "server.log").read_text(errors="replace")
                    raise RuntimeError(f"the test PostgreSQL server did not start:\n{log}") from None
                time.sleep(0.1)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=120)

    def create_database(self) -> str:
        """A new, empty database made from template0; its URL."""
        with self._lock:
            self._created += 1
            name = f"test_{self._created}"
        assert self._admin is not None
        self._run(self._admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY'))
        return f"{self.url_base}/{name}"

    def stop(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None and self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._run(admin.close(timeout=5))
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: roll back, disconnect, stop
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


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

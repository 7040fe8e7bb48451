"""A throwaway PostgreSQL server for tests and benchmarks: one cluster in a temporary folder, a database each.

`initdb` runs as the `postgres` user when this process is root (initdb and postgres refuse root); the server is
a direct child on a free loopback port with fsync off, dies with its parent (PR_SET_PDEATHSIG) and is stopped
by `stop()`. Debian's `postgresql` package provides the binaries in /usr/lib/postgresql/<version>/bin.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")


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


_PR_SET_PDEATHSIG = 1


def _die_with_parent_hook() -> Any:
    """A pre-exec hook asking the kernel to stop the server when this process dies: a server that outlived
    the run would keep its port and folder. libc is loaded here, in the parent, so the hook only calls it
    (the child runs it after changing user, which would otherwise clear the setting)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGINT)  # SIGINT: fast shutdown, clients cut


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
            preexec_fn=_die_with_parent_hook(),
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
        # A session's databases are tens of thousands of files: removing them takes seconds that a pytest-xdist
        # worker does not get at exit. A detached `rm` outlives this process and finishes the job.
        subprocess.Popen(
            ["rm", "-rf", "--", str(self.folder)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

"""The running bot's hold on its database file, so `restore` can tell that the bot is running."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so `restore` cannot tell and says so
    fcntl = None  # type: ignore[assignment]


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


class DatabaseLock:
    """An advisory lock on `<database>.lock`: every running bot holds it shared, `restore` needs it alone.

    The kernel drops the lock when the process exits, however it exits, so a crash never leaves a stale one.
    """

    def __init__(self, database: Path) -> None:
        self.path = lock_path(database)
        self._fd: int | None = None

    @property
    def supported(self) -> bool:
        return fcntl is not None

    def hold_shared(self) -> None:
        """Held from start-up to close by a running bot; many bots (tests, a second shard) may share it."""
        self._take(exclusive=False)

    def try_exclusive(self) -> bool:
        """True when nothing else holds the lock: no bot runs on this database."""
        try:
            self._take(exclusive=True)
        except BlockingIOError:
            return False
        return True

    def _take(self, *, exclusive: bool) -> None:
        if fcntl is None or str(self.path).startswith(":memory:"):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None

    def __enter__(self) -> DatabaseLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

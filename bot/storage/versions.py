"""Cache versions: a write bumps its scope in its own transaction; every process's caches hear of it on refresh."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.storage.base import Store, Transaction

log = logging.getLogger(__name__)

EVERY_SERVER = 0  # the key of a change that may touch any server (a /forget me everywhere, the purge)
# The row that counts every change; each other row holds the count at its own last change.
_COUNTER = ("*", EVERY_SERVER)

Invalidate = Callable[[int], None]  # called with the server id that changed, or EVERY_SERVER


class CacheVersions:
    """Several processes share one database, each with its own caches of it (docs/storage.md, "What is
    shared across processes"). A repository bumps `(scope, server)` inside the transaction that changes
    what it caches; `refresh` (one indexed read, usually of no row) tells this process's caches of every
    scope what changed since the last refresh, and they drop it.

    Bumps are counted by one row, locked (by its upsert) until each bumping transaction commits, so versions
    become visible in order: a refresh that sees version n has seen every change before it.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._watchers: dict[str, list[Invalidate]] = {}
        self._seen: int | None = None

    def watch(self, scope: str, invalidate: Invalidate) -> None:
        """Call `invalidate(server id)` when a change of `scope` is seen (0: any server may have changed)."""
        self._watchers.setdefault(scope, []).append(invalidate)

    async def bump(self, db: Transaction, scope: str, guild_id: int | None) -> None:
        """Record, in the caller's write transaction, that `scope`'s data of a server (None: any) changed."""
        row = await (
            await db.execute(
                "INSERT INTO cache_versions (scope, key, version) VALUES (?, ?, 1) ON CONFLICT (scope, key) "
                "DO UPDATE SET version = cache_versions.version + 1 RETURNING version",
                _COUNTER,
            )
        ).fetchone()
        version = int(row[0]) if row is not None else 0
        await db.execute(
            "INSERT INTO cache_versions (scope, key, version) VALUES (?, ?, ?) "
            "ON CONFLICT (scope, key) DO UPDATE SET version = excluded.version",
            (scope, guild_id or EVERY_SERVER, version),
        )

    async def load(self) -> None:
        """Start from the current version: called before any cache is filled."""
        row = await self.store.fetchone(
            "SELECT version FROM cache_versions WHERE scope = ? AND key = ?", _COUNTER
        )
        self._seen = int(row[0]) if row is not None else 0

    async def refresh(self) -> None:
        """Drop from this process's caches whatever other processes (or this one) changed since last time."""
        if self._seen is None:
            await self.load()
            return
        rows = await self.store.fetchall(
            "SELECT scope, key, version FROM cache_versions WHERE version > ?", (self._seen,)
        )
        if not rows:
            return
        for scope, key, version in rows:
            self._seen = max(self._seen, int(version))
            if (scope, key) == _COUNTER:
                continue
            for invalidate in self._watchers.get(str(scope), ()):
                invalidate(int(key))
        log.debug("caches refreshed up to version %s", self._seen)

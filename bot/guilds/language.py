"""The language an admin forces for a server's public posts (`/settings language`); none set = the server's own."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from bot import errors
from bot.i18n import LOCALES
from bot.privacy.owner import DataOwner, Effect, Fate, Retention, TablePolicy, guild_clause
from bot.storage.base import Store
from bot.storage.versions import EVERY_SERVER, CacheVersions

log = logging.getLogger(__name__)


class ServerLanguages(DataOwner):
    """Table server_languages: one row per server that forced a language. Read on every public post, so
    every row is loaded at start-up (`load`) and kept in memory: `forced` answers without an await.

    Another process's change reaches this one through the cache versions (checked before each /ask and
    drain): the server's row is then read again in the background, so at most a post already being written
    at that moment still uses the old language."""

    owned_tables = (
        TablePolicy(
            "server_languages",
            "each server's forced language for public posts and who set it",
            Fate.PSEUDONYMISED,
            Retention.WHILE_SET,
        ),
    )

    def __init__(self, store: Store, versions: CacheVersions | None = None) -> None:
        self.store = store
        self.versions = versions
        self._cache: dict[int, str | None] = {}
        self._loaded = False
        self._reloads: set[asyncio.Task[None]] = set()
        if versions is not None:
            versions.watch("language", self._changed_elsewhere)

    def _changed_elsewhere(self, guild_id: int) -> None:
        task = asyncio.get_running_loop().create_task(
            self.load() if guild_id == EVERY_SERVER else self._reload(guild_id)
        )
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload(self, guild_id: int) -> None:
        try:
            row = await self.store.fetchone(
                "SELECT language FROM server_languages WHERE guild_id = ?", (guild_id,)
            )
        except errors.StorageUnavailable:
            log.warning("could not read server %s's language again; keeping the one known", guild_id)
            return
        self._cache[guild_id] = str(row[0]) if row is not None and row[0] in LOCALES else None

    async def load(self) -> None:
        """Read every server's choice once (a few rows: only servers whose admins forced a language)."""
        rows = await self.store.fetchall("SELECT guild_id, language FROM server_languages")
        self._cache = {int(r[0]): str(r[1]) if r[1] in LOCALES else None for r in rows}
        self._loaded = True

    def forced(self, guild_id: int | None) -> str | None:
        """The forced language from memory (None before `load`, or when the server's own locale applies)."""
        if guild_id is None:
            return None
        return self._cache.get(guild_id)

    async def get(self, guild_id: int) -> str | None:
        """The forced language (`en`, `ko`), or None when the server's own preferred locale applies."""
        if self._loaded or guild_id in self._cache:
            return self._cache.get(guild_id)
        row = await self.store.fetchone(
            "SELECT language FROM server_languages WHERE guild_id = ?", (guild_id,)
        )
        language = str(row[0]) if row is not None and row[0] in LOCALES else None
        self._cache[guild_id] = language
        return language

    async def set(self, guild_id: int, language: str | None, set_by: int) -> None:
        """Force `language` for the server's public posts; None goes back to the server's own language."""
        if language is not None and language not in LOCALES:
            raise errors.InvalidInput(message_id="input.language.unknown", language=language[:20])
        async with self.store.transaction() as db:
            if language is None:
                await db.execute("DELETE FROM server_languages WHERE guild_id = ?", (guild_id,))
            else:
                await db.execute(
                    "INSERT INTO server_languages (guild_id, language, set_by, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (guild_id) DO UPDATE SET language = excluded.language, "
                    "set_by = excluded.set_by, updated_at = excluded.updated_at",
                    (guild_id, language, set_by, time.time()),
                )
            if self.versions is not None:
                await self.versions.bump(db, "language", guild_id)
        self._cache[guild_id] = language

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        """The server's setting stays; who set it is no longer this member."""
        where, params = guild_clause(guild_id)
        changed = await self.store.execute(
            f"UPDATE server_languages SET set_by = 0 WHERE {where} AND set_by = ?",  # noqa: S608
            (*params, user_id),
        )
        return (Effect("server_languages", Fate.PSEUDONYMISED, changed, "server setting you changed"),)

"""The chat model of each server and channel (/model): an admin's choice from the CHAT_MODELS allowlist."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot import errors
from bot.privacy.owner import DataOwner, Effect, Fate, Retention, TablePolicy, guild_clause
from bot.settings import Settings
from bot.storage.store import Store
from bot.storage.versions import CacheVersions

SERVER = 0  # the channel_id of a server-wide choice


@dataclass(frozen=True)
class ModelChoice:
    """Which model answers in a channel, and why."""

    model: str
    source: str  # "channel", "parent" (a thread's channel), "server" or "default"
    channel_model: str | None = None  # what was chosen, even when it has left the allowlist since
    server_model: str | None = None
    parent_model: str | None = None


class ModelNotAllowed(errors.InvalidInput):
    """A model name that is not on the bot's allowlist."""


class ChatModels(DataOwner):
    """Read on every /ask (cached, absent choices too); written only by /model. A change bumps the "model"
    cache version, so other processes drop theirs on their next refresh."""

    owned_tables = (
        TablePolicy(
            "chat_model_choices",
            "a server's or channel's chat model and who chose it",
            Fate.PSEUDONYMISED,
            Retention.WHILE_SET,
        ),
    )

    def __init__(self, store: Store, settings: Settings, versions: CacheVersions | None = None) -> None:
        self.store = store
        self.settings = settings
        self.versions = versions
        self._cache: dict[tuple[int, int], str | None] = {}
        self._writes = 0  # a read that overlapped a write is not cached (it may be stale)
        if versions is not None:
            versions.watch("model", lambda _guild_id: self._changed())

    @property
    def allowed(self) -> tuple[str, ...]:
        return self.settings.chat_model_choices()

    @property
    def default(self) -> str:
        return self.allowed[0]

    async def choice(
        self, guild_id: int | None, channel_id: int | None, parent_id: int | None = None
    ) -> ModelChoice:
        """The model for a channel: its own choice, else (in a thread or forum post, `parent_id` being its
        channel) its parent channel's, else its server's, else the default. A choice no longer on the
        allowlist (an operator shortened CHAT_MODELS) is skipped rather than used."""
        if not guild_id:
            return ModelChoice(self.default, "default")
        channel = await self._get(guild_id, channel_id) if channel_id else None
        parent = await self._get(guild_id, parent_id) if parent_id and parent_id != channel_id else None
        server = await self._get(guild_id, SERVER)
        for model, source in ((channel, "channel"), (parent, "parent"), (server, "server")):
            if model is not None and model in self.allowed:
                return ModelChoice(model, source, channel, server, parent)
        return ModelChoice(self.default, "default", channel, server, parent)

    async def model_for(
        self, guild_id: int | None, channel_id: int | None, parent_id: int | None = None
    ) -> str:
        return (await self.choice(guild_id, channel_id, parent_id)).model

    def check_allowed(self, model: str) -> str:
        name = model.strip()
        if name not in self.allowed:
            raise ModelNotAllowed(
                message_id="input.model.not_allowed",
                model=name[:100],
                models=", ".join(f"`{m}`" for m in self.allowed),
            )
        return name

    async def set(self, guild_id: int, channel_id: int, model: str, set_by: int) -> str:
        """Choose `model` for a channel (or the server, with channel_id 0); ModelNotAllowed when not listed."""
        name = self.check_allowed(model)
        self._changed()
        try:
            async with self.store.transaction() as db:
                await db.execute(
                    "INSERT INTO chat_model_choices (guild_id, channel_id, model, set_by, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (guild_id, channel_id) DO UPDATE SET "
                    "model = excluded.model, set_by = excluded.set_by, updated_at = excluded.updated_at",
                    (guild_id, channel_id, name, set_by, time.time()),
                )
                if self.versions is not None:
                    await self.versions.bump(db, "model", guild_id)
        finally:
            self._changed()
        return name

    async def clear(self, guild_id: int, channel_id: int) -> bool:
        self._changed()
        try:
            async with self.store.transaction() as db:
                cursor = await db.execute(
                    "DELETE FROM chat_model_choices WHERE guild_id = ? AND channel_id = ?",
                    (guild_id, channel_id),
                )
                if cursor.rowcount > 0 and self.versions is not None:
                    await self.versions.bump(db, "model", guild_id)
            return cursor.rowcount > 0
        finally:
            self._changed()

    async def _get(self, guild_id: int, channel_id: int) -> str | None:
        key = (guild_id, channel_id)
        if key in self._cache:
            return self._cache[key]
        writes = self._writes
        row = await self.store.fetchone(
            "SELECT model FROM chat_model_choices WHERE guild_id = ? AND channel_id = ?", key
        )
        model = str(row[0]) if row else None
        if writes == self._writes:
            if len(self._cache) > 100_000:
                self._cache.clear()  # a bound, not an LRU: re-reading is cheap, growing without end is not
            self._cache[key] = model
        return model

    def _changed(self) -> None:
        self._writes += 1
        self._cache.clear()

    # -- privacy (bot/privacy/owner.py) ---------------------------------------------------------

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        """The choices a member made stay (they are the server's setting), without the member's id."""
        where, params = guild_clause(guild_id)
        changed = await self.store.execute(
            f"UPDATE chat_model_choices SET set_by = 0 WHERE {where} AND set_by = ?",  # noqa: S608
            (*params, user_id),
        )
        return (Effect("chat_model_choices", Fate.PSEUDONYMISED, changed, "chat model choice you made"),)

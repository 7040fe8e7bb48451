"""Per-server budgets and per-command rules set with /limits, stored in the database and cached in memory."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot.privacy.owner import DataOwner, Effect, Fate, Retention, TablePolicy, guild_clause
from bot.settings import Settings
from bot.storage.store import Store
from bot.storage.versions import EVERY_SERVER, CacheVersions


@dataclass(frozen=True)
class Budgets:
    """Caps in USD; 0 means no cap. `*_custom` says the server overrides the setting."""

    user_daily_cap: float
    server_monthly_cap: float
    user_daily_custom: bool = False
    server_monthly_custom: bool = False


@dataclass(frozen=True)
class CommandRule:
    command: str
    enabled: bool = True
    role_id: int | None = None


class LimitsStore(DataOwner):
    owned_tables = (
        TablePolicy(
            "guild_budgets",
            "a server's caps and who last changed them",
            Fate.PSEUDONYMISED,
            Retention.WHILE_SET,
        ),
        TablePolicy(
            "command_rules",
            "a server's command rules and who last changed them",
            Fate.PSEUDONYMISED,
            Retention.WHILE_SET,
        ),
    )

    def __init__(self, store: Store, settings: Settings, versions: CacheVersions | None = None) -> None:
        self.store = store
        self.settings = settings
        self.versions = versions
        self._rules: dict[int, dict[str, CommandRule]] = {}
        # Read on every metered call (twice per /ask); only set_budgets writes the table.
        self._budgets: dict[int, Budgets] = {}
        self._budget_writes = 0  # a read that overlapped a write is not cached (it may be stale)
        if versions is not None:
            # Another process's /limits change: this one reads the server's budgets and rules again.
            versions.watch("limits", self._changed)

    def _changed(self, guild_id: int) -> None:
        self._budget_writes += 1
        if guild_id == EVERY_SERVER:
            self._budgets.clear()
            self._rules.clear()
        else:
            self._budgets.pop(guild_id, None)
            self._rules.pop(guild_id, None)

    async def budgets(self, guild_id: int) -> Budgets:
        cached = self._budgets.get(guild_id)
        if cached is None:
            writes = self._budget_writes
            cached = await self._read_budgets(guild_id)
            if writes == self._budget_writes:
                self._budgets[guild_id] = cached
        return cached

    async def _read_budgets(self, guild_id: int) -> Budgets:
        row = await self.store.fetchone(
            "SELECT user_daily_cap, server_monthly_cap FROM guild_budgets WHERE guild_id = ?", (guild_id,)
        )
        user = row["user_daily_cap"] if row is not None else None
        server = row["server_monthly_cap"] if row is not None else None
        return Budgets(
            float(user) if user is not None else self.settings.user_daily_budget,
            float(server) if server is not None else self.settings.server_monthly_budget,
            user is not None,
            server is not None,
        )

    async def set_budgets(
        self,
        guild_id: int,
        *,
        user_daily: float | None,
        server_monthly: float | None,
        by: int,
        reset: bool = False,
    ) -> Budgets:
        """Change the caps given (None leaves one as it is); `reset` goes back to the settings."""
        self._budget_writes += 1
        self._budgets.pop(guild_id, None)
        async with self.store.transaction() as db:
            if reset:
                await db.execute("DELETE FROM guild_budgets WHERE guild_id = ?", (guild_id,))
            await db.execute(
                "INSERT INTO guild_budgets (guild_id, user_daily_cap, server_monthly_cap, updated_by, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (guild_id) DO UPDATE SET "
                "user_daily_cap = COALESCE(excluded.user_daily_cap, guild_budgets.user_daily_cap), "
                "server_monthly_cap = COALESCE(excluded.server_monthly_cap, guild_budgets.server_monthly_cap), "
                "updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                (guild_id, user_daily, server_monthly, by, time.time()),
            )
            if self.versions is not None:
                await self.versions.bump(db, "limits", guild_id)
        self._budget_writes += 1
        self._budgets.pop(guild_id, None)
        return await self.budgets(guild_id)

    async def rules(self, guild_id: int) -> dict[str, CommandRule]:
        cached = self._rules.get(guild_id)
        if cached is None:
            rows = await self.store.fetchall(
                "SELECT command, enabled, role_id FROM command_rules WHERE guild_id = ?", (guild_id,)
            )
            cached = {r["command"]: CommandRule(r["command"], bool(r["enabled"]), r["role_id"]) for r in rows}
            self._rules[guild_id] = cached
        return cached

    async def rule(self, guild_id: int, command: str) -> CommandRule:
        return (await self.rules(guild_id)).get(command) or CommandRule(command)

    async def set_enabled(self, guild_id: int, command: str, enabled: bool, by: int) -> None:
        await self._upsert(guild_id, command, "enabled", int(enabled), by)

    async def set_role(self, guild_id: int, command: str, role_id: int | None, by: int) -> None:
        await self._upsert(guild_id, command, "role_id", role_id, by)

    async def _upsert(self, guild_id: int, command: str, column: str, value: int | None, by: int) -> None:
        assert column in {"enabled", "role_id"}
        async with self.store.transaction() as db:
            await db.execute(
                f"INSERT INTO command_rules (guild_id, command, {column}, updated_by, updated_at) "  # noqa: S608
                f"VALUES (?, ?, ?, ?, ?) ON CONFLICT (guild_id, command) DO UPDATE SET "
                f"{column} = excluded.{column}, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                (guild_id, command, value, by, time.time()),
            )
            if self.versions is not None:
                await self.versions.bump(db, "limits", guild_id)
        self._rules.pop(guild_id, None)

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        """The server's budgets and rules stay; who last changed them is no longer this member."""
        where, params = guild_clause(guild_id)
        changed = 0
        async with self.store.transaction() as db:
            for table in ("guild_budgets", "command_rules"):
                cursor = await db.execute(
                    f"UPDATE {table} SET updated_by = 0 WHERE {where} AND updated_by = ?",  # noqa: S608
                    (*params, user_id),
                )
                changed += max(0, cursor.rowcount)
        return (Effect("guild_budgets", Fate.PSEUDONYMISED, changed, "server limit you changed"),)

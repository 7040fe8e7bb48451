"""/forget me, /forget channel and the retention purge, carried out by the domains that own the data."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.privacy.owner import Cutoffs, DataOwner, Effect, Fate, Retention, TablePolicy
from bot.storage.store import Store

log = logging.getLogger(__name__)

# SQLite's own tables and the store's migration bookkeeping hold nobody's data.
INFRASTRUCTURE_TABLES = frozenset({"schema_migrations"})


@dataclass(frozen=True)
class RetentionDays:
    """RETENTION_DAYS and MODERATION_RETENTION_DAYS; 0 keeps that kind of data forever."""

    conversation: int = 90
    moderation: int = 90


@dataclass(frozen=True)
class PrivacyReport:
    """Every owner's effects, in registration order, for the reply to render."""

    effects: tuple[Effect, ...]
    retention: RetentionDays

    def rows(self, table: str, fate: Fate | None = None) -> int:
        return sum(e.rows for e in self.effects if e.table == table and (fate is None or e.fate is fate))

    def with_fate(self, fate: Fate) -> list[Effect]:
        return [e for e in self.effects if e.fate is fate]


class Privacy:
    """Calls every registered `DataOwner`; each table is claimed by exactly one of them.

    An owner's change is its own transaction: a failure half-way leaves some owners done, and running the
    command again finishes the rest (every step is idempotent).
    """

    def __init__(
        self,
        store: Store,
        owners: Sequence[DataOwner],
        *,
        retention: RetentionDays | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.owners = tuple(owners)
        self.retention = retention or RetentionDays()
        self.clock = clock
        self.policies: dict[str, TablePolicy] = {}
        for owner in self.owners:
            for policy in owner.owned_tables:
                if policy.table in self.policies:
                    raise ValueError(f"table {policy.table} is claimed by two privacy owners")
                self.policies[policy.table] = policy

    async def unclaimed_tables(self) -> list[str]:
        """Tables in the database no owner answers for: /forget me and the purge would miss them."""
        names = set(await self.store.tables()) - INFRASTRUCTURE_TABLES
        return sorted(names - set(self.policies))

    async def forget_user(self, guild_id: int | None, user_id: int) -> PrivacyReport:
        """/forget me: each owner deletes, pseudonymises or (saying why) keeps the member's rows."""
        effects: list[Effect] = []
        for owner in self.owners:
            effects += await owner.forget_user_data(guild_id, user_id)
        await self.store.checkpoint()
        log.info(
            "forgot a user in guild %s: %s",
            guild_id,
            ", ".join(f"{e.table} {e.fate.value} {e.rows}" for e in effects if e.rows),
        )
        return PrivacyReport(tuple(effects), self.retention)

    async def forget_channel(self, channel_id: int) -> PrivacyReport:
        """/forget channel: the channel's conversation."""
        effects: list[Effect] = []
        for owner in self.owners:
            effects += await owner.forget_channel_data(channel_id)
        await self.store.checkpoint()
        return PrivacyReport(tuple(effects), self.retention)

    def cutoffs(self, retention: RetentionDays) -> Cutoffs:
        now = self.clock()
        cutoffs: dict[Retention, float] = {}
        if retention.conversation > 0:
            cutoffs[Retention.CONVERSATION] = now - retention.conversation * 86400
        if retention.moderation > 0:
            cutoffs[Retention.MODERATION] = now - retention.moderation * 86400
        return cutoffs

    async def purge_expired(self, retention_days: int | None = None) -> PrivacyReport:
        """Delete or anonymise what outlived its retention; `retention_days` overrides RETENTION_DAYS."""
        retention = self.retention
        if retention_days is not None:
            retention = RetentionDays(retention_days, retention.moderation)
        cutoffs = self.cutoffs(retention)
        if not cutoffs:
            return PrivacyReport((), retention)
        effects: list[Effect] = []
        for owner in self.owners:
            effects += await owner.purge_expired_data(cutoffs)
        changed = [e for e in effects if e.rows]
        if changed:
            await self.store.checkpoint()
            log.info("retention: %s", ", ".join(f"{e.table} {e.fate.value} {e.rows}" for e in changed))
        return PrivacyReport(tuple(effects), retention)

"""Per-server moderation policy: stored in SQLite, cached in memory, and applied to a verdict."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from bot import errors
from bot.privacy.owner import DataOwner, Fate, Retention, TablePolicy
from bot.storage.store import Store, Transaction
from bot.storage.versions import EVERY_SERVER, CacheVersions

# The API's category names, in the order bot/errors.py lists them with their readable catalog names.
CATEGORIES: tuple[str, ...] = tuple(errors.CATEGORY_IDS)
# Stored in moderation_policies and moderation_actions: the values must not change.
Action = Literal["log", "delete", "warn"]
# Ordered by severity: the strongest action among the hit categories wins.
ACTIONS: tuple[Action, ...] = ("log", "delete", "warn")
ACTION_LABELS: dict[str, str] = {"log": "log only", "delete": "delete", "warn": "delete and warn the author"}


@dataclass(frozen=True)
class Policy:
    """A server's moderation policy. A server that set nothing gets these defaults."""

    guild_id: int
    enabled: bool = True
    thresholds: dict[str, float] = field(default_factory=dict)
    actions: dict[str, Action] = field(default_factory=dict)
    default_action: Action = "warn"
    strikes_to_timeout: int = 0
    strike_window: float = 86400.0
    timeout_seconds: float = 600.0
    exempt_roles: frozenset[int] = frozenset()
    exempt_channels: frozenset[int] = frozenset()
    modlog_channel_id: int | None = None
    fail_open: bool = False

    def action_for(self, category: str) -> Action:
        return self.actions.get(category, self.default_action)

    def is_exempt(self, channel_ids: Iterable[int], role_ids: Iterable[int]) -> bool:
        return bool(
            self.exempt_channels.intersection(channel_ids) or self.exempt_roles.intersection(role_ids)
        )


@dataclass(frozen=True)
class Decision:
    """What the policy does about one verdict: the categories over their thresholds, and the action."""

    categories: list[str]
    scores: dict[str, float]
    action: Action


def hit_categories(policy: Policy, flagged: Iterable[str], scores: dict[str, float]) -> list[str]:
    """Categories over the server's threshold; without one, those the endpoint itself flagged."""
    flagged_set = set(flagged)
    if not policy.thresholds:
        return sorted(flagged_set)  # most servers set none: every message's verdict comes through here
    hits = []
    for category in sorted(set(scores) | flagged_set):
        threshold = policy.thresholds.get(category)
        if threshold is None:
            if category in flagged_set:
                hits.append(category)
        elif scores.get(category, 0.0) >= threshold:
            hits.append(category)
    return hits


def decide(policy: Policy, flagged: Iterable[str], scores: dict[str, float]) -> Decision | None:
    hits = hit_categories(policy, flagged, scores)
    if not hits:
        return None
    action = max((policy.action_for(c) for c in hits), key=ACTIONS.index)
    return Decision(hits, {c: scores.get(c, 0.0) for c in hits}, action)


def _row_to_policy(row: Any) -> Policy:
    # The actions need no check here: `validate` refused any other value before it was written.
    return Policy(
        guild_id=int(row["guild_id"]),
        enabled=bool(row["enabled"]),
        thresholds={str(k): float(v) for k, v in json.loads(row["thresholds"]).items()},
        actions={str(k): cast(Action, str(v)) for k, v in json.loads(row["actions"]).items()},
        default_action=cast(Action, str(row["default_action"])),
        strikes_to_timeout=int(row["strikes_to_timeout"]),
        strike_window=float(row["strike_window"]),
        timeout_seconds=float(row["timeout_seconds"]),
        exempt_roles=frozenset(int(x) for x in json.loads(row["exempt_roles"])),
        exempt_channels=frozenset(int(x) for x in json.loads(row["exempt_channels"])),
        modlog_channel_id=int(row["modlog_channel_id"]) if row["modlog_channel_id"] is not None else None,
        fail_open=bool(row["fail_open"]),
    )


class PolicyRepo(DataOwner):
    """Reads are served from memory (every channel message needs its server's policy); writes go through.

    A server's policy is changed by the process whose shards hold the server; another process reads it too
    when it drains the outage queue, after `versions.refresh()` dropped what changed ("policy" versions).
    """

    # Its channel ids (mod-log, exempt channels) are a server's configuration, not anybody's data.
    owned_tables = (
        TablePolicy(
            "moderation_policies", "a server's moderation settings", Fate.NOT_PERSONAL, Retention.WHILE_SET
        ),
    )

    def __init__(self, store: Store, versions: CacheVersions | None = None) -> None:
        self.store = store
        self.versions = versions
        self._cache: dict[int, Policy] = {}
        self._writes = 0  # a read that overlapped a change is not cached (it may be stale)
        if versions is not None:
            versions.watch("policy", self._changed)

    def _changed(self, guild_id: int) -> None:
        self._writes += 1
        if guild_id == EVERY_SERVER:
            self._cache.clear()
        else:
            self._cache.pop(guild_id, None)

    def cached(self, guild_id: int) -> Policy | None:
        """The server's policy if it is in memory (no database read): for choices a message makes on arrival."""
        return self._cache.get(guild_id)

    async def get(self, guild_id: int) -> Policy:
        cached = self._cache.get(guild_id)
        if cached is not None:
            return cached
        writes = self._writes
        row = await self.store.fetchone("SELECT * FROM moderation_policies WHERE guild_id = ?", (guild_id,))
        policy = _row_to_policy(row) if row is not None else Policy(guild_id)
        if writes == self._writes:
            self._cache[guild_id] = policy
        return policy

    async def update(self, guild_id: int, **changes: Any) -> Policy:
        """Change some fields of a server's policy and return the new policy.

        The stored policy is read and written under the server's lock, so two changes made at once (in any
        processes) both land rather than one overwriting the other with what it read before."""
        self._changed(guild_id)
        try:
            async with self.store.transaction(lock_key=guild_id) as db:
                row = await (
                    await db.execute("SELECT * FROM moderation_policies WHERE guild_id = ?", (guild_id,))
                ).fetchone()
                policy = replace(_row_to_policy(row) if row is not None else Policy(guild_id), **changes)
                validate(policy)
                await self._write(db, guild_id, policy)
                if self.versions is not None:
                    await self.versions.bump(db, "policy", guild_id)
        finally:
            self._changed(guild_id)
        self._cache[guild_id] = policy
        return policy

    async def _write(self, db: Transaction, guild_id: int, policy: Policy) -> None:
        await db.execute(
            "INSERT INTO moderation_policies (guild_id, enabled, thresholds, actions, "
            "default_action, strikes_to_timeout, strike_window, timeout_seconds, exempt_roles, "
            "exempt_channels, modlog_channel_id, fail_open, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id) DO UPDATE SET "
            "enabled = excluded.enabled, thresholds = excluded.thresholds, actions = excluded.actions, "
            "default_action = excluded.default_action, strikes_to_timeout = excluded.strikes_to_timeout, "
            "strike_window = excluded.strike_window, timeout_seconds = excluded.timeout_seconds, "
            "exempt_roles = excluded.exempt_roles, exempt_channels = excluded.exempt_channels, "
            "modlog_channel_id = excluded.modlog_channel_id, fail_open = excluded.fail_open, "
            "updated_at = excluded.updated_at",
            (
                guild_id,
                int(policy.enabled),
                json.dumps(policy.thresholds, sort_keys=True),
                json.dumps(policy.actions, sort_keys=True),
                policy.default_action,
                policy.strikes_to_timeout,
                policy.strike_window,
                policy.timeout_seconds,
                json.dumps(sorted(policy.exempt_roles)),
                json.dumps(sorted(policy.exempt_channels)),
                policy.modlog_channel_id,
                int(policy.fail_open),
                time.time(),
            ),
        )


def validate(policy: Policy) -> None:
    for category, threshold in policy.thresholds.items():
        if category not in CATEGORIES:
            raise errors.InvalidInput(message_id="input.policy.category", category=category[:40])
        if not 0.0 < threshold <= 1.0:
            raise errors.InvalidInput(message_id="input.policy.threshold")
    for category, action in [*policy.actions.items(), ("default", policy.default_action)]:
        if category != "default" and category not in CATEGORIES:
            raise errors.InvalidInput(message_id="input.policy.category", category=category[:40])
        if action not in ACTIONS:
            raise errors.InvalidInput(message_id="input.policy.action", action=action[:40])
    if policy.strikes_to_timeout < 0 or policy.strike_window <= 0:
        raise errors.InvalidInput(message_id="input.policy.strikes")
    if not 0 < policy.timeout_seconds <= 28 * 86400:
        raise errors.InvalidInput(message_id="input.policy.timeout")

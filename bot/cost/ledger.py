"""The usage ledger: every metered OpenAI call in SQLite, priced, and the sums budgets and /usage read."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.cost.pricing import PriceTable
from bot.openai_api.calls import UsageEvent
from bot.privacy.owner import Cutoffs, DataOwner, Effect, Fate, Retention, TablePolicy
from bot.storage.store import Store
from bot.util.metrics import Metrics

log = logging.getLogger(__name__)
UTC = dt.UTC

# Columns /usage may break a total down by (never user input inside SQL).
BREAKDOWN_COLUMNS = {"command": "command", "model": "model", "user": "user_id"}
_TOTALS = (
    "COUNT(*), COALESCE(SUM(cost), 0), SUM(CASE WHEN cost IS NULL THEN 1 ELSE 0 END), COALESCE(SUM(prompt_tokens), 0), "
    "COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(images), 0), COALESCE(SUM(audio_seconds), 0), "
    "COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(reasoning_tokens), 0)"
)
# Whole seconds, then integer division: both dialects divide BIGINTs alike. (PostgreSQL's cast rounds where
# SQLite's truncates, so a call in the last half second of a UTC day may count on the next one there.)
_BY_DAY = "CAST(created_at - ? AS BIGINT) / 86400 AS day, COALESCE(SUM(cost), 0)"


def day_start(ts: float) -> float:
    day = dt.datetime.fromtimestamp(ts, UTC).date()
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def next_day_start(ts: float) -> float:
    return day_start(ts) + 86400


def month_start(ts: float) -> float:
    when = dt.datetime.fromtimestamp(ts, UTC)
    return dt.datetime(when.year, when.month, 1, tzinfo=UTC).timestamp()


def next_month_start(ts: float) -> float:
    when = dt.datetime.fromtimestamp(ts, UTC)
    year, month = (when.year + 1, 1) if when.month == 12 else (when.year, when.month + 1)
    return dt.datetime(year, month, 1, tzinfo=UTC).timestamp()


def _warn_if_lost(committed: asyncio.Future[None]) -> None:
    if not committed.cancelled() and committed.exception() is not None:
        log.warning("recording usage failed: the database cannot be written")


@dataclass(frozen=True)
class UsageTotals:
    calls: int = 0
    cost: float = 0.0
    unpriced_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    audio_seconds: float = 0.0
    cached_tokens: int = 0  # of prompt_tokens
    reasoning_tokens: int = 0  # of completion_tokens


@dataclass(frozen=True)
class LedgerRow:
    """One metered call as /usage export writes it: who (an id, or none once forgotten), what, how much."""

    created_at: float
    user_id: int | None
    forgotten: bool
    command: str
    kind: str
    model: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    images: int
    audio_seconds: float
    cost: float | None
    priced_from: str | None


@dataclass(frozen=True)
class BreakdownRow:
    key: str
    calls: int
    cost: float


class UsageLedger(DataOwner):
    """Records `UsageEvent`s (the gateway's usage_sink) and answers the sums budgets and reports need."""

    owned_tables = (
        TablePolicy(
            "usage_events",
            "who made each metered OpenAI call, where, and its cost",
            Fate.PSEUDONYMISED,
            Retention.CONVERSATION,  # the user id goes after RETENTION_DAYS; the cost stays in the totals
        ),
        TablePolicy(
            "privacy_keys",
            "the random key of forgotten members' hashes",
            Fate.NOT_PERSONAL,
            Retention.DATABASE,
        ),
    )

    def __init__(
        self,
        store: Store,
        prices: PriceTable,
        *,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.prices = prices
        self.clock = clock
        self._key: bytes | None = None
        self._warned: set[str] = set()
        # Running sums of the current budget windows, (guild, user or None, window start) -> USD, so a budget
        # check does not re-sum a busy server's month on every call. Loaded once from SQLite per window.
        self._window_sums: dict[tuple[int, int | None, float], float] = {}

    async def record(self, event: UsageEvent) -> None:
        media = event.media_tokens
        prompt_tokens = media.input if media is not None else event.prompt_tokens
        completion_tokens = media.output if media is not None else event.completion_tokens
        price = self.prices.price(
            event.kind,
            event.model,
            prompt_tokens=event.prompt_tokens,
            completion_tokens=event.completion_tokens,
            images=event.images,
            image_size=event.image_size,
            image_quality=event.image_quality,
            audio_seconds=event.audio_seconds,
            characters=event.characters,
            cached_tokens=event.cached_tokens,
            media_tokens=media,
        )
        cost = price.cost
        if cost is None and event.model not in self._warned:
            self._warned.add(event.model)
            log.warning("no price for model %s: its usage is recorded without a cost", event.model)
        if self.metrics is not None:
            self.metrics.usage(event.kind, prompt_tokens, completion_tokens, cost)
        ctx = event.context
        now = self.clock()
        # Committed together with the other concurrent writes (bot/store.py, Store.insert_soon).
        committed = self.store.insert_soon(
            "INSERT INTO usage_events (created_at, guild_id, channel_id, user_id, command, kind, model, "
            "prompt_tokens, completion_tokens, images, image_size, image_quality, audio_seconds, cost, "
            "cached_tokens, reasoning_tokens, priced_from) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    now,
                    ctx.guild_id or 0,
                    ctx.channel_id,
                    ctx.user_id,
                    ctx.command,
                    event.kind,
                    event.model,
                    prompt_tokens,
                    completion_tokens,
                    event.images,
                    event.image_size,
                    event.image_quality,
                    event.audio_seconds,
                    cost,
                    event.cached_tokens,
                    event.reasoning_tokens,
                    price.basis,
                ),
            ],
        )
        guild_id = ctx.guild_id or 0
        # Counted at once: a budget check made while the row is being committed must already see it.
        for key in ((guild_id, None, month_start(now)), (guild_id, ctx.user_id, day_start(now))):
            if key in self._window_sums:
                self._window_sums[key] += cost or 0.0
        if event.kind == "moderation" or not event.wait_for_commit:
            # A moderation is free and an /ask's chat is committed by the history insert it awaits next:
            # waiting for these commits would only add to the user's latency.
            # Inserts commit in the order they are queued, so each still commits before any later write.
            committed.add_done_callback(_warn_if_lost)
            return
        await committed

    # -- the pseudonym of forgotten users -------------------------------------------------------

    async def _secret(self) -> bytes:
        if self._key is None:
            row = await self.store.fetchone("SELECT value FROM privacy_keys WHERE name = 'user_hash'")
            if row is None:
                await self.store.execute(
                    "INSERT INTO privacy_keys (name, value) VALUES ('user_hash', ?) ON CONFLICT DO NOTHING",
                    (secrets.token_hex(32),),
                )
                row = await self.store.fetchone("SELECT value FROM privacy_keys WHERE name = 'user_hash'")
            assert row is not None
            self._key = bytes.fromhex(str(row[0]))
        return self._key

    async def user_hash(self, guild_id: int, user_id: int) -> str:
        """A keyed hash: without the database's random key it cannot be matched to a Discord id."""
        digest = hmac.new(await self._secret(), f"{guild_id}:{user_id}".encode(), hashlib.sha256)
        return digest.hexdigest()

    async def cache_key(self, channel_id: int) -> str:
        """The `prompt_cache_key` of a channel's (or thread's) chat: stable, and without the key in the
        database it cannot be matched to the channel id."""
        digest = hmac.new(await self._secret(), f"prompt-cache:{channel_id}".encode(), hashlib.sha256)
        return "ch-" + digest.hexdigest()[:32]

    async def forget_user(self, guild_id: int, user_id: int) -> int:
        """Replace a user's id by its keyed hash in this server's rows; returns how many rows changed."""
        hashed = await self.user_hash(guild_id, user_id)
        return await self.store.execute(
            "UPDATE usage_events SET user_id = NULL, user_hash = ? WHERE guild_id = ? AND user_id = ?",
            (hashed, guild_id, user_id),
        )

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        if guild_id is None:
            rows = await self.store.fetchall(
                "SELECT DISTINCT guild_id FROM usage_events WHERE user_id = ?", (user_id,)
            )
            guilds = [int(r[0]) for r in rows]
        else:
            guilds = [guild_id]
        changed = 0
        for guild in guilds:  # the hash is per server
            changed += await self.forget_user(guild, user_id)
        note = "their costs still count in the server's totals"
        return (Effect("usage_events", Fate.PSEUDONYMISED, changed, "usage record", note),)

    async def purge_expired_data(self, cutoffs: Cutoffs) -> Sequence[Effect]:
        cutoff = cutoffs.get(Retention.CONVERSATION)
        if cutoff is None:
            return ()
        return (
            Effect("usage_events", Fate.PSEUDONYMISED, await self.anonymize_before(cutoff), "usage record"),
        )

    async def anonymize_before(self, cutoff: float) -> int:
        """Drop user ids and hashes from rows older than `cutoff` (the costs stay in the server's totals)."""
        return await self.store.execute(
            "UPDATE usage_events SET user_id = NULL, user_hash = NULL "
            "WHERE created_at < ? AND (user_id IS NOT NULL OR user_hash IS NOT NULL)",
            (cutoff,),
        )

    # -- sums -----------------------------------------------------------------------------------

    async def _where(self, guild_id: int, since: float, user_id: int | None) -> tuple[str, list[object]]:
        where = "guild_id = ? AND created_at >= ?"
        params: list[object] = [guild_id, since]
        if user_id is not None:
            # A forgotten user's rows still count towards their budget of today.
            where += " AND (user_id = ? OR user_hash = ?)"
            params += [user_id, await self.user_hash(guild_id, user_id)]
        return where, params

    async def spent(self, guild_id: int, *, since: float, user_id: int | None = None) -> float:
        where, params = await self._where(guild_id, since, user_id)
        row = await self.store.fetchone(
            f"SELECT COALESCE(SUM(cost), 0) FROM usage_events WHERE {where}",  # noqa: S608
            params,
        )
        return float(row[0]) if row else 0.0

    async def day_spent(self, guild_id: int, user_id: int) -> float:
        """What a member spent today (UTC) in a server: summed in SQLite once, then kept current."""
        return await self._window(guild_id, user_id, day_start(self.clock()))

    async def month_spent(self, guild_id: int) -> float:
        """What a server spent this calendar month (UTC): summed in SQLite once, then kept current."""
        return await self._window(guild_id, None, month_start(self.clock()))

    async def _window(self, guild_id: int, user_id: int | None, since: float) -> float:
        key = (guild_id, user_id, since)
        if key not in self._window_sums:
            # Windows that have ended are never asked for again.
            for old in [k for k in self._window_sums if k[2] < since and k[:2] == key[:2]]:
                del self._window_sums[old]
            self._window_sums[key] = await self.spent(guild_id, since=since, user_id=user_id)
        return self._window_sums[key]

    async def totals(self, guild_id: int, *, since: float, user_id: int | None = None) -> UsageTotals:
        where, params = await self._where(guild_id, since, user_id)
        row = await self.store.fetchone(
            f"SELECT {_TOTALS} FROM usage_events WHERE {where}",  # noqa: S608
            params,
        )
        if row is None or not row[0]:
            return UsageTotals()
        return UsageTotals(
            int(row[0]),
            # A float sum depends on the rows' order, which PostgreSQL changes when a row is updated (the
            # pseudonymising of /forget me): to a billionth of a dollar, the same rows give the same total.
            round(float(row[1]), 9),
            int(row[2] or 0),
            int(row[3]),
            int(row[4]),
            int(row[5]),
            float(row[6]),
            int(row[7]),
            int(row[8]),
        )

    async def cacheable_input(self, guild_id: int, *, since: float) -> tuple[int, int]:
        """(cached, all) input tokens of a server's chat and embedding calls: the prompt cache's hit rate."""
        row = await self.store.fetchone(
            "SELECT COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(prompt_tokens), 0) FROM usage_events "
            "WHERE guild_id = ? AND created_at >= ? AND kind IN ('chat', 'embedding')",
            (guild_id, since),
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def month_rows(self, guild_id: int, *, since: float) -> list[LedgerRow]:
        """A server's ledger since `since`, oldest first, for /usage export (no message content is kept)."""
        rows = await self.store.fetchall(
            "SELECT created_at, user_id, user_hash IS NOT NULL, command, kind, model, prompt_tokens, "
            "cached_tokens, completion_tokens, reasoning_tokens, images, audio_seconds, cost, priced_from "
            "FROM usage_events WHERE guild_id = ? AND created_at >= ? ORDER BY created_at, id",
            (guild_id, since),
        )
        return [
            LedgerRow(
                created_at=float(r[0]),
                user_id=None if r[1] is None else int(r[1]),
                forgotten=bool(r[2]),
                command=str(r[3]),
                kind=str(r[4]),
                model=str(r[5]),
                prompt_tokens=int(r[6]),
                cached_tokens=int(r[7]),
                completion_tokens=int(r[8]),
                reasoning_tokens=int(r[9]),
                images=int(r[10]),
                audio_seconds=float(r[11]),
                cost=None if r[12] is None else float(r[12]),
                priced_from=None if r[13] is None else str(r[13]),
            )
            for r in rows
        ]

    async def breakdown(
        self, guild_id: int, *, since: float, by: str, limit: int = 5, user_id: int | None = None
    ) -> list[BreakdownRow]:
        column = BREAKDOWN_COLUMNS[by]
        where, params = await self._where(guild_id, since, user_id)
        rows = await self.store.fetchall(
            f"SELECT {column}, COUNT(*), COALESCE(SUM(cost), 0) AS total FROM usage_events "  # noqa: S608
            f"WHERE {where} GROUP BY {column} ORDER BY total DESC, 2 DESC LIMIT ?",
            (*params, limit),
        )
        return [BreakdownRow("" if r[0] is None else str(r[0]), int(r[1]), float(r[2])) for r in rows]

    async def daily_costs(
        self, guild_id: int, *, days: int = 30, user_id: int | None = None
    ) -> list[tuple[dt.date, float]]:
        """Cost per UTC day for the last `days` days, oldest first, with zero for quiet days."""
        today = day_start(self.clock())
        first = today - (days - 1) * 86400
        where, params = await self._where(guild_id, first, user_id)
        rows = await self.store.fetchall(
            f"SELECT {_BY_DAY} FROM usage_events WHERE {where} GROUP BY day",  # noqa: S608
            [first, *params],
        )
        by_day = {int(r[0]): float(r[1]) for r in rows}
        start = dt.datetime.fromtimestamp(first, UTC).date()
        return [(start + dt.timedelta(days=k), by_day.get(k, 0.0)) for k in range(days)]

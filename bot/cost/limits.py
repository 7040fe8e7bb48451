"""Budgets, per-command rules, rate limits and admission: every OpenAI call is admitted here first."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot import errors
from bot.cost.breaker import QuotaBreaker
from bot.cost.ledger import UsageLedger, next_day_start, next_month_start
from bot.cost.pricing import PriceTable
from bot.cost.rules import Budgets, LimitsStore
from bot.openai_api.calls import CallContext, PlannedCall
from bot.openai_api.gateway import expected_speech_seconds
from bot.openai_api.tokens import TOKENS_PER_REPLY, TokenCounter
from bot.settings import Settings

log = logging.getLogger(__name__)

# How long a job may wait for one of its server's slots before it is told to slow down.
QUEUE_WAIT = 120.0


class TokenBucket:
    """`burst` requests at once, refilled at `rate` per second, per key."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._state: dict[object, tuple[float, float]] = {}

    def take(self, key: object) -> float:
        """0 when a token was taken; otherwise the seconds until one is available."""
        now = self.clock()
        if len(self._state) > 10_000:
            # Forget members whose allowance has refilled: they would start full anyway.
            full = now - self.burst / self.rate
            self._state = {k: v for k, v in self._state.items() if v[1] > full}
        tokens, last = self._state.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._state[key] = (tokens - 1, now)
            return 0.0
        self._state[key] = (tokens, now)
        return (1 - tokens) / self.rate


class ServerJobs:
    """At most `limit` jobs run per server; at most `queue_size` wait; anyone beyond is told to slow down."""

    def __init__(self, limit: int, queue_size: int) -> None:
        self.limit = limit
        self.queue_size = queue_size
        self._slots: dict[int, asyncio.Semaphore] = {}
        self._waiting: dict[int, int] = defaultdict(int)

    @asynccontextmanager
    async def slot(self, guild_id: int) -> AsyncIterator[None]:
        semaphore = self._slots.setdefault(guild_id, asyncio.Semaphore(self.limit))
        if semaphore.locked():
            if self._waiting[guild_id] >= self.queue_size:
                raise errors.SlowDown(10.0, "server")
            self._waiting[guild_id] += 1
            try:
                await asyncio.wait_for(semaphore.acquire(), QUEUE_WAIT)
            except TimeoutError:
                raise errors.SlowDown(30.0, "server") from None
            finally:
                self._waiting[guild_id] -= 1
        else:
            await semaphore.acquire()
        try:
            yield
        finally:
            semaphore.release()


@dataclass(frozen=True)
class Reservation:
    guild_id: int
    user_id: int | None
    amount: float


class Limits:
    """The gateway's CallGuard and the slash-command pre-check; plain data in, domain errors out."""

    def __init__(
        self,
        store: LimitsStore,
        ledger: UsageLedger,
        prices: PriceTable,
        settings: Settings,
        breaker: QuotaBreaker,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.prices = prices
        self.settings = settings
        self.breaker = breaker
        self.clock = clock
        self.bucket = TokenBucket(settings.user_requests_per_minute / 60, settings.user_burst)
        self.jobs = ServerJobs(settings.server_max_concurrent_jobs, settings.server_queue_size)
        self._reserved_user: dict[tuple[int, int], float] = defaultdict(float)
        self._reserved_guild: dict[int, float] = defaultdict(float)
        self._budget_locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    # -- estimates ------------------------------------------------------------------------------

    def estimate(self, call: PlannedCall) -> float:
        """The most a call can cost: its prompt tokens plus the maximum output (0 when unpriced)."""
        input_tokens = 0
        if call.prompt_tokens is not None:
            input_tokens = call.prompt_tokens
        elif call.messages:
            counter = TokenCounter(call.model)
            input_tokens = TOKENS_PER_REPLY + sum(
                counter.count_message(m.get("content") or "") for m in call.messages
            )
        elif call.text:
            input_tokens = TokenCounter(call.model).count(call.text)
        # Without a duration, assume the densest common audio (Opus voice, ~4 kB/s).
        seconds = call.audio_seconds or call.audio_bytes / 4000
        cost = self.prices.cost(
            call.kind,
            call.model,
            prompt_tokens=input_tokens,
            completion_tokens=call.max_output_tokens,
            images=call.images,
            image_size=call.image_size,
            image_quality=call.image_quality,
            audio_seconds=seconds,
            characters=call.characters,
            worst_case=True,
        )
        return cost or 0.0

    # -- checks ---------------------------------------------------------------------------------

    def check_rate(self, guild_id: int, user_id: int | None) -> None:
        if user_id is None:
            return
        wait = self.bucket.take((guild_id, user_id))
        if wait > 0:
            raise errors.SlowDown(wait)

    async def check_budgets(self, guild_id: int, user_id: int | None, estimate: float) -> None:
        self._judge_budgets(await self._spent(guild_id, user_id), guild_id, user_id, estimate)

    async def _spent(self, guild_id: int, user_id: int | None) -> tuple[Budgets, float, float, float]:
        """(budgets, now, user's spend today, server's spend this month), from the database."""
        budgets: Budgets = await self.store.budgets(guild_id)
        now = self.clock()
        user_spent = guild_spent = 0.0
        if budgets.user_daily_cap > 0 and user_id is not None:
            user_spent = await self.ledger.day_spent(guild_id, user_id)
        if budgets.server_monthly_cap > 0:
            guild_spent = await self.ledger.month_spent(guild_id)
        return budgets, now, user_spent, guild_spent

    def _judge_budgets(
        self,
        reading: tuple[Budgets, float, float, float],
        guild_id: int,
        user_id: int | None,
        estimate: float,
    ) -> None:
        """Recorded spend plus in-flight reservations against the caps; no await, so atomic."""
        budgets, now, user_spent, guild_spent = reading
        if budgets.user_daily_cap > 0 and user_id is not None:
            spent = user_spent + self._reserved_user[(guild_id, user_id)]
            if spent >= budgets.user_daily_cap or spent + estimate > budgets.user_daily_cap:
                end = next_day_start(now)
                raise errors.BudgetExceeded("daily", spent, budgets.user_daily_cap, estimate, end, end - now)
        if budgets.server_monthly_cap > 0:
            spent = guild_spent + self._reserved_guild[guild_id]
            if spent >= budgets.server_monthly_cap or spent + estimate > budgets.server_monthly_cap:
                end = next_month_start(now)
                raise errors.BudgetExceeded(
                    "monthly", spent, budgets.server_monthly_cap, estimate, end, end - now
                )

    async def admit_request(self, guild_id: int, user_id: int, call: PlannedCall | None) -> None:
        """A slash command about to run: breaker, rate and budgets, before it calls anything."""
        if self.breaker.is_open and self.breaker.retry_after() > 0:
            await self.breaker.before_call(guild_id)
        self.check_rate(guild_id, user_id)
        await self.check_budgets(guild_id, user_id, self.estimate(call) if call is not None else 0.0)

    # -- the gateway's guard --------------------------------------------------------------------

    @asynccontextmanager
    async def admit(self, call: PlannedCall) -> AsyncIterator[None]:
        guild_id = call.context.guild_id or 0
        if call.kind == "moderation":
            # Free, and the moderation gate needs it even while users are over budget: only observed.
            try:
                yield
            except errors.QuotaPaused:
                raise
            except errors.QuotaExhausted as exc:
                await self.breaker.record_quota_error(guild_id)
                raise errors.QuotaPaused(
                    self.breaker.retry_after(), admins_told=self.breaker.told(guild_id)
                ) from exc
            return
        if self.settings.allowed_guild_ids and guild_id and guild_id not in self.settings.allowed_guild_ids:
            raise errors.GuildNotAllowed()
        probe = await self.breaker.before_call(guild_id)
        try:
            if not call.context.admitted:
                self.check_rate(guild_id, call.context.user_id)
            reservation = await self._reserve(call)
            try:
                async with self.jobs.slot(guild_id):
                    yield
            finally:
                self._release(reservation)
        except errors.QuotaPaused:
            raise
        except errors.QuotaExhausted as exc:
            await self.breaker.record_quota_error(guild_id)
            raise errors.QuotaPaused(
                self.breaker.retry_after(), admins_told=self.breaker.told(guild_id)
            ) from exc
        except BaseException:
            if probe:
                self.breaker.probe_done()
            raise
        else:
            self.breaker.record_success()

    async def _reserve(self, call: PlannedCall) -> Reservation:
        guild_id = call.context.guild_id or 0
        user_id = call.context.user_id
        estimate = self.estimate(call)
        # The database is read first, outside the lock, so a busy server's requests do not queue behind
        # each other's reads. Checking the in-flight reservations and taking ours stays atomic, so
        # concurrent requests cannot all fit under a cap.
        reading = await self._spent(guild_id, user_id)
        async with self._budget_locks[guild_id]:
            self._judge_budgets(reading, guild_id, user_id, estimate)
            if user_id is not None:
                self._reserved_user[(guild_id, user_id)] += estimate
            self._reserved_guild[guild_id] += estimate
        return Reservation(guild_id, user_id, estimate)

    def _release(self, reservation: Reservation) -> None:
        if reservation.user_id is not None:
            key = (reservation.guild_id, reservation.user_id)
            self._reserved_user[key] = max(0.0, self._reserved_user[key] - reservation.amount)
        self._reserved_guild[reservation.guild_id] = max(
            0.0, self._reserved_guild[reservation.guild_id] - reservation.amount
        )


def plan_for_command(
    command: str,
    options: Mapping[str, object],
    settings: Settings,
    context_guild: int,
    user_id: int,
    *,
    chat_model: str | None = None,
) -> PlannedCall | None:
    """What a metered slash command will ask OpenAI for, estimated from its options before it runs.
    `chat_model`: the model /model chose where /ask runs (CHAT_MODEL when None)."""
    text = " ".join(str(v) for v in options.values() if isinstance(v, str))
    context = CallContext(context_guild, None, user_id, command)
    if command == "ask":
        messages = ({"role": "user", "content": text},)
        return PlannedCall(
            context, "chat", chat_model or settings.chat_model, settings.max_answer_tokens, messages=messages
        )
    if command == "tldr":
        return PlannedCall(context, "chat", settings.summary_model, settings.max_answer_tokens, text=text)
    if command == "imagine":
        size, quality = options.get("size"), options.get("quality")
        return PlannedCall(
            context,
            "image",
            settings.image_model,
            text=text,
            images=1,
            image_size=str(size) if size else "auto",
            image_quality=str(quality) if quality else "auto",
        )
    if command == "speak":
        spoken = str(options.get("text") or "")
        styled = str(options.get("style") or "")
        return _speech_plan(context, settings, len(spoken), len(styled))
    if command == "Read aloud":
        # A menu's options do not carry the message: assume the longest ordinary message.
        return _speech_plan(context, settings, 2000, 0)
    if command in {"transcribe", "Transcribe"}:
        return PlannedCall(context, "transcription", settings.transcription_model)
    return None


def _speech_plan(context: CallContext, settings: Settings, characters: int, style_chars: int) -> PlannedCall:
    return PlannedCall(
        context,
        "speech",
        settings.speech_model,
        characters=characters,
        audio_seconds=expected_speech_seconds(characters),
        prompt_tokens=(characters + style_chars) // 2,  # priced only where a model bills text tokens
    )

"""Budgets, per-command rules, rate limits and admission: every OpenAI call is admitted here first."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from bot import errors
from bot.cost.allowance import QUEUE_WAIT, Allowance, Claim, LocalAllowance, ServerJobs, TokenBucket
from bot.cost.breaker import QuotaBreaker
from bot.cost.ledger import UsageLedger, next_day_start, next_month_start
from bot.cost.pricing import PriceTable
from bot.cost.rules import Budgets, LimitsStore
from bot.openai_api.calls import CallContext, PlannedCall
from bot.openai_api.gateway import expected_speech_seconds
from bot.openai_api.tokens import TOKENS_PER_REPLY, TokenCounter
from bot.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["QUEUE_WAIT", "Limits", "ServerJobs", "TokenBucket", "plan_for_command"]


class Limits:
    """The gateway's CallGuard and the slash-command pre-check; plain data in, domain errors out.

    The state behind rate limits, budget reservations and job slots is the `allowance`: this process's
    memory by default (one process owns the database), or the database itself (`SharedAllowance`) when
    several processes share it. The composition root chooses (bot/services.py; docs/cost.md).
    """

    def __init__(
        self,
        store: LimitsStore,
        ledger: UsageLedger,
        prices: PriceTable,
        settings: Settings,
        breaker: QuotaBreaker,
        *,
        allowance: Allowance | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.prices = prices
        self.settings = settings
        self.breaker = breaker
        self.clock = clock
        self.allowance = allowance or LocalAllowance(
            ledger,
            settings.user_requests_per_minute / 60,
            settings.user_burst,
            settings.server_max_concurrent_jobs,
            settings.server_queue_size,
        )

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

    async def check_rate(self, guild_id: int, user_id: int | None) -> None:
        if user_id is None:
            return
        wait = await self.allowance.take_token(guild_id, user_id)
        if wait > 0:
            raise errors.SlowDown(wait)

    async def check_budgets(self, guild_id: int, user_id: int | None, estimate: float) -> None:
        budgets: Budgets = await self.store.budgets(guild_id)
        user_spent, guild_spent = await self.allowance.spending(budgets, guild_id, user_id)
        self._judge_budgets(budgets, guild_id, user_id, estimate, user_spent, guild_spent)

    def _judge_budgets(
        self,
        budgets: Budgets,
        guild_id: int,
        user_id: int | None,
        estimate: float,
        user_spent: float,
        guild_spent: float,
    ) -> None:
        """Spend (recorded plus in-flight reservations) against the caps; raises BudgetExceeded."""
        now = self.clock()
        if budgets.user_daily_cap > 0 and user_id is not None:
            spent = user_spent
            if spent >= budgets.user_daily_cap or spent + estimate > budgets.user_daily_cap:
                end = next_day_start(now)
                raise errors.BudgetExceeded("daily", spent, budgets.user_daily_cap, estimate, end, end - now)
        if budgets.server_monthly_cap > 0:
            spent = guild_spent
            if spent >= budgets.server_monthly_cap or spent + estimate > budgets.server_monthly_cap:
                end = next_month_start(now)
                raise errors.BudgetExceeded(
                    "monthly", spent, budgets.server_monthly_cap, estimate, end, end - now
                )

    async def admit_request(self, guild_id: int, user_id: int, call: PlannedCall | None) -> None:
        """A slash command about to run: breaker, rate and budgets, before it calls anything."""
        if self.breaker.is_open and self.breaker.retry_after() > 0:
            await self.breaker.before_call(guild_id)
        await self.check_rate(guild_id, user_id)
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
                await self.check_rate(guild_id, call.context.user_id)
            claim = await self._reserve(call)
            try:
                async with self.allowance.running(claim):
                    yield
            finally:
                await self.allowance.release(claim)
        except errors.QuotaPaused:
            raise
        except errors.QuotaExhausted as exc:
            await self.breaker.record_quota_error(guild_id)
            raise errors.QuotaPaused(
                self.breaker.retry_after(), admins_told=self.breaker.told(guild_id)
            ) from exc
        except BaseException:
            if probe:
                await self.breaker.probe_done()
            raise
        else:
            await self.breaker.record_success()

    async def _reserve(self, call: PlannedCall) -> Claim:
        guild_id = call.context.guild_id or 0
        user_id = call.context.user_id
        estimate = self.estimate(call)
        budgets: Budgets = await self.store.budgets(guild_id)

        def judge(user_spent: float, guild_spent: float) -> None:
            self._judge_budgets(budgets, guild_id, user_id, estimate, user_spent, guild_spent)

        return await self.allowance.reserve(budgets, guild_id, user_id, estimate, judge)


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

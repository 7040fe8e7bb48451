"""Two bots on one PostgreSQL database (as two shard processes run): budgets and the quota breaker are shared."""

from __future__ import annotations

import asyncio

import pytest

from bot import errors
from bot.openai_api.calls import CallContext
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World

pytestmark = pytest.mark.postgresql_only("on SQLite one process owns the database: its state stays in memory")


async def test_a_call_in_progress_in_one_bot_counts_against_the_budget_in_the_other(
    start_bot: BotFactory, fake_openai: FakeOpenAI, world: World
) -> None:
    first = await start_bot(user_daily_budget=0.004)
    second = await start_bot(user_daily_budget=0.004)
    context = CallContext(world.guild_id, world.channel_id, world.member_id, "mention")
    question = [{"role": "user", "content": "hi"}]
    # Each chat is reserved at up to $0.0024 (1,200 output tokens) while it runs: one fits the $0.004 day,
    # two at once do not, whichever bot takes the second.
    fake_openai.chat_latency = 1.0
    running = asyncio.create_task(first.services.gateway.complete_chat(question, context=context))
    while not fake_openai.calls("/chat/completions"):  # noqa: ASYNC110 - the fake's log has no event
        await asyncio.sleep(0.02)
    with pytest.raises(errors.BudgetExceeded):
        await second.services.gateway.complete_chat(question, context=context)
    await running
    assert len(fake_openai.calls("/chat/completions")) == 1
    # Done, it costs only what it used: the second bot's call fits now.
    fake_openai.chat_latency = 0.0
    await second.services.gateway.complete_chat(question, context=context)
    assert len(fake_openai.calls("/chat/completions")) == 2


async def test_insufficient_quota_seen_by_one_bot_pauses_the_other(
    start_bot: BotFactory, fake_openai: FakeOpenAI, world: World
) -> None:
    first = await start_bot(quota_cooldown=60)
    second = await start_bot(quota_cooldown=60)
    context = CallContext(world.guild_id, world.channel_id, world.member_id, "mention")
    question = [{"role": "user", "content": "hi"}]
    fake_openai.inject_insufficient_quota("/chat/completions")
    with pytest.raises(errors.QuotaPaused):
        await first.services.gateway.complete_chat(question, context=context)
    fake_openai.clear_injections()
    sent = len(fake_openai.requests)
    second.services.limits.breaker.staleness = 0  # type: ignore[attr-defined]  # no wait for its next reading
    with pytest.raises(errors.QuotaPaused):
        await second.services.gateway.complete_chat(question, context=context)
    assert len(fake_openai.requests) == sent, "the second bot sent nothing while the breaker is open"

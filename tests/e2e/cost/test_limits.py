"""Budgets, rate limits, the per-server job cap and the quota circuit breaker, against the fakes."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot import errors
from bot.cost.ledger import next_day_start
from bot.discord_io.client import OpenAIBot
from bot.openai_api.calls import CallContext
from testkit.discord import FakeDiscord
from testkit.driver import answered, ask, run
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World


async def spend(bot: OpenAIBot, world: World, cost: float, *, user: int | None = None) -> None:
    """A ledger row as if `user` had already spent `cost` today."""
    await bot.services.store.execute(
        "INSERT INTO usage_events (created_at, guild_id, channel_id, user_id, command, kind, model, cost) "
        "VALUES (?, ?, ?, ?, 'ask', 'chat', 'gpt-5-mini', ?)",
        (time.time(), world.guild_id, world.channel_id, user or world.member_id, cost),
    )


async def test_over_budget_request_is_refused_before_any_call(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(user_daily_budget=0.50)
    await spend(bot, world, 0.499)
    done = await ask(fake_discord, world, "an expensive question")
    text = done.all_text()
    assert "daily budget" in text and "Nothing was sent to OpenAI" in text
    # The next UTC midnight as Discord timestamps: each member reads it in their own zone and language.
    midnight = int(next_day_start(time.time()))
    assert f"resets at <t:{midnight}:f> (<t:{midnight}:R>)" in text
    assert done.ephemeral or "daily budget" not in (done.original or {}).get("content", "")
    assert fake_openai.requests == []  # not even the (free) moderation call
    # Another member still has their own budget.
    other = fake_discord.add_member(world.guild_id, name="bob")
    fine = await run(fake_discord, world, "ask", {"prompt": "cheap"}, user=other)
    assert "budget" not in fine.all_text() and fake_openai.calls("/chat/completions")


async def test_the_estimate_counts_the_maximum_output(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    # 1200 output tokens at $2 per million is $0.0024: a $0.002 budget cannot cover even an empty spend.
    await start_bot(user_daily_budget=0.002)
    done = await ask(fake_discord, world, "hi")
    assert "could cost up to $0.002" in done.all_text() and fake_openai.requests == []


async def test_server_monthly_budget_set_with_limits(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    denied = await run(fake_discord, world, "limits budget", {"server_monthly": 0.01})
    assert "Manage Server" in denied.all_text()
    done = await run(fake_discord, world, "limits budget", {"server_monthly": 0.01}, user=world.moderator_id)
    assert "server monthly $0.01" in done.all_text()
    await spend(bot, world, 0.02, user=world.moderator_id)
    refused = await ask(fake_discord, world, "hello")
    assert "this server's monthly budget" in refused.all_text() and "01 " in refused.all_text()
    assert fake_openai.requests == []
    await run(fake_discord, world, "limits budget", {"reset": True}, user=world.moderator_id)
    assert "budget" not in (await ask(fake_discord, world, "hello")).all_text()


async def test_calls_outside_slash_commands_are_budgeted_too(
    start_bot: BotFactory, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(user_daily_budget=0.01)
    await spend(bot, world, 0.0095)
    context = CallContext(world.guild_id, world.channel_id, world.member_id, "mention")
    with pytest.raises(errors.BudgetExceeded):
        await bot.services.gateway.complete_chat([{"role": "user", "content": "hi"}], context=context)
    assert fake_openai.calls("/chat/completions") == []
    # Moderation is free and never blocked by a user's budget.
    await bot.services.gateway.moderate("hello", context=context)
    assert len(fake_openai.calls("/moderations")) == 1


async def test_rate_limit_says_slow_down_and_queues_nothing(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot(user_burst=2, user_requests_per_minute=6)
    for prompt in ("one", "two"):
        assert "Slow down" not in (await ask(fake_discord, world, prompt)).all_text()
    refused = await ask(fake_discord, world, "three")
    assert "Slow down" in refused.all_text() and "Try again in 10 s" in refused.all_text()
    assert len(fake_openai.calls("/chat/completions")) == 2
    other = await run(fake_discord, world, "ask", {"prompt": "mine"}, user=world.moderator_id)
    assert "Slow down" not in other.all_text()
    assert len(fake_openai.calls("/chat/completions")) == 3


async def test_server_job_cap_with_a_bounded_queue(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot(server_max_concurrent_jobs=1, server_queue_size=1)
    fake_openai.chat_latency = 0.4
    users = [world.member_id, world.moderator_id, fake_discord.add_member(world.guild_id, name="carol")]
    started = []
    for index, user in enumerate(users):
        started.append(
            await fake_discord.invoke(
                "ask",
                {"prompt": f"job {index}"},
                guild_id=world.guild_id,
                channel_id=world.channel_id,
                user_id=user,
            )
        )
    # Each one ends answered or refused; a pause mid-answer must not count as its end.
    await asyncio.gather(*(i.wait_for(answered, timeout=10) for i in started))
    done = await asyncio.gather(*(i.wait_done(timeout=10, settle=0.2) for i in started))
    texts = [d.all_text() for d in done]
    assert sum("too many requests in progress" in t for t in texts) == 1
    assert len(fake_openai.calls("/chat/completions")) == 2


def later(bot: OpenAIBot) -> Callable[[float], None]:
    """Let the breaker's clock jump ahead instead of sleeping through its cooldown."""
    breaker = bot.services.limits.breaker  # type: ignore[union-attr]
    offset = [0.0]
    breaker.clock = lambda: time.monotonic() + offset[0]

    def skip(seconds: float) -> None:
        offset[0] += seconds

    return skip


def modlog_texts(fake: FakeDiscord, channel_id: int) -> list[str]:
    return [str(m.get("content") or "") for m in fake.messages_in(channel_id)]


@pytest.mark.parametrize("path", ["/chat/completions", "/moderations"])
async def test_quota_breaker_opens_notifies_once_and_closes_after_a_probe(
    start_bot: BotFactory,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    modlog = fake_discord.add_channel(world.guild_id, "mod-log")
    bot = await start_bot(quota_cooldown=60)
    skip_ahead = later(bot)
    await bot.services.store.execute(
        "INSERT INTO moderation_policies (guild_id, modlog_channel_id, updated_at) VALUES (?, ?, ?)",
        (world.guild_id, modlog, time.time()),
    )
    fake_openai.inject_insufficient_quota(path)
    caplog.set_level(logging.WARNING, logger="bot")
    first = await ask(fake_discord, world, "one")
    assert "no credit" in first.all_text() and "admin" in first.all_text()
    assert len(fake_openai.calls(path)) == 1  # insufficient_quota is never retried
    calls_before = len(fake_openai.requests)
    for prompt in ("two", "three"):
        refused = await ask(fake_discord, world, prompt)
        assert "The admins have been told" in refused.all_text()
    assert len(fake_openai.requests) == calls_before  # open: nothing is sent at all
    notices = [t for t in modlog_texts(fake_discord, modlog) if "run out of credit" in t]
    assert len(notices) == 1
    owner_lines = [
        r for r in caplog.records if "insufficient_quota" in r.getMessage() and r.levelno == logging.WARNING
    ]
    assert len(owner_lines) == 1
    # Credit is back: after the cooldown one probe goes through, succeeds and closes the breaker.
    fake_openai.clear_injections()
    skip_ahead(61)
    fake_openai.queue_chat_replies("Back in business.", "Still fine.")
    assert "Back in business." in (await ask(fake_discord, world, "four")).all_text()
    assert not bot.services.limits.breaker.is_open  # type: ignore[union-attr]
    assert "Still fine." in (await ask(fake_discord, world, "five")).all_text()
    assert len([t for t in modlog_texts(fake_discord, modlog) if "run out of credit" in t]) == 1


async def test_breaker_stays_open_when_the_probe_fails_again(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(quota_cooldown=60)
    skip_ahead = later(bot)
    fake_openai.inject_insufficient_quota("/chat/completions")
    await ask(fake_discord, world, "one")
    skip_ahead(61)
    chats = len(fake_openai.calls("/chat/completions"))
    probe = await ask(fake_discord, world, "probe")
    assert "The admins have been told" in probe.all_text()
    assert len(fake_openai.calls("/chat/completions")) == chats + 1
    assert bot.services.limits.breaker.is_open  # type: ignore[union-attr]
    await ask(fake_discord, world, "refused")
    assert len(fake_openai.calls("/chat/completions")) == chats + 1


async def test_spending_during_the_day_counts_towards_the_budget(
    start_bot: BotFactory, fake_openai: FakeOpenAI, world: World, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(
        # The admission estimate counts tokens conservatively (bot/openai_api/tokens.py: up to ~1.6x here),
        # so the price leaves the first call's estimate inside the budget.
        json.dumps({"models": {"gpt-5-mini": {"input_per_million": 600, "output_per_million": 0}}})
    )
    bot = await start_bot(user_daily_budget=0.02, prices_file=str(prices))
    context = CallContext(world.guild_id, world.channel_id, world.member_id, "test")
    messages = [
        {"role": "user", "content": "a question of about twenty tokens, asked to see the budget fill up"}
    ]
    await bot.services.gateway.complete_chat(messages, context=context)
    [row] = await bot.services.store.fetchall("SELECT cost FROM usage_events WHERE kind = 'chat'")
    assert 0.01 < row[0] < 0.02  # one call fits, two do not
    with pytest.raises(errors.BudgetExceeded):
        await bot.services.gateway.complete_chat(messages, context=context)
    assert len(fake_openai.calls("/chat/completions")) == 1


async def test_a_refused_ask_logs_why_at_info_and_never_the_prompt(
    start_bot: BotFactory,
    fake_discord: FakeDiscord,
    world: World,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = await start_bot(user_daily_budget=0.50, user_burst=1, user_requests_per_minute=1)
    await spend(bot, world, 0.499)
    caplog.set_level(logging.INFO, logger="bot")
    await ask(fake_discord, world, "a secret expensive question")
    await ask(fake_discord, world, "a second secret question")
    refusals = [
        r.getMessage() for r in caplog.records if "refused" in r.getMessage() and r.levelno == logging.INFO
    ]
    assert any("/ask refused: budget (the user's daily)" in line for line in refusals), refusals
    assert any("/ask refused: rate (the user's limit)" in line for line in refusals), refusals
    assert not any("secret" in r.getMessage() for r in caplog.records)

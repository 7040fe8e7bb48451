"""METRICS_PORT: `/metrics` after a few commands, and `/healthz` while the gateway is up, dropped and back."""

from __future__ import annotations

import asyncio
import socket
import sqlite3

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.discord import FakeDiscord
from testkit.driver import ask, run
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_commands_calls_tokens_and_latencies(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    port = free_port()
    bot = await start_bot(metrics_port=port)
    fake_openai.queue_chat_replies("first answer", "second answer")
    await ask(fake_discord, world, "hello there")
    await ask(fake_discord, world, "and again")
    await run(fake_discord, world, "usage")
    fake_openai.inject_insufficient_quota("/chat/completions")
    await run(fake_discord, world, "ask", {"prompt": "no credit now"})

    status, text = await get(port, "/metrics")
    assert status == 200
    found = samples(text)
    assert value(found, "discord_bot_commands_total", command="ask", outcome="ok") == 2
    assert value(found, "discord_bot_commands_total", command="usage", outcome="ok") == 1
    assert value(found, "discord_bot_commands_total", command="ask", outcome="refused") == 1
    chat_model = bot.settings.chat_model
    assert (
        value(found, "discord_bot_openai_calls_total", endpoint="chat", model=chat_model, error="none") == 2
    )
    assert (
        value(
            found, "discord_bot_openai_calls_total", endpoint="chat", model=chat_model, error="QuotaExhausted"
        )
        == 1
    )
    assert (
        value(
            found,
            "discord_bot_openai_calls_total",
            endpoint="moderation",
            model=bot.settings.moderation_model,
            error="none",
        )
        >= 1
    )
    assert value(found, "discord_bot_openai_tokens_total", endpoint="chat", direction="completion") > 0
    assert value(found, "discord_bot_openai_spend_usd_total", endpoint="chat") > 0
    # Every /ask was deferred; the one refused for credit never streamed a token.
    assert value(found, "discord_bot_ask_latency_seconds_count", stage="deferral") == 3
    for stage in ("first_token", "final"):
        assert value(found, "discord_bot_ask_latency_seconds_count", stage=stage) == 2
    assert value(found, "discord_bot_quota_breaker_state", state="open") == 1
    assert value(found, "discord_bot_moderation_batch_size_count") >= 1
    assert value(found, "discord_bot_moderation_verdict_seconds_count") >= 1
    assert value(found, "discord_bot_database_write_seconds_count") >= 2
    assert value(found, "discord_bot_gateway_connected") == 1
    assert "discord_bot_event_loop_lag_seconds" in text
    assert "discord_bot_moderation_outage_queue_depth" in text
    # Bounded labels: no member, channel or server ids, no prompt text.
    for forbidden in (str(world.member_id), str(world.channel_id), str(world.guild_id), "hello there"):
        assert forbidden not in text


async def test_guild_labels_only_when_turned_on(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    port = free_port()
    await start_bot(metrics_port=port, metrics_guild_labels=True)
    await run(fake_discord, world, "usage")
    _, text = await get(port, "/metrics")
    found = samples(text)
    assert (
        value(found, "discord_bot_commands_total", command="usage", outcome="ok", guild=str(world.guild_id))
        == 1
    )
    assert str(world.member_id) not in text


async def test_healthz_turns_503_while_the_gateway_is_down(
    start_bot: BotFactory, fake_discord: FakeDiscord, world: World
) -> None:
    port = free_port()
    await start_bot(metrics_port=port)
    assert await get(port, "/healthz") == (200, "ok\n")

    fake_discord.resume_gate = asyncio.Event()  # the bot reconnects, but its RESUME waits
    await fake_discord.close_gateway(4000)
    for _ in range(200):
        status, body = await get(port, "/healthz")
        if status == 503:
            break
        await asyncio.sleep(0.02)
    assert status == 503
    assert "gateway is disconnected" in body

    fake_discord.resume_gate.set()
    for _ in range(250):
        status, body = await get(port, "/healthz")
        if status == 200:
            break
        await asyncio.sleep(0.02)
    assert (status, body) == (200, "ok\n")
    fake_discord.resume_gate = None


@pytest.mark.sqlite_only("locks SQLite's file from a second connection to make it unwritable")
async def test_healthz_names_a_database_that_cannot_be_written(
    start_bot: BotFactory, fake_discord: FakeDiscord, world: World
) -> None:
    port = free_port()
    bot = await start_bot(metrics_port=port)
    # Another connection holds the write lock past the store's busy timeout: writes fail as on a stuck disk.
    await bot.services.store._writer.execute("PRAGMA busy_timeout=50")
    blocker = sqlite3.connect(bot.services.store.path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        status, body = await get(port, "/healthz")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert status == 503
    assert "database is not writable" in body
    assert (await get(port, "/healthz"))[0] == 200


async def test_no_server_without_metrics_port(start_bot: BotFactory, world: World) -> None:
    bot = await start_bot()
    assert bot.ops is None

"""The gate: batching, cache and concurrency bound (against the fake OpenAI), command inputs and outputs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot import errors
from bot.discord_io.client import OpenAIBot
from bot.moderation.batcher import ModerationBatcher
from bot.moderation.gate import CHUNK_CHARS, ModerationGate
from bot.openai_api.calls import CallContext
from bot.openai_api.gateway import OpenAIGateway
from bot.settings import Settings
from testkit.discord import FakeDiscord
from testkit.driver import ask_settled
from testkit.openai import FakeOpenAI
from tests.support.moderation import moderated_texts
from tests.support.server import World

CONTEXT = CallContext(1, 2, 3, "test")


@pytest.fixture
async def gateway(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIGateway]:
    settings = Settings(
        openai_api_key=fake_openai.api_key, openai_base_url=fake_openai.base_url, openai_max_retries=0
    )
    gateway = OpenAIGateway.from_settings(settings)
    yield gateway
    await gateway.close()


def max_overlap(fake_openai: FakeOpenAI) -> int:
    spans = [(r.time, r.end_time or r.time) for r in fake_openai.calls("/moderations")]
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


async def test_concurrent_texts_are_coalesced_into_one_request(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI
) -> None:
    batcher = ModerationBatcher(gateway, window=0.05, max_inputs=64)
    texts = [f"message number {n}" for n in range(20)] + ["FLAGME here"]
    results = await asyncio.gather(*(batcher.texts([t], context=CONTEXT) for t in texts))
    [request] = fake_openai.calls("/moderations")
    assert request.json["input"] == texts  # one list request, one string per message, in order
    assert [r[0].flagged for r in results] == [False] * 20 + [True]
    await batcher.close()


async def test_identical_content_is_cached_and_shared_in_flight(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI
) -> None:
    batcher = ModerationBatcher(gateway, window=0.02, cache_ttl=60)
    first, second = await asyncio.gather(
        batcher.texts(["same words"], context=CONTEXT), batcher.texts(["same words"], context=CONTEXT)
    )
    again = await batcher.texts(["same words"], context=CONTEXT)
    assert first == second == again
    [request] = fake_openai.calls("/moderations")
    assert request.json["input"] == ["same words"]
    expired = ModerationBatcher(gateway, window=0.0, cache_ttl=0)
    await expired.texts(["same words"], context=CONTEXT)
    await expired.texts(["same words"], context=CONTEXT)
    assert len(fake_openai.calls("/moderations")) == 3
    await batcher.close()
    await expired.close()


@pytest.mark.parametrize("urgent", [False, True])
async def test_a_cancelled_caller_leaves_the_others_sharing_its_text_their_verdict(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI, urgent: bool
) -> None:
    fake_openai.moderation_latency = 0.1
    batcher = ModerationBatcher(gateway, window=0.0, cache_ttl=0)
    first = asyncio.create_task(batcher.texts(["FLAGME shared words"], context=CONTEXT, urgent=urgent))
    await asyncio.sleep(0.02)  # its request is out
    second = asyncio.create_task(batcher.texts(["FLAGME shared words"], context=CONTEXT, urgent=urgent))
    await asyncio.sleep(0.01)
    first.cancel()  # a timeout, a Stop, a shutdown of the first caller only
    [verdict] = await second
    assert verdict.flagged
    assert first.cancelled()
    requests = fake_openai.calls("/moderations")
    assert all(r.json["input"] == ["FLAGME shared words"] for r in requests)
    # A channel request runs in its own task: the second caller joined it. An urgent one went from the first
    # caller's task and died with it: the second caller's input went again, in a request of its own.
    assert len(requests) == (2 if urgent else 1)
    await batcher.close()


async def test_requests_run_concurrently_up_to_the_bound(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.moderation_latency = 0.05
    batcher = ModerationBatcher(gateway, window=0.0, max_inputs=2, concurrency=3)
    await asyncio.gather(*(batcher.texts([f"text {n}"], context=CONTEXT) for n in range(24)))
    calls = fake_openai.calls("/moderations")
    assert sum(len(r.json["input"]) for r in calls) == 24
    assert len(calls) < 24  # batches grow while every slot is busy
    assert 2 <= max_overlap(fake_openai) <= 3
    await batcher.close()


async def test_a_failed_request_fails_every_waiter_and_is_not_cached(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI
) -> None:
    batcher = ModerationBatcher(gateway, window=0.02)
    fake_openai.inject("/moderations", 503)
    outcomes = await asyncio.gather(
        batcher.texts(["a"], context=CONTEXT), batcher.texts(["b"], context=CONTEXT), return_exceptions=True
    )
    assert all(isinstance(o, errors.ModerationUnavailable) for o in outcomes)
    assert [r.flagged for r in await batcher.texts(["a"], context=CONTEXT)] == [False]
    await batcher.close()


async def test_long_text_is_moderated_whole_in_chunks(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI
) -> None:
    gate = ModerationGate(gateway, batcher=ModerationBatcher(gateway, window=0.0))
    words = [f"calm{n}" for n in range(6000)]
    text = " ".join(words[:3000]) + " FLAGME in the middle " + " ".join(words[3000:])
    verdict = await gate.check_text(text, context=CONTEXT)
    assert verdict.flagged and verdict.categories == ["harassment"]
    inputs = fake_openai.calls("/moderations")[0].json["input"]
    assert len(inputs) >= 4 and all(len(chunk) <= CHUNK_CHARS for chunk in inputs)
    assert "".join(inputs) == text
    await gate.close()


async def test_burst_across_channels_needs_far_fewer_requests_than_messages(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.moderation_latency = 0.02
    channels = [world.channel_id, world.other_channel_id]
    for n in range(200):
        await fake_discord.post_message(channels[n % 2], world.member_id, f"burst message {n}")
    await fake_discord.wait_until(
        lambda: len([t for t in moderated_texts(fake_openai) if t.startswith("burst")]) == 200,
        timeout=10,
        what="every burst message moderated",
    )
    requests = fake_openai.calls("/moderations")
    assert len(requests) <= 200 // 5, f"{len(requests)} requests for 200 messages"


async def test_flagged_command_input_is_refused_with_no_chat_call(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await ask_settled(fake_discord, world, "write something FLAGME")
    assert "flagged by moderation (Harassment)" in done.all_text()
    assert fake_openai.calls("/chat/completions") == []


async def test_flagged_model_output_is_not_posted(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("Sure: " + "words " * 40 + "I will kill you")
    done = await ask_settled(fake_discord, world, "tell me a story")
    assert "answer was flagged by moderation (Violence)" in done.all_text()
    assert "kill you" not in done.all_text()
    # the streamed partial answer does not stay in the channel, and nothing is remembered
    assert not any(
        "kill you" in m["content"] or "words words" in m["content"]
        for m in fake_discord.messages_in(world.channel_id)
    )
    assert await bot.services.history.count(world.channel_id) == 0


async def test_flagged_answer_to_a_mention_is_not_posted(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("Here it is: I will kill you")
    message = await fake_discord.post_message(
        world.channel_id, world.member_id, "hello bot", mentions_bot=True
    )

    def refused() -> bool:
        return any(
            "flagged" in m["content"] and int(m["author"]["id"]) == fake_discord.bot_user_id
            for m in fake_discord.messages_in(world.channel_id)
        )

    await fake_discord.wait_until(refused, timeout=10, what="the refusal reply")
    await asyncio.sleep(0.1)
    assert not any("kill you" in m["content"] for m in fake_discord.messages_in(world.channel_id))
    assert int(message["id"]) not in fake_discord.deleted_message_ids


async def test_a_lone_urgent_check_goes_at_once_and_a_burst_goes_as_a_few_requests(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI
) -> None:
    """Commands' checks: a lone one is sent straight away; a burst arriving while one is in flight
    coalesces instead of taking one request per check until the slots run out."""
    fake_openai.moderation_latency = 0.1
    batcher = ModerationBatcher(gateway, window=0.02, concurrency=8)
    [result] = await batcher.texts(["a lone prompt"], context=CONTEXT, urgent=True)
    assert not result.flagged and len(fake_openai.calls("/moderations")) == 1

    async def burst_member(n: int) -> bool:
        await asyncio.sleep(0)  # each arrives in its own task, as /asks do
        [verdict] = await batcher.texts([f"prompt number {n}"], context=CONTEXT, urgent=True)
        return verdict.flagged

    texts = [f"prompt number {n}" for n in range(50)]
    flagged = await asyncio.gather(*(burst_member(n) for n in range(50)))
    assert flagged == [False] * 50
    burst_requests = fake_openai.calls("/moderations")[1:]
    assert sorted(t for r in burst_requests for t in r.json["input"]) == sorted(texts)
    assert len(burst_requests) <= 3  # the first alone, the rest together once the loop is idle
    assert max_overlap(fake_openai) <= batcher.urgent_concurrency
    await batcher.close()

"""Discord faults through the fake Discord: rate-limited edits, 5xx followups, gateway drops, missing permissions."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import answer_text, answered, ask_settled
from testkit.openai import FakeOpenAI
from tests.reliability.helpers import assert_next_ask_works, turns
from tests.support.server import VIEW_AND_SEND, World

VIEW_ONLY = (1 << 10) | (1 << 16)  # view channel, read history: no Send Messages
SEND = 1 << 11


def replies_to(fake: FakeDiscord, channel_id: int, message_id: str) -> list[dict[str, Any]]:
    return [
        m
        for m in fake.messages_in(channel_id)
        if m["author"]["id"] == str(fake.bot_user_id)
        and (m.get("message_reference") or {}).get("message_id") == message_id
    ]


def set_send_permission(fake: FakeDiscord, guild_id: int, allowed: bool) -> None:
    """Take Send Messages from (or give it back to) the bot's role and @everyone, as an admin would."""
    fake.set_bot_permissions(guild_id, VIEW_AND_SEND if allowed else VIEW_ONLY)
    everyone = fake.guild(guild_id).roles[guild_id]
    permissions = int(everyone["permissions"])
    everyone["permissions"] = str(permissions | SEND if allowed else permissions & ~SEND)
    fake.queue_event("GUILD_ROLE_UPDATE", {"guild_id": str(guild_id), "role": everyone})


def callbacks(fi: Any) -> int:
    return sum(1 for r in fi.responses if r["kind"] == "callback")


async def test_rate_limited_edits_are_retried_after_retry_after(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    answer = " ".join(f"token{i}" for i in range(80))
    fake_openai.queue_chat_replies(answer)
    fake_openai.stream_chunk_delay = 0.005
    fake_discord.fail_next("PATCH", r"/messages/@original$", 429, times=3)
    done = await ask_settled(fake_discord, world, "stream please")
    assert done.original is not None and answer_text(done.original["content"]) == answer
    statuses = [r.status for r in fake_discord.requests_to("PATCH", r"/messages/@original$")]
    assert statuses[:3] == [429, 429, 429] and statuses[-1] == 200, statuses
    assert await turns(bot, world.channel_id) == [("user", "stream please"), ("assistant", answer)]


async def test_a_5xx_on_the_followup_is_retried_and_the_whole_answer_arrives(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    answer = ("A sentence that is long enough to fill a message quickly. " * 60).strip()
    fake_openai.queue_chat_replies(answer)
    fake_discord.fail_next("POST", r"^/webhooks/\d+/[^/]+$", 503, times=1)
    done = await ask_settled(fake_discord, world, "a long one", timeout=15)
    await done.wait_for(
        lambda fi: "".join(message_text_of(fi)).replace("\n", " ").count("fill a message") == 60
    )
    posted = [r.status for r in fake_discord.requests_to("POST", r"^/webhooks/\d+/[^/]+$")]
    assert posted[0] == 503 and 200 in posted, posted
    assert len(await turns(bot, world.channel_id)) == 2
    await assert_next_ask_works(bot, fake_discord, fake_openai, world)


def message_text_of(fi: Any) -> list[str]:
    return [m["content"] for m in [fi.original, *fi.followups] if m is not None]


async def test_resumable_gateway_close_loses_and_duplicates_nothing(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    identifies = fake_discord.identify_count
    fake_discord.resume_gate = asyncio.Event()
    # An event racing the close, then events produced while the bot is away: all must arrive once.
    racing = await fake_discord.post_message(
        world.channel_id, world.member_id, "just before", mentions_bot=True
    )
    await fake_discord.close_gateway(4000)
    gap_messages = [
        await fake_discord.post_message(
            world.channel_id, world.member_id, f"in the gap {i}", mentions_bot=True
        )
        for i in range(3)
    ]
    gap_interactions = [
        await fake_discord.invoke(
            "ask",
            {"prompt": f"gap question {i}"},
            guild_id=world.guild_id,
            channel_id=world.channel_id,
            user_id=world.member_id,
        )
        for i in range(3)
    ]
    await asyncio.sleep(0.2)
    fake_discord.resume_gate.set()
    for fi in gap_interactions:
        # Each answer's exchange is stored before it shows finished: a pause mid-stream is not its end.
        await fi.wait_for(answered, timeout=10)
        await fi.wait_done(timeout=10, settle=0.2)
    for message in [racing, *gap_messages]:
        await fake_discord.wait_until(
            lambda m=message: len(replies_to(fake_discord, world.channel_id, m["id"])) >= 1
        )
    await asyncio.sleep(0.3)  # time for a duplicate to show up, if there were one
    assert fake_discord.resume_count == 1 and fake_discord.identify_count == identifies
    for fi in gap_interactions:
        assert callbacks(fi) == 1 and fi.original is not None
        assert answer_text(fi.original["content"]).startswith("Echo: gap question"), fi.describe()
    for message in [racing, *gap_messages]:
        assert len(replies_to(fake_discord, world.channel_id, message["id"])) == 1
    stored = [content for role, content in await turns(bot, world.channel_id) if role == "user"]
    assert sorted(stored) == sorted(
        ["just before", *(f"in the gap {i}" for i in range(3)), *(f"gap question {i}" for i in range(3))]
    )
    fake_discord.resume_gate = None
    await assert_next_ask_works(bot, fake_discord, fake_openai, world)


async def test_non_resumable_close_re_identifies_and_keeps_working(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    identifies = fake_discord.identify_count
    await fake_discord.close_gateway(4009)  # session timed out: the RESUME is refused, the bot IDENTIFYs
    await fake_discord.wait_until(
        lambda: fake_discord.identify_count == identifies + 1 and fake_discord.connected
    )
    await assert_next_ask_works(bot, fake_discord, fake_openai, world)
    message = await fake_discord.post_message(
        world.channel_id, world.member_id, "still there?", mentions_bot=True
    )
    await fake_discord.wait_until(lambda: len(replies_to(fake_discord, world.channel_id, message["id"])) == 1)


async def test_invalid_session_re_identifies(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    identifies = fake_discord.identify_count
    await fake_discord.invalidate_session(resumable=False)
    await fake_discord.wait_until(
        lambda: fake_discord.identify_count == identifies + 1 and fake_discord.connected
    )
    await fake_discord.request_reconnect()
    await fake_discord.wait_until(lambda: fake_discord.resume_count == 1 and fake_discord.connected)
    await assert_next_ask_works(bot, fake_discord, fake_openai, world)


async def test_missing_send_permission_on_a_mention_costs_nothing_and_breaks_nothing(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    set_send_permission(fake_discord, world.guild_id, allowed=False)
    await asyncio.sleep(0.1)
    message = await fake_discord.post_message(
        world.channel_id, world.member_id, "answer me", mentions_bot=True
    )
    await asyncio.sleep(0.5)
    assert replies_to(fake_discord, world.channel_id, message["id"]) == []
    # Nothing the user will never see is generated, billed or remembered.
    assert fake_openai.calls("/chat/completions") == []
    assert await turns(bot, world.channel_id) == []
    # Slash commands answer through the interaction webhook, which needs no channel permission.
    await assert_next_ask_works(bot, fake_discord, fake_openai, world)
    set_send_permission(fake_discord, world.guild_id, allowed=True)
    await asyncio.sleep(0.1)
    again = await fake_discord.post_message(world.channel_id, world.member_id, "now?", mentions_bot=True)
    await fake_discord.wait_until(lambda: len(replies_to(fake_discord, world.channel_id, again["id"])) == 1)


async def test_send_refused_mid_answer_is_not_an_escaped_exception(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_discord.fail_next("POST", r"^/channels/\d+/messages$", 403, times=10)
    message = await fake_discord.post_message(
        world.channel_id, world.member_id, "answer me", mentions_bot=True
    )
    await fake_discord.wait_until(
        lambda: len(fake_discord.requests_to("POST", r"^/channels/\d+/messages$")) >= 2, what="reply attempts"
    )
    await asyncio.sleep(0.3)
    assert replies_to(fake_discord, world.channel_id, message["id"]) == []
    await assert_next_ask_works(bot, fake_discord, fake_openai, world)


# -- channel moderation meets missing permissions -------------------------------------------------------

MANAGE_MESSAGES = 1 << 13
MODERATE_MEMBERS = 1 << 40


async def moderator_runs(fake: FakeDiscord, world: World, name: str, options: dict[str, Any]) -> None:
    fi = await fake.invoke(
        name, options, guild_id=world.guild_id, channel_id=world.channel_id, user_id=world.moderator_id
    )
    await fi.wait_done(timeout=10, settle=0.1)
    assert "Something went wrong" not in fi.all_text(), fi.describe()


async def action_rows(bot: OpenAIBot) -> list[Any]:
    return await bot.services.store.fetchall(
        "SELECT message_id, deleted, warned, timed_out FROM moderation_actions ORDER BY id"
    )


async def wait_for_rows(bot: OpenAIBot, count: int) -> list[Any]:
    """Moderation actions once `count` of them are recorded with their effects (warned is set last)."""
    for _ in range(400):
        rows = await action_rows(bot)
        if len(rows) >= count and rows[count - 1][2] and len(bot.in_flight) == 0:
            return rows
        await asyncio.sleep(0.025)
    raise AssertionError(f"moderation actions: {await action_rows(bot)}")


async def test_403_on_delete_timeout_and_send_is_reported_not_raised(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await moderator_runs(fake_discord, world, "moderation log-channel", {"channel": world.other_channel_id})
    await moderator_runs(fake_discord, world, "moderation escalation", {"strikes": 1})
    fake_discord.set_bot_permissions(world.guild_id, VIEW_AND_SEND)  # no Manage Messages, no Timeout Members

    flagged = await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME you are awful")
    await fake_discord.wait_until(
        lambda: len(fake_discord.messages_in(world.other_channel_id)) >= 3, timeout=10
    )
    modlog = " ".join(
        (m["content"] or "") + " ".join(str(e) for e in m.get("embeds", []))
        for m in fake_discord.messages_in(world.other_channel_id)
    )
    assert "Manage Messages" in modlog and "Timeout Members" in modlog, modlog
    assert any(m["id"] == flagged["id"] for m in fake_discord.messages_in(world.channel_id)), "not deleted"
    assert not fake_discord.deleted_message_ids and fake_discord.timeouts == []
    ((message_id, deleted, warned, timed_out),) = await wait_for_rows(bot, 1)
    assert (message_id, deleted, timed_out) == (int(flagged["id"]), 0, 0) and warned == "dm"

    # DMs closed and no Send Messages either: the warning cannot go anywhere, and that is recorded.
    fake_discord.block_dms_from(world.member_id)
    fake_discord.set_bot_permissions(world.guild_id, 1 << 10)
    second = await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME again")
    rows = await wait_for_rows(bot, 2)
    assert rows[-1][0] == int(second["id"]) and rows[-1][2] == "failed", rows[-1]

    # Permissions back: the same kind of message is deleted and its author timed out.
    fake_discord.set_bot_permissions(world.guild_id, VIEW_AND_SEND | MANAGE_MESSAGES | MODERATE_MEMBERS)
    third = await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME third time")
    await fake_discord.wait_until(lambda: int(third["id"]) in fake_discord.deleted_message_ids, timeout=10)
    await fake_discord.wait_until(lambda: len(fake_discord.timeouts) == 1, timeout=10)
    await assert_next_ask_works(bot, fake_discord, fake_openai, world)

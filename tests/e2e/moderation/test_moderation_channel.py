"""Channel moderation end to end: flagged messages, edits, images, warnings, exemptions and bad input."""

from __future__ import annotations

import asyncio

import pytest

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.openai import FakeOpenAI
from tests.support.moderation import (
    actions,
    bot_posts,
    image_requests,
    moderated_texts,
    set_policy,
    settle,
    strikes,
)
from tests.support.server import VIEW_AND_SEND, BotFactory, World


async def wait_deleted(fake: FakeDiscord, message_id: int) -> None:
    await fake.wait_until(
        lambda: message_id in fake.deleted_message_ids, what=f"message {message_id} deleted"
    )


async def wait_moderated(fake_openai: FakeOpenAI, text: str) -> None:
    for _ in range(400):
        if any(text in t for t in moderated_texts(fake_openai)):
            await settle()
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{text!r} was never sent to moderation")


async def test_flagged_message_is_deleted_logged_warned_and_struck(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, modlog_id: int
) -> None:
    message = await fake_discord.post_message(world.channel_id, world.member_id, "you are a FLAGME idiot")
    mid = int(message["id"])
    await wait_deleted(fake_discord, mid)
    await fake_discord.wait_until(lambda: bot_posts(fake_discord, modlog_id), what="a mod-log entry")

    dm = fake_discord.dms[-1]
    assert dm["recipient_id"] == world.member_id
    assert "harassment" in dm["content"] and "0.9" not in dm["content"]  # categories, never scores

    entry = bot_posts(fake_discord, modlog_id)[-1]
    embed = entry["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert str(world.member_id) in fields["Author"] and str(world.channel_id) in fields["Channel"]
    assert (
        fields["Content"].startswith("||") and "FLAGME" in fields["Content"]
    )  # deleted: excerpt in a spoiler
    assert "harassment: 0.97" in fields["Categories"]
    assert "deleted" in fields["Action"] and "warned by DM" in fields["Action"]
    labels = [c["label"] for row in entry["components"] for c in row["components"]]
    assert labels == ["Timeout author", "False positive"]

    [record] = await actions(mod_bot)
    assert record["message_id"] == mid and record["action"] == "warn"
    assert record["deleted"] == 1 and record["warned"] == "dm"
    [strike] = await strikes(mod_bot)
    assert strike["user_id"] == world.member_id and strike["action_id"] == record["id"]


async def test_clean_message_stays(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, modlog_id: int
) -> None:
    message = await fake_discord.post_message(world.channel_id, world.member_id, "what a lovely day")
    await wait_moderated(fake_openai, "what a lovely day")
    assert int(message["id"]) not in fake_discord.deleted_message_ids
    assert fake_discord.dms == [] and bot_posts(fake_discord, modlog_id) == []
    assert await actions(mod_bot) == []


async def test_edit_to_flagged_content_is_acted_on(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    message = await fake_discord.post_message(world.channel_id, world.member_id, "an innocent message")
    await wait_moderated(fake_openai, "an innocent message")
    mid = int(message["id"])
    await fake_discord.edit_message(world.channel_id, mid, "an innocent message... I will kill you")
    await wait_deleted(fake_discord, mid)
    [record] = await actions(mod_bot)
    assert record["source"] == "edit" and "violence" in record["categories"]


async def test_an_update_that_changes_nothing_moderation_reads_is_not_acted_on_twice(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, modlog_id: int
) -> None:
    # Logged, not deleted: the message stays, so Discord's later updates of it (a pin, a flag) reach the bot.
    await set_policy(mod_bot, world.guild_id, default_action="log", modlog_channel_id=modlog_id)
    text = "you are a FLAGME idiot, logged and kept"
    message = await fake_discord.post_message(world.channel_id, world.member_id, text)
    mid = int(message["id"])
    await fake_discord.wait_until(lambda: bot_posts(fake_discord, modlog_id), what="a mod-log entry")
    await fake_discord.edit_message(world.channel_id, mid, text)  # the same content: a pin, say
    await settle(0.3)
    [record] = await actions(mod_bot)
    assert record["message_id"] == mid and record["source"] == "message"
    assert len(bot_posts(fake_discord, modlog_id)) == 1

    await fake_discord.edit_message(world.channel_id, mid, text + ", now edited")  # a real edit is judged
    await fake_discord.wait_until(lambda: len(bot_posts(fake_discord, modlog_id)) == 2, what="a second entry")
    first, second = await actions(mod_bot)
    assert second["message_id"] == mid and second["source"] == "edit"


async def test_flagged_image_attachment_is_acted_on_one_image_per_request(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    clean = fake_discord.add_attachment("cat.png", b"\x89PNG fake bytes", "image/png")
    bad = fake_discord.add_attachment("NSFWIMG.png", b"\x89PNG fake bytes", "image/png")
    message = await fake_discord.post_message(world.channel_id, world.member_id, "", attachments=[clean, bad])
    await wait_deleted(fake_discord, int(message["id"]))
    requests = image_requests(fake_openai)
    assert len(requests) == 2 and all(len(parts) == 1 for parts in requests)
    [record] = await actions(mod_bot)
    assert "sexual" in record["categories"]


async def test_image_embed_is_moderated(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    embed = {
        "type": "image",
        "url": "https://img.example/NSFWIMG.gif",
        "thumbnail": {"url": "https://img.example/NSFWIMG.gif", "width": 8, "height": 8},
    }
    message = await fake_discord.post_message(
        world.channel_id, world.member_id, "https://img.example/x", embeds=[embed]
    )
    await wait_deleted(fake_discord, int(message["id"]))


async def test_warning_falls_back_to_a_short_lived_channel_notice_when_dms_are_closed(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    fake_discord.block_dms_from(world.member_id)
    cog = mod_bot.get_cog("ModerationEvents")
    assert cog is not None
    cog.actions.notice_seconds = 0.2  # type: ignore[attr-defined]
    message = await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME")
    await wait_deleted(fake_discord, int(message["id"]))
    await fake_discord.wait_until(lambda: bot_posts(fake_discord, world.channel_id), what="a channel notice")
    notice = bot_posts(fake_discord, world.channel_id)[0]
    assert "harassment" in notice["content"] and str(world.member_id) in notice["content"]
    await fake_discord.wait_until(lambda: not bot_posts(fake_discord, world.channel_id), what="notice expiry")
    [record] = await actions(mod_bot)
    assert record["warned"] == "channel"


async def test_exempt_role_and_exempt_channel_are_skipped(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    thread = fake_discord.add_channel(
        world.guild_id, "exempt-thread", type=11, parent_id=world.other_channel_id
    )
    await settle(0.1)
    await set_policy(
        mod_bot,
        world.guild_id,
        exempt_roles=frozenset({world.moderator_role_id}),
        exempt_channels=frozenset({world.other_channel_id}),
    )
    by_mod = await fake_discord.post_message(world.channel_id, world.moderator_id, "FLAGME from a mod")
    in_channel = await fake_discord.post_message(world.other_channel_id, world.member_id, "FLAGME in random")
    in_thread = await fake_discord.post_message(thread, world.member_id, "FLAGME in its thread")
    control = await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME control")
    await wait_deleted(fake_discord, int(control["id"]))
    await settle()
    for skipped in (by_mod, in_channel, in_thread):
        assert int(skipped["id"]) not in fake_discord.deleted_message_ids
    assert not any(
        "from a mod" in t or "in random" in t or "its thread" in t for t in moderated_texts(fake_openai)
    )


async def test_bots_and_webhooks_are_skipped_by_default(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    other_bot = fake_discord.add_member(world.guild_id, name="helper-bot", bot=True)
    await settle(0.1)
    from_bot = await fake_discord.post_message(world.channel_id, other_bot, "FLAGME says a bot")
    hooked = await fake_discord.post_message(world.channel_id, 0, "FLAGME via hook", webhook_id=4242)
    control = await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME control")
    await wait_deleted(fake_discord, int(control["id"]))
    await settle()
    assert int(from_bot["id"]) not in fake_discord.deleted_message_ids
    assert int(hooked["id"]) not in fake_discord.deleted_message_ids


async def test_bot_messages_are_moderated_when_the_setting_says_so(
    start_bot: BotFactory, fake_discord: FakeDiscord, world: World
) -> None:
    other_bot = fake_discord.add_member(world.guild_id, name="helper-bot", bot=True)
    await start_bot(moderate_bot_messages=True)
    message = await fake_discord.post_message(world.channel_id, other_bot, "FLAGME says a bot")
    await wait_deleted(fake_discord, int(message["id"]))


@pytest.mark.parametrize("kind", ["empty", "sticker", "attachment", "embed", "long", "zalgo", "zero-width"])
async def test_bad_input_is_handled_without_an_exception(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, kind: str
) -> None:
    post = fake_discord.post_message
    channel, author = world.channel_id, world.member_id
    if kind == "empty":
        message = await post(channel, author, "")
    elif kind == "sticker":
        message = await post(
            channel, author, "", sticker_items=[{"id": "1", "name": "wave", "format_type": 1}]
        )
    elif kind == "attachment":
        notes = fake_discord.add_attachment("notes.txt", b"plain text", "text/plain")
        message = await post(channel, author, "", attachments=[notes])
    elif kind == "embed":
        message = await post(channel, author, "", embeds=[{"type": "rich", "title": "t", "description": "d"}])
    elif kind == "long":
        message = await post(channel, author, "word " * 780 + "FLAGME" + " tail" * 20)  # ~4000 characters
    elif kind == "zalgo":
        message = await post(channel, author, "F\u0336\u0337\u0338\u0340LAG\u0301\u0302\u0303\u0304ME h̷̢̛e̵͎l̸̰l̶o̵")
    else:
        message = await post(channel, author, "F\u200bL\u200cA\u200dG\ufeffME")
    if kind in ("long", "zalgo", "zero-width"):
        await wait_deleted(fake_discord, int(message["id"]))  # whole text judged, evasions undone
    elif kind in ("attachment", "embed"):
        # A file name and an embed's text are shown to members, so they are judged like content
        # ("Close the moderation holes", item 3); clean ones are left alone.
        expected = "notes.txt" if kind == "attachment" else "t\nd"
        await fake_discord.wait_until(
            lambda: expected in moderated_texts(fake_openai), timeout=5, what="the text moderated"
        )
        await settle(0.3)
        assert int(message["id"]) not in fake_discord.deleted_message_ids
    else:
        await settle(0.3)
        assert int(message["id"]) not in fake_discord.deleted_message_ids
        assert fake_openai.calls("/moderations") == []  # nothing to moderate: no request at all


async def test_message_deleted_before_the_verdict_is_still_recorded(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, modlog_id: int
) -> None:
    fake_openai.moderation_latency = 0.3
    message = await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME then gone")
    await asyncio.sleep(0.05)
    await fake_discord.delete_message_event(world.channel_id, int(message["id"]))
    await fake_discord.wait_until(lambda: bot_posts(fake_discord, modlog_id), timeout=5, what="mod-log")
    fields = {f["name"]: f["value"] for f in bot_posts(fake_discord, modlog_id)[-1]["embeds"][0]["fields"]}
    assert "already deleted" in fields["Action"]
    [record] = await actions(mod_bot)
    assert record["deleted"] == 0


async def test_missing_permission_is_reported_once_to_the_modlog(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, world: World, modlog_id: int
) -> None:
    # The bot can read and post but not manage messages (nor time out members).
    fake_discord.set_bot_permissions(world.guild_id, VIEW_AND_SEND | (1 << 14))
    await settle(0.1)
    for n in range(3):
        await fake_discord.post_message(world.channel_id, world.member_id, f"FLAGME number {n}")
    await fake_discord.wait_until(lambda: len(bot_posts(fake_discord, modlog_id)) >= 4, what="mod-log posts")
    await settle()
    posts = bot_posts(fake_discord, modlog_id)
    reports = [p for p in posts if "Manage Messages" in p["content"]]
    assert len(reports) == 1 and "missing" in reports[0]["content"]
    assert len([p for p in posts if p["embeds"]]) == 3
    assert all(record["deleted"] == 0 for record in await actions(mod_bot))


async def test_without_a_modlog_channel_actions_still_happen(
    start_bot: BotFactory, fake_discord: FakeDiscord, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start_bot()
    caplog.set_level("INFO", logger="cogs.moderation.actions")
    message = await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME secret words")
    await wait_deleted(fake_discord, int(message["id"]))
    await fake_discord.wait_until(
        lambda: any("moderation: action" in r.getMessage() for r in caplog.records), what="the log line"
    )
    assert [r["action"] for r in await actions(bot)] == ["warn"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "harassment" in logged and "secret words" not in logged and "FLAGME" not in logged


async def test_threads_and_forum_posts_are_moderated(
    start_bot: BotFactory, fake_discord: FakeDiscord, world: World
) -> None:
    thread = fake_discord.add_channel(world.guild_id, "a-thread", type=11, parent_id=world.channel_id)
    forum = fake_discord.add_channel(world.guild_id, "forum", type=15)
    post = fake_discord.add_channel(world.guild_id, "a forum post", type=11, parent_id=forum)
    await start_bot()
    in_thread = await fake_discord.post_message(thread, world.member_id, "FLAGME in a thread")
    in_post = await fake_discord.post_message(post, world.member_id, "FLAGME in a forum post")
    await wait_deleted(fake_discord, int(in_thread["id"]))
    await wait_deleted(fake_discord, int(in_post["id"]))


async def test_a_message_and_its_edit_flagged_together_make_one_strike(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.moderation_latency = 0.2
    message = await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME once")
    await fake_discord.edit_message(
        world.channel_id, int(message["id"]), "FLAGME twice"
    )  # before the verdict
    await wait_deleted(fake_discord, int(message["id"]))
    for _ in range(200):
        if len(await actions(mod_bot)) == 2:
            break
        await asyncio.sleep(0.02)
    assert sorted(r["source"] for r in await actions(mod_bot)) == ["edit", "message"]
    # The strike is written after its action: wait for it, then make sure no second one follows.
    for _ in range(200):
        if await strikes(mod_bot):
            break
        await asyncio.sleep(0.02)
    await settle(0.3)
    assert len(await strikes(mod_bot)) == 1

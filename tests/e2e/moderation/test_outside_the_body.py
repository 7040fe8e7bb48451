"""Text members can show outside a message's body is moderated too: file names, embeds (also a link preview
that arrives later), polls, and thread and forum post names (renamed and locked when flagged)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.discord_io.client import OpenAIBot
from testkit import FakeDiscord, FakeOpenAI
from tests.support.moderation import actions, bot_posts, moderated_texts, settle
from tests.support.server import MANAGE_MESSAGES, VIEW_AND_SEND, World

MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35


async def wait_deleted(fake: FakeDiscord, message_id: int) -> None:
    await fake.wait_until(lambda: message_id in fake.deleted_message_ids, timeout=5, what="the deletion")


EMBEDS: dict[str, dict[str, Any]] = {
    "title": {"type": "rich", "title": "FLAGME"},
    "description": {"type": "rich", "description": "look at FLAGME"},
    "field": {"type": "rich", "fields": [{"name": "ok", "value": "FLAGME", "inline": False}]},
    "footer": {"type": "rich", "footer": {"text": "FLAGME"}},
    "author": {"type": "rich", "author": {"name": "FLAGME"}},
}


async def test_a_flagged_file_name_is_acted_on(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    notes = fake_discord.add_attachment("FLAGME.txt", b"harmless bytes", "text/plain")
    message = await fake_discord.post_message(world.channel_id, world.member_id, "", attachments=[notes])
    await wait_deleted(fake_discord, int(message["id"]))
    assert "FLAGME.txt" in moderated_texts(fake_openai)


@pytest.mark.parametrize("part", EMBEDS.keys())
async def test_flagged_embed_text_is_acted_on(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, world: World, part: str
) -> None:
    message = await fake_discord.post_message(world.channel_id, world.member_id, "see", embeds=[EMBEDS[part]])
    await wait_deleted(fake_discord, int(message["id"]))


async def test_a_link_preview_added_later_is_moderated(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    message = await fake_discord.post_message(world.channel_id, world.member_id, "https://example.test/page")
    await settle(0.3)
    assert int(message["id"]) not in fake_discord.deleted_message_ids
    preview = {"type": "link", "url": "https://example.test/page", "title": "Page", "description": "FLAGME"}
    await fake_discord.add_link_preview(world.channel_id, int(message["id"]), [preview])
    await wait_deleted(fake_discord, int(message["id"]))


@pytest.mark.parametrize("where", ["question", "answer"])
async def test_a_flagged_poll_is_acted_on(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, world: World, where: str
) -> None:
    question = "FLAGME?" if where == "question" else "Lunch?"
    answers = ["pizza", "FLAGME" if where == "answer" else "salad"]
    poll = {"question": {"text": question}, "answers": [{"poll_media": {"text": a}} for a in answers]}
    message = await fake_discord.post_message(world.channel_id, world.member_id, "", poll=poll)
    await wait_deleted(fake_discord, int(message["id"]))


def thread_record(fake: FakeDiscord, thread_id: int) -> Any:
    return fake.world.channel(thread_id)


async def test_a_flagged_thread_name_is_renamed_locked_and_reported(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, world: World, modlog_id: int
) -> None:
    fake_discord.set_bot_permissions(world.guild_id, VIEW_AND_SEND | MANAGE_MESSAGES | MANAGE_THREADS)
    thread_id = await fake_discord.member_creates_thread(world.channel_id, world.member_id, "FLAGME plans")
    await fake_discord.wait_until(
        lambda: thread_record(fake_discord, thread_id).locked, timeout=5, what="lock"
    )
    thread = thread_record(fake_discord, thread_id)
    assert thread.name == "Renamed by moderation" and thread.locked
    await fake_discord.wait_until(
        lambda: bot_posts(fake_discord, modlog_id), timeout=5, what="a mod-log entry"
    )
    embed = bot_posts(fake_discord, modlog_id)[-1]["embeds"][0]
    assert embed["title"] == "Flagged thread name"
    assert "renamed and locked" in {f["name"]: f["value"] for f in embed["fields"]}["Action"]
    [record] = await actions(mod_bot)
    assert (record["message_id"], record["author_id"]) == (thread_id, world.member_id)


async def test_a_forum_post_title_and_a_rename_are_judged(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_discord.set_bot_permissions(world.guild_id, VIEW_AND_SEND | MANAGE_MESSAGES | MANAGE_THREADS)
    forum = fake_discord.add_channel(world.guild_id, "help", type=15)
    post = await fake_discord.member_creates_thread(forum, world.member_id, "How do I bake?", starter="Hi!")
    await fake_discord.wait_until(
        lambda: "How do I bake?" in moderated_texts(fake_openai), timeout=5, what="the title moderated"
    )
    assert thread_record(fake_discord, post).name == "How do I bake?"
    await fake_discord.rename_thread(post, "FLAGME now")
    await fake_discord.wait_until(lambda: thread_record(fake_discord, post).locked, timeout=5, what="lock")
    assert thread_record(fake_discord, post).name == "Renamed by moderation"


async def test_without_manage_threads_a_flagged_name_is_reported_once(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, world: World, modlog_id: int
) -> None:
    fake_discord.set_bot_permissions(world.guild_id, VIEW_AND_SEND | MANAGE_MESSAGES)
    thread_id = await fake_discord.member_creates_thread(world.channel_id, world.member_id, "FLAGME again")
    await fake_discord.wait_until(
        lambda: any("Manage Threads" in (p.get("content") or "") for p in bot_posts(fake_discord, modlog_id)),
        timeout=5,
        what="the missing-permission report",
    )
    assert thread_record(fake_discord, thread_id).name == "FLAGME again"
    await fake_discord.wait_until(
        lambda: any(p.get("embeds") for p in bot_posts(fake_discord, modlog_id)), timeout=5, what="the entry"
    )
    embed = [p for p in bot_posts(fake_discord, modlog_id) if p.get("embeds")][-1]["embeds"][0]
    assert "missing Manage Threads" in {f["name"]: f["value"] for f in embed["fields"]}["Action"]

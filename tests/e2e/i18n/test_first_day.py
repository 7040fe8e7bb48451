"""The first day in a new server: the welcome on joining, the daily mod-log reminder, authors always told."""

from __future__ import annotations

from typing import Any

import pytest

from bot.discord_io.client import OpenAIBot
from cogs.welcome import REMINDER_INTERVAL
from testkit.discord import FakeDiscord
from testkit.driver import run
from tests.support.moderation import bot_posts, set_policy
from tests.support.server import World


async def test_joining_a_korean_server_posts_one_korean_welcome_in_its_system_channel(
    bot: OpenAIBot, fake_discord: FakeDiscord
) -> None:
    guild_id, channel_id = await fake_discord.join_guild("한국 서버", locale="ko")
    await fake_discord.wait_until(lambda: bot_posts(fake_discord, channel_id), what="the welcome")
    [welcome] = bot_posts(fake_discord, channel_id)
    text = welcome["content"]
    assert "자동 검열이 켜져 있습니다" in text  # moderation is on, and what it does by default
    assert "삭제한 뒤 작성자에게 이유를 알려 줍니다" in text
    assert "`/모더레이션 로그-채널`" in text and "`/모더레이션 상태`" in text  # the mod-log and the policy
    assert "`/도움말`" in text and "**한국 서버**" in text
    assert fake_discord.dms == []


async def test_without_a_postable_system_channel_the_owner_gets_it_by_dm(
    bot: OpenAIBot, fake_discord: FakeDiscord
) -> None:
    guild_id, channel_id = await fake_discord.join_guild("No System Channel", system_channel=False)
    await fake_discord.wait_until(lambda: fake_discord.dms, what="the welcome DM")
    [dm] = fake_discord.dms
    assert dm["recipient_id"] == fake_discord.world.guild(guild_id).owner_id
    assert "I couldn't post in a channel of **No System Channel**" in dm["content"]
    assert "Automatic moderation is on" in dm["content"] and "`/help`" in dm["content"]
    assert bot_posts(fake_discord, channel_id) == []


async def test_a_daily_reminder_until_a_mod_log_is_set(
    bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    guild_id, channel_id = await fake_discord.join_guild("Reminded")
    await fake_discord.wait_until(lambda: bot_posts(fake_discord, channel_id), what="the welcome")
    # The extension's module object, not this file's import of it: read the cog by name.
    welcome: Any = bot.get_cog("Welcome")
    assert welcome is not None
    offset = [0.0]
    real_clock = welcome.clock
    welcome.clock = lambda: real_clock() + offset[0]

    assert await welcome.remind_due() == 0  # not within the first day
    offset[0] += REMINDER_INTERVAL + 1
    await welcome.remind_due()
    reminders = [p for p in bot_posts(fake_discord, channel_id) if "/moderation log-channel" in p["content"]]
    assert len(reminders) == 2  # the welcome names the command, then the one reminder
    assert "Reminder for admins" in reminders[-1]["content"]
    await welcome.remind_due()
    assert len(bot_posts(fake_discord, channel_id)) == 2  # once a day, not on every check

    await set_policy(bot, guild_id, modlog_channel_id=channel_id)
    offset[0] += REMINDER_INTERVAL + 1
    await welcome.remind_due()
    assert len(bot_posts(fake_discord, channel_id)) == 2  # a mod-log is set: no more reminders


async def test_without_a_mod_log_a_deletion_is_never_silent_to_its_author(
    bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    await run(
        fake_discord,
        world,
        "moderation action",
        {"category": "default", "action": "delete"},
        user=world.moderator_id,
    )
    message = await fake_discord.post_message(world.channel_id, world.member_id, "you are a FLAGME idiot")
    await fake_discord.wait_until(
        lambda: int(message["id"]) in fake_discord.deleted_message_ids, what="the deletion"
    )
    await fake_discord.wait_until(lambda: fake_discord.dms, what="the author's warning")
    assert fake_discord.dms[-1]["recipient_id"] == world.member_id


@pytest.mark.parametrize("locale", ["en-US", "ko"])
async def test_the_welcome_is_one_message(bot: OpenAIBot, fake_discord: FakeDiscord, locale: str) -> None:
    guild_id, channel_id = await fake_discord.join_guild(locale=locale)
    await fake_discord.wait_until(lambda: bot_posts(fake_discord, channel_id), what="the welcome")
    await fake_discord.wait_until(lambda: len(fake_discord.messages_in(channel_id)) >= 1, what="posts")
    assert len(bot_posts(fake_discord, channel_id)) == 1
    assert len(bot_posts(fake_discord, channel_id)[0]["content"]) <= 2000

"""A flagged message in a channel the bot can no longer read or write: handled, recorded, reported; no crash."""

from __future__ import annotations

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from tests.support.moderation import actions, bot_posts, set_policy
from tests.support.server import BotFactory, World

MISSING_ACCESS = {"code": 50001, "message": "Missing Access"}


async def test_flagged_message_in_a_channel_the_bot_lost_access_to(
    start_bot: BotFactory, fake_discord: FakeDiscord, world: World
) -> None:
    modlog_id = fake_discord.add_channel(world.guild_id, "mod-log")
    bot: OpenAIBot = await start_bot()
    await set_policy(bot, world.guild_id, modlog_channel_id=modlog_id)
    fake_discord.block_dms_from(world.member_id)
    # Access to the channel is gone between the event and the action: every call there is refused.
    fake_discord.fail_next("*", rf"^/channels/{world.channel_id}/", 403, body=MISSING_ACCESS, times=50)
    message = await fake_discord.post_message(
        world.channel_id, world.member_id, "FLAGME where nobody can act"
    )
    await fake_discord.wait_until(lambda: bot_posts(fake_discord, modlog_id), timeout=5, what="mod-log entry")
    [record] = await actions(bot)
    assert record["deleted"] == 0
    assert int(message["id"]) not in fake_discord.deleted_message_ids
    await fake_discord.wait_until(
        lambda: any(p["embeds"] for p in bot_posts(fake_discord, modlog_id)),
        timeout=5,
        what="the mod-log embed",
    )
    posts = bot_posts(fake_discord, modlog_id)
    assert "harassment" in str([p["embeds"] for p in posts if p["embeds"]])
    assert any("missing" in (p["content"] or "").lower() for p in posts), "the lost permission is reported"

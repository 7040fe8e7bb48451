"""Model output that tries to ping @everyone, a role or a user pings nobody."""

from __future__ import annotations

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import ask
from testkit.openai import FakeOpenAI
from tests.support.server import World, assert_no_mentions_parsed


async def test_model_output_cannot_ping_anyone(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    role = fake_discord.add_role(world.guild_id, "Everyone-ish", mentionable=True)
    fake_openai.queue_chat_replies(f"@everyone @here <@&{role}> <@{world.member_id}> hello!")
    done = await ask(fake_discord, world, "please ping everyone")
    content = done.original["content"]
    assert f"<@&{role}>" in content and f"<@{world.member_id}>" in content
    assert "@everyone" not in content.replace("@\u200beveryone", "")
    assert_no_mentions_parsed(fake_discord)
    stored = fake_discord.sent_messages()
    assert all(not m.get("mentions") for m in stored)

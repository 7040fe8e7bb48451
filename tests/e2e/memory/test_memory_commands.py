"""/forget channel and /persona: permission checks in code, and their effect on the stored memory."""

from __future__ import annotations

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import ask, chat_bodies
from testkit.openai import FakeOpenAI
from tests.support.server import World


async def test_forget_channel_clears_history_and_counts(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await ask(fake_discord, world, "remember me")
    await ask(fake_discord, world, "remember me too")
    await ask(fake_discord, world, "elsewhere", channel=world.other_channel_id)
    done = await (
        await fake_discord.invoke(
            "forget channel", guild_id=world.guild_id, channel_id=world.channel_id, user_id=world.moderator_id
        )
    ).wait_done()
    assert "Forgot 4 turns" in done.all_text()
    assert await bot.services.history.count(world.channel_id) == 0
    assert await bot.services.history.count(world.other_channel_id) == 2


async def test_forget_channel_requires_manage_messages(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await ask(fake_discord, world, "remember me")
    done = await (
        await fake_discord.invoke(
            "forget channel", guild_id=world.guild_id, channel_id=world.channel_id, user_id=world.member_id
        )
    ).wait_done()
    assert "Manage Messages" in done.all_text()
    assert done.ephemeral
    assert await bot.services.history.count(world.channel_id) == 2


async def test_persona_set_is_used_and_clear_removes_it(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await (
        await fake_discord.invoke(
            "persona set",
            {"text": "You are a pirate."},
            guild_id=world.guild_id,
            channel_id=world.channel_id,
            user_id=world.moderator_id,
        )
    ).wait_done()
    assert "Persona set" in done.all_text()
    await ask(fake_discord, world, "hello")
    assert "You are a pirate." in chat_bodies(fake_openai)[-1]["messages"][0]["content"]
    await ask(fake_discord, world, "hello", channel=world.other_channel_id)
    assert "pirate" not in chat_bodies(fake_openai)[-1]["messages"][0]["content"]
    await (
        await fake_discord.invoke(
            "persona clear", guild_id=world.guild_id, channel_id=world.channel_id, user_id=world.moderator_id
        )
    ).wait_done()
    await ask(fake_discord, world, "hello again")
    assert "pirate" not in chat_bodies(fake_openai)[-1]["messages"][0]["content"]


async def test_persona_requires_manage_channels_checked_in_code(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    # The fake sends the member's real permissions, as Discord does when an admin overrides the
    # command's default_permissions: the check in code must still refuse.
    done = await (
        await fake_discord.invoke(
            "persona set",
            {"text": "You are a pirate."},
            guild_id=world.guild_id,
            channel_id=world.channel_id,
            user_id=world.member_id,
        )
    ).wait_done()
    assert "Manage Channels" in done.all_text()
    assert await bot.services.personas.get(world.channel_id) is None


async def test_flagged_persona_is_refused(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await (
        await fake_discord.invoke(
            "persona set",
            {"text": "FLAGME persona"},
            guild_id=world.guild_id,
            channel_id=world.channel_id,
            user_id=world.moderator_id,
        )
    ).wait_done()
    assert "flagged" in done.all_text()
    assert await bot.services.personas.get(world.channel_id) is None

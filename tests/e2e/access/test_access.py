"""Who may use the bot: the server allowlist, DMs, per-command on/off and role requirements."""

from __future__ import annotations

import logging

import pytest

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import ask, run
from testkit.openai import FakeOpenAI
from tests.support.server import VIEW_AND_SEND, BotFactory, World


async def test_the_bot_leaves_servers_outside_the_allowlist(
    start_bot: BotFactory,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stranger = fake_discord.add_guild("Not ours")
    caplog.set_level(logging.INFO, logger="cogs.access")
    await start_bot(allowed_guild_ids=frozenset({world.guild_id}))
    await fake_discord.wait_until(lambda: stranger in fake_discord.left_guilds)
    latecomer = fake_discord.add_guild("Joined later")
    await fake_discord.wait_until(lambda: latecomer in fake_discord.left_guilds)
    assert world.guild_id not in fake_discord.left_guilds
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"leaving server {stranger}" in logged and f"leaving server {latecomer}" in logged
    fake_openai.queue_chat_replies("Still here.")
    assert "Still here." in (await ask(fake_discord, world, "still here?")).all_text()


async def test_a_server_it_cannot_leave_is_ignored(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    stranger = fake_discord.add_guild("Sticky")
    channel = fake_discord.add_channel(stranger, "general")
    user = fake_discord.add_member(stranger, name="eve")
    fake_discord.fail_next("DELETE", r"/users/@me/guilds/\d+", 403, times=5)
    await start_bot(allowed_guild_ids=frozenset({world.guild_id}))
    interaction = await fake_discord.invoke(
        "ask", {"prompt": "hello"}, guild_id=stranger, channel_id=channel, user_id=user
    )
    done = await interaction.wait_done()
    assert "not enabled for this server" in done.all_text() and done.ephemeral
    assert fake_openai.requests == []


async def test_direct_messages_are_refused_by_default(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    dm = fake_discord.dm_channel(world.member_id)
    interaction = await fake_discord.invoke(
        "ask", {"prompt": "psst"}, guild_id=None, channel_id=dm, user_id=world.member_id
    )
    done = await interaction.wait_done()
    assert "direct messages are turned off" in done.all_text() and done.ephemeral
    assert fake_openai.requests == []


async def test_a_command_can_be_turned_off_per_server(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await run(
        fake_discord, world, "limits command", {"command": "ask", "enabled": False}, user=world.moderator_id
    )
    assert "`/ask` is now off" in done.all_text()
    refused = await ask(fake_discord, world, "hello")
    assert "turned off in this server" in refused.all_text() and fake_openai.requests == []
    lockout = await run(
        fake_discord,
        world,
        "limits command",
        {"command": "limits", "enabled": False},
        user=world.moderator_id,
    )
    assert "no command `limits`" in lockout.all_text()
    await run(
        fake_discord, world, "limits command", {"command": "ask", "enabled": True}, user=world.moderator_id
    )
    assert "turned off" not in (await ask(fake_discord, world, "hello")).all_text()
    assert fake_openai.calls("/chat/completions")
    shown = await run(fake_discord, world, "limits show", user=world.moderator_id)
    assert "`/ask`: on" in shown.all_text()


async def test_role_requirements(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    artists = fake_discord.add_role(world.guild_id, "Artists", permissions=VIEW_AND_SEND)
    artist = fake_discord.add_member(world.guild_id, name="frida", roles=[artists])
    denied = await run(fake_discord, world, "limits role", {"command": "ask", "role": artists})
    assert "Manage Server" in denied.all_text()
    done = await run(
        fake_discord, world, "limits role", {"command": "ask", "role": artists}, user=world.moderator_id
    )
    assert "needs the **Artists** role" in done.all_text()
    refused = await ask(fake_discord, world, "may I?")
    assert "needs the **Artists** role" in refused.all_text() and fake_openai.requests == []
    allowed = await run(fake_discord, world, "ask", {"prompt": "I may"}, user=artist)
    assert "needs the" not in allowed.all_text()
    admin = await run(fake_discord, world, "ask", {"prompt": "admins may"}, user=world.moderator_id)
    assert "needs the" not in admin.all_text()
    assert len(fake_openai.calls("/chat/completions")) == 2
    await run(fake_discord, world, "limits role", {"command": "ask"}, user=world.moderator_id)
    assert "needs the" not in (await ask(fake_discord, world, "now?")).all_text()


async def test_mentions_follow_the_servers_ask_rules(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await run(
        fake_discord, world, "limits command", {"command": "ask", "enabled": False}, user=world.moderator_id
    )
    assert bot.user is not None
    message = await fake_discord.post_message(
        world.channel_id, world.member_id, f"<@{bot.user.id}> hello", mentions_bot=True
    )

    def refusal() -> list[dict]:
        return [
            m
            for m in fake_discord.messages_in(world.channel_id)
            if str((m.get("message_reference") or {}).get("message_id")) == str(message["id"])
        ]

    await fake_discord.wait_until(lambda: bool(refusal()), what="the refusal reply")
    assert "turned off in this server" in refusal()[0]["content"]
    # (the message itself is still moderated as a channel message; no chat request is made)
    assert fake_openai.calls("/chat/completions") == []

"""Who said what (display names in any script reach the model, distinct) and private /ask stays private."""

from __future__ import annotations

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import ask, chat_bodies
from testkit.openai import FakeOpenAI
from tests.support.server import World

NAMES = ["김철수", "田中 太郎", "🌸🌸", "a.b", "a b"]


async def test_every_speaker_is_named_as_written_and_distinct(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    members = [fake_discord.add_member(world.guild_id, name=name) for name in NAMES]
    for member in members:
        await ask(fake_discord, world, f"hello from {member}", user=member)
    await ask(fake_discord, world, "who is here?")  # alice, whose name is already API-safe
    messages = chat_bodies(fake_openai)[-1]["messages"]
    system = messages[0]["content"]
    said = {m["content"]: m["name"] for m in messages if m["role"] == "user"}
    aliases = [said[f"hello from {member}"] for member in members]
    assert said["who is here?"] == "alice"
    assert len(set(aliases)) == len(NAMES), aliases  # "a.b" and "a b" sanitise alike, yet stay apart
    for alias, name in zip(aliases, NAMES, strict=True):
        assert all(c.isascii() and (c.isalnum() or c in "_-") for c in alias), alias
        assert f'`{alias}` is "{name}"' in system  # the model can map each name back to the person


async def test_private_question_never_reaches_another_members_context(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bob = fake_discord.add_member(world.guild_id, name="bob")
    await ask(fake_discord, world, "shared hello")
    fake_openai.queue_chat_replies("noted, privately")
    await ask(fake_discord, world, "my diagnosis is ZEBRA-42", private=True)
    await ask(fake_discord, world, "what did others ask?", user=bob)
    public_body = str(chat_bodies(fake_openai)[-1]["messages"])
    assert "ZEBRA-42" not in public_body and "noted, privately" not in public_body
    assert "shared hello" in public_body

    # The asker's own private question sees it, and the shared memory besides.
    await ask(fake_discord, world, "remind me", private=True)
    own = [m["content"] for m in chat_bodies(fake_openai)[-1]["messages"]]
    assert (
        own.index("shared hello") < own.index("my diagnosis is ZEBRA-42") < own.index("what did others ask?")
    )
    rows = await bot.services.store.fetchall(
        "SELECT content, private_to FROM turns WHERE channel_id = ? ORDER BY id", (world.channel_id,)
    )
    private = {r["content"]: r["private_to"] for r in rows}
    assert private["my diagnosis is ZEBRA-42"] == world.member_id
    assert private["noted, privately"] == world.member_id
    assert private["shared hello"] == 0 and private["what did others ask?"] == 0

    # /forget me clears the private memory too.
    await (
        await fake_discord.invoke(
            "forget me", guild_id=world.guild_id, channel_id=world.channel_id, user_id=world.member_id
        )
    ).wait_done()
    left = await bot.services.store.fetchall("SELECT content FROM turns WHERE private_to != 0")
    assert left == []
    await ask(fake_discord, world, "anything private left?", private=True)
    assert "ZEBRA-42" not in str(chat_bodies(fake_openai)[-1]["messages"])

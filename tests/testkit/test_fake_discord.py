"""Self-test of the fake Discord: a tiny real discord.py bot logs in, syncs, and answers through it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from testkit.discord import FakeDiscord, running_bot


class Counter(discord.ui.View):
    """A button that counts clicks."""

    def __init__(self) -> None:
        super().__init__(timeout=30)
        self.count = 0

    @discord.ui.button(label="+1", custom_id="inc")
    async def inc(self, interaction: discord.Interaction, button: discord.ui.Button[Counter]) -> None:
        self.count += 1
        await interaction.response.edit_message(content=f"count {self.count}", view=self)


@app_commands.command(name="echo", description="Echo text")
@app_commands.describe(text="What to echo", times="How many times")
async def echo(interaction: discord.Interaction, text: str, times: int = 1) -> None:
    await interaction.response.defer(thinking=True)
    await interaction.edit_original_response(content=f"echo: {text * times}")
    await interaction.followup.send(f"again: {text}", wait=True)


@app_commands.command(name="size", description="Size of a file")
async def size(interaction: discord.Interaction, file: discord.Attachment) -> None:
    data = await file.read()
    await interaction.response.send_message(
        f"{file.filename}: {len(data)} bytes {data[:5].decode()}", ephemeral=True
    )


@app_commands.command(name="counter", description="A button")
async def counter(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("count 0", view=Counter())


@app_commands.command(name="slow", description="Answers too late")
async def slow(interaction: discord.Interaction) -> None:
    await asyncio.sleep(0.3)
    await interaction.response.send_message("late")


persona = app_commands.Group(name="persona", description="Personas")


@persona.command(name="set", description="Set the persona")
async def persona_set(interaction: discord.Interaction, name: str) -> None:
    await interaction.response.send_message(f"persona is now {name}")


async def quote(interaction: discord.Interaction, message: discord.Message) -> None:
    await interaction.response.send_message(f"> {message.content}", ephemeral=True)


class MiniBot(commands.Bot):
    """The smallest bot exercising commands, views, context menus and on_message."""

    def __init__(self, *, intents: discord.Intents | None = None) -> None:
        if intents is None:
            intents = discord.Intents(guilds=True, guild_messages=True, message_content=True)
        super().__init__(
            command_prefix="!",
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            guild_ready_timeout=0.05,
        )
        self.received: list[discord.Message] = []

    async def setup_hook(self) -> None:
        commands_: list[app_commands.Command[Any, ..., Any] | app_commands.Group] = [
            echo,
            size,
            counter,
            slow,
            persona,
        ]
        for command in commands_:
            self.tree.add_command(command)
        self.tree.add_command(app_commands.ContextMenu(name="Quote", callback=quote))
        await self.tree.sync()

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot:
            return
        self.received.append(message)
        assert self.user is not None
        if message.content.startswith("loud"):
            await message.channel.send(message.content, allowed_mentions=discord.AllowedMentions.all())
        elif self.user in message.mentions or message.content.startswith("ping"):
            await message.reply(f"pong: {message.content}")


@dataclass
class Place:
    """Ids of the test guild."""

    guild: int
    channel: int
    user: int
    role: int


@pytest.fixture
async def fd() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
def place(fd: FakeDiscord) -> Place:
    guild = fd.add_guild()
    channel = fd.add_channel(guild, "general")
    role = fd.add_role(guild, "Fans")
    user = fd.add_member(guild, name="alice", roles=[role])
    return Place(guild, channel, user, role)


@pytest.fixture
async def mini(fd: FakeDiscord, place: Place) -> AsyncIterator[MiniBot]:
    bot = MiniBot()
    async with running_bot(fd, bot):
        yield bot


async def test_slash_command_round_trip(fd: FakeDiscord, place: Place, mini: MiniBot) -> None:
    assert {c["name"] for c in fd.synced_commands["global"]} == {
        "echo",
        "size",
        "counter",
        "slow",
        "persona",
        "Quote",
    }
    fi = await fd.invoke(
        "echo", {"text": "hi", "times": 2}, guild_id=place.guild, channel_id=place.channel, user_id=place.user
    )
    await fi.wait_done()
    assert fi.deferred and not fi.ephemeral
    assert [r["kind"] for r in fi.responses] == ["callback", "edit_original", "followup"]
    assert fi.original is not None and fi.original["content"] == "echo: hihi"
    assert fi.all_text() == "echo: hihi\nagain: hi"
    stored = [m["content"] for m in fd.messages_in(place.channel)]
    assert stored == ["echo: hihi", "again: hi"]
    assert [m["kind"] for m in fd.sent_messages()] == ["interaction", "followup"]
    assert not fd.unknown_routes and not fd.bot_errors


async def test_subcommand_context_menu_and_attachment(fd: FakeDiscord, place: Place, mini: MiniBot) -> None:
    fi = await fd.invoke(
        "persona set", {"name": "pirate"}, guild_id=place.guild, channel_id=place.channel, user_id=place.user
    )
    assert "persona is now pirate" in (await fi.wait_done()).all_text()

    attachment = fd.add_attachment("notes.txt", b"hello world")
    fi = await fd.invoke(
        "size", {"file": attachment}, guild_id=place.guild, channel_id=place.channel, user_id=place.user
    )
    await fi.wait_done()
    assert fi.ephemeral and fi.all_text() == "notes.txt: 11 bytes hello"
    assert fi.original not in fd.messages_in(place.channel)  # ephemeral

    target = await fd.post_message(place.channel, place.user, "quotable words")
    fi = await fd.invoke_context_menu(
        "Quote",
        target_message_id=int(target["id"]),
        guild_id=place.guild,
        channel_id=place.channel,
        user_id=place.user,
    )
    assert (await fi.wait_done()).all_text() == "> quotable words"


async def test_button_click_updates_the_message(fd: FakeDiscord, place: Place, mini: MiniBot) -> None:
    fi = await fd.invoke("counter", guild_id=place.guild, channel_id=place.channel, user_id=place.user)
    await fi.wait_done()
    assert fi.original is not None
    message_id = int(fi.original["id"])
    click = await fd.click(
        message_id, "inc", guild_id=place.guild, channel_id=place.channel, user_id=place.user
    )
    await click.wait_done()
    assert click.callback_type == 7
    assert fd.messages_in(place.channel)[-1]["content"] == "count 1"
    await (await fd.click(message_id, 0, user_id=place.user)).wait_done()
    assert fd.messages_in(place.channel)[-1]["content"] == "count 2"


async def test_invocation_is_checked_against_the_synced_schema(
    fd: FakeDiscord, place: Place, mini: MiniBot
) -> None:
    async def invoke(name: str, options: dict[str, object]) -> None:
        await fd.invoke(name, options, guild_id=place.guild, channel_id=place.channel, user_id=place.user)

    with pytest.raises(AssertionError, match="no option 'txt'"):
        await invoke("echo", {"txt": "x"})
    with pytest.raises(AssertionError, match="needs a str"):
        await invoke("echo", {"text": 5})
    with pytest.raises(AssertionError, match="required option 'text'"):
        await invoke("echo", {})
    with pytest.raises(AssertionError, match="no synced command 'nope'"):
        await invoke("nope", {})
    with pytest.raises(AssertionError, match="needs a subcommand"):
        await invoke("persona", {"name": "x"})
    assert not fd.interactions, "nothing was sent to the bot"


async def test_late_callback_gets_unknown_interaction(fd: FakeDiscord, place: Place, mini: MiniBot) -> None:
    fd.interaction_deadline = 0.15  # instead of Discord's 3 s
    fi = await fd.invoke("slow", guild_id=place.guild, channel_id=place.channel, user_id=place.user)
    await fd.wait_until(lambda: any(r.path.endswith("/callback") for r in fd.requests), 2)
    assert not fi.acknowledged
    callback = next(r for r in fd.requests if r.path.endswith("/callback"))
    assert callback.status == 404
    await fd.wait_until(lambda: any("Unknown interaction" in e for e in fd.bot_errors), 2)


async def test_injected_429_on_edit_is_retried(fd: FakeDiscord, place: Place, mini: MiniBot) -> None:
    fd.fail_next(
        "PATCH",
        r"/messages/@original$",
        429,
        body={"message": "slow down", "retry_after": 0.05, "global": False},
    )
    fi = await fd.invoke(
        "echo", {"text": "x"}, guild_id=place.guild, channel_id=place.channel, user_id=place.user
    )
    await fi.wait_done()
    patches = fd.requests_to("PATCH", r"/messages/@original$")
    assert [r.status for r in patches] == [429, 200]
    assert patches[1].time - patches[0].time >= 0.05
    assert len(fi.edits()) == 1 and fi.all_text().startswith("echo: x")


async def test_message_reply_and_allowed_mentions(fd: FakeDiscord, place: Place, mini: MiniBot) -> None:
    sent = await fd.post_message(
        place.channel, place.user, f"ping @everyone <@&{place.role}> <@{place.user}>"
    )
    await fd.wait_until(lambda: len(fd.sent_messages()) == 1, 2)
    reply = fd.sent_messages()[0]
    assert reply["message_reference"]["message_id"] == sent["id"]
    assert reply["allowed_mentions"] == {"parse": []}  # AllowedMentions.none() on the client
    assert reply["content"].startswith("pong: ping @everyone")
    assert reply["mentions"] == [] and reply["mention_roles"] == [] and not reply["mention_everyone"]

    await fd.post_message(place.channel, place.user, f"loud @everyone <@{place.user}>")
    await fd.wait_until(lambda: len(fd.sent_messages()) == 2, 2)
    loud = fd.sent_messages()[1]
    assert loud["mention_everyone"] and [m["id"] for m in loud["mentions"]] == [str(place.user)]


async def test_resume_replays_the_gap_exactly_once(fd: FakeDiscord, place: Place, mini: MiniBot) -> None:
    gate = asyncio.Event()
    fd.resume_gate = gate
    await fd.close_gateway(4000)
    sent = await fd.post_message(place.channel, place.user, "said during the gap")
    gate.set()
    await fd.wait_until(lambda: fd.resume_count == 1, 2)
    await fd.wait_until(lambda: any(m.id == int(sent["id"]) for m in mini.received), 2)
    await asyncio.sleep(0.05)
    assert [m.id for m in mini.received].count(int(sent["id"])) == 1
    assert fd.identify_count == 1 and fd.gateway_connections[-1].startswith("/resume-gateway")


async def test_session_timeout_close_forces_identify(fd: FakeDiscord, place: Place, mini: MiniBot) -> None:
    await fd.close_gateway(4009)
    await fd.wait_until(lambda: fd.identify_count == 2, 3)
    assert fd.resume_count == 0
    await fd.wait_until(lambda: fd.connected, 2)
    sent = await fd.post_message(place.channel, place.user, "after re-identify")
    await fd.wait_until(lambda: any(m.id == int(sent["id"]) for m in mini.received), 2)


async def test_message_content_intent(place: Place, fd: FakeDiscord) -> None:
    fd.message_content_intent = False
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with running_bot(fd, MiniBot()):
            pass
    bot = MiniBot(intents=discord.Intents(guilds=True, guild_messages=True))
    async with running_bot(fd, bot):
        await fd.post_message(place.channel, place.user, "secret words")
        await fd.post_message(place.channel, place.user, "hello", mentions_bot=True)
        await fd.wait_until(lambda: len(bot.received) == 2, 2)
    assert bot.received[0].content == ""
    assert bot.received[1].content == f"<@{fd.bot_user_id}> hello"

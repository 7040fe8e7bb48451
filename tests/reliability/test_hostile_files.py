"""Hostile files: decompression bombs, attachments from elsewhere or from a server that hangs, oversized
streams and recordings too long to decode are refused clearly, before any paid call or long work."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator

import pytest

from bot.discord_io.client import OpenAIBot
from testkit import FakeDiscord, FakeInteraction, FakeOpenAI
from testkit.driver import ask
from tests.e2e.transcribe.test_transcribe import ogg_opus, transcribe, uploads
from tests.support.server import BotFactory, World


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(width * 3 + 1)))
        + chunk(b"IEND", b"")
    )


async def ask_with(fake: FakeDiscord, world: World, attachment: dict[str, object]) -> FakeInteraction:
    return await ask(fake, world, "What is this?", file=attachment)


async def test_a_decompression_bomb_is_refused_from_its_header(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bomb = fake_discord.add_attachment("huge.png", png_claiming(30000, 30000), "image/png")
    done = await ask_with(fake_discord, world, bomb)
    assert "`huge.png` is too large to open" in done.all_text() and "megapixels" in done.all_text()
    assert fake_openai.calls("/chat/completions") == []


class Listener:
    """A TCP server on this machine that counts connections and never answers (or is never reached)."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await asyncio.sleep(3600)

    async def start(self, host: str) -> int:
        self.server = await asyncio.start_server(self.handle, host, 0)
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    found = Listener()
    yield found
    if found.server is not None:
        found.server.close()


async def test_an_attachment_stored_elsewhere_is_refused_and_never_fetched(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, listener: Listener
) -> None:
    port = await listener.start("localhost")
    attachment = fake_discord.add_attachment("cat.png", b"\x89PNG not really", "image/png")
    attachment["url"] = attachment["proxy_url"] = f"http://localhost:{port}/cat.png"
    done = await ask_with(fake_discord, world, attachment)
    assert "it is not stored on Discord" in done.all_text()
    assert listener.connections == 0 and fake_openai.calls("/chat/completions") == []


async def test_a_file_server_that_never_answers_times_out_with_a_clear_message(
    start_bot: BotFactory,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    listener: Listener,
) -> None:
    await start_bot(attachment_timeout=0.5)
    # Same host as the API base (allowed), but a server that accepts and never answers.
    port = await listener.start("127.0.0.1")
    attachment = fake_discord.add_attachment("memo.ogg", ogg_opus(1.0), "audio/ogg")
    attachment["url"] = f"http://127.0.0.1:{port}/memo.ogg"
    interaction = await fake_discord.invoke(
        "transcribe file",
        {"file": attachment},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.member_id,
    )
    done = await interaction.wait_done(timeout=10, settle=0.3)
    assert "did not send `memo.ogg` in time" in done.all_text()
    assert listener.connections == 1 and uploads(fake_openai) == []


async def test_a_stream_larger_than_declared_is_cut_off_at_the_cap(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    attachment = fake_discord.add_attachment("cat.png", bytes(21 * 1024 * 1024), "image/png")
    attachment["size"] = 1024  # what the message claims; the bytes keep coming
    done = await ask_with(fake_discord, world, attachment)
    # FILE_MAX_MB (8 by default) caps every file /ask reads, images included.
    assert "`cat.png` is larger than 8 MiB" in done.all_text()
    assert fake_openai.calls("/chat/completions") == []


async def test_a_recording_over_the_duration_cap_is_refused_before_transcribing(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot(transcription_max_minutes=0.05)  # 3 s
    done = await transcribe(fake_discord, world, "long.ogg", ogg_opus(5.0, tone=False))
    assert "`long.ogg` is longer than 0.05 minutes" in done.all_text()
    assert uploads(fake_openai) == []
    fine = await transcribe(fake_discord, world, "short.ogg", ogg_opus(2.0))
    assert "longer than" not in fine.all_text() and len(uploads(fake_openai)) == 1

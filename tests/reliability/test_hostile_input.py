"""The hostile-input corpus through every command and through channel moderation: each input gets a clear
refusal or a safe answer; nothing is pinged (checked on every sent message by the conftest), nothing is
corrupted, no exception escapes (an ERROR log fails the test)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.discord_io.client import OpenAIBot
from bot.moderation.normalize import normalize
from bot.storage.postgres import NUL_REPLACEMENT
from testkit.discord import FakeDiscord, FakeInteraction
from testkit.driver import CURSOR, answer_text
from testkit.openai import FakeOpenAI
from tests.reliability.corpus import (
    HOSTILE_TEXTS,
    MODEL_PINGS,
    SHORT_HOSTILE,
    HostileFile,
    hostile_audio,
    hostile_images,
    png_bytes,
)
from tests.reliability.helpers import moderated_texts, turns
from tests.support.database import integrity_ok, on_postgres, table_names
from tests.support.server import BotFactory, World

UNEXPECTED = "Something went wrong on my side"
TABLES = {"turns", "channel_personas", "moderation_policies", "moderation_queue", "usage_events"}


@pytest.fixture
async def roomy_bot(start_bot: BotFactory, world: World) -> OpenAIBot:
    """The real bot with rate limits wide enough for a corpus fired at once."""
    return await start_bot(
        user_burst=100000,
        user_requests_per_minute=100000.0,
        server_max_concurrent_jobs=64,
        server_queue_size=100000,
    )


def assert_safe(done: FakeInteraction) -> str:
    """Answered or refused, in words; never left thinking, never a crash message, never a cursor."""
    text = done.all_text()
    assert done.acknowledged and not done.loading, done.describe()
    assert UNEXPECTED not in text and "Traceback" not in text, done.describe()
    assert "▌" not in text, done.describe()
    assert text.strip() or any(r["files"] for r in done.responses), done.describe()
    return text


async def run_all(
    fake: FakeDiscord, world: World, name: str, option_sets: list[dict[str, Any]], user_id: int
) -> list[FakeInteraction]:
    invoked = []
    for options in option_sets:
        try:
            fi = await fake.invoke(
                name, options, guild_id=world.guild_id, channel_id=world.channel_id, user_id=user_id
            )
        except AssertionError as exc:
            # The Discord client itself refuses to send an option over the command's max_length.
            assert "max_length" in str(exc), exc
            continue
        invoked.append(fi)
    return list(await asyncio.gather(*(settled(fi) for fi in invoked)))


async def settled(interaction: FakeInteraction) -> FakeInteraction:
    """Done and quiet. A pause mid-stream looks quiet too (a loaded CI run once ended the wait between an
    answer's first edit and its last), so no streaming cursor may show first; one that stays fails here."""
    await interaction.wait_for(
        lambda i: not ((i.original or {}).get("content") or "").endswith(CURSOR), timeout=20
    )
    return await interaction.wait_done(timeout=20, settle=0.3)


def assert_database_intact(bot: OpenAIBot) -> None:
    url = bot.settings.database_url
    assert integrity_ok(url)
    names = table_names(url)
    assert TABLES <= names, TABLES - names


TEXT_COMMANDS: list[tuple[str, str, str, dict[str, Any]]] = [
    # (command, option taking the text, who, other options)
    ("ask", "prompt", "member", {}),
    ("persona set", "text", "moderator", {}),
    ("imagine", "prompt", "member", {}),
    ("moderation test", "text", "moderator", {}),
]


@pytest.mark.parametrize(
    ("command", "option", "who", "extra"), TEXT_COMMANDS, ids=[c[0] for c in TEXT_COMMANDS]
)
async def test_every_text_command_survives_the_corpus(
    roomy_bot: OpenAIBot,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    command: str,
    option: str,
    who: str,
    extra: dict[str, Any],
) -> None:
    user = world.member_id if who == "member" else world.moderator_id
    texts = list(HOSTILE_TEXTS.values())
    done = await run_all(fake_discord, world, command, [{option: t, **extra} for t in texts], user)
    for fi in done:
        assert_safe(fi)
    if command == "ask":
        assert len(done) == len(texts)
        stored = [content for role, content in await turns(roomy_bot, world.channel_id) if role == "user"]
        for text, fi in zip(texts, done, strict=True):
            answered = answer_text((fi.original or {}).get("content", "")).startswith("Echo:")
            # PostgreSQL's text holds no NUL: its driver stores U+FFFD there (docs/storage.md).
            as_stored = text.replace("\x00", NUL_REPLACEMENT) if on_postgres() else text
            assert answered == (as_stored in stored), (text[:40], fi.describe())
            if not text.strip():
                assert not answered and "empty" in fi.all_text()
            elif answered:
                assert "@everyone" not in fi.all_text() and "@here" not in fi.all_text()
    assert_database_intact(roomy_bot)


async def test_short_option_corpus_durations_languages_and_command_names(
    roomy_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    shorts = list(SHORT_HOSTILE.values())
    tldr = await run_all(fake_discord, world, "tldr", [{"since": s} for s in shorts], world.member_id)
    for fi in tldr:
        text = assert_safe(fi)
        assert fi.ephemeral and ("duration" in text.lower() or "like 30m" in text), fi.describe()
    limits = await run_all(
        fake_discord,
        world,
        "limits command",
        [{"command": s, "enabled": False} for s in shorts],
        world.moderator_id,
    )
    for fi in limits:
        assert_safe(fi)
    audio = fake_discord.add_attachment("memo.ogg", b"OggS" + bytes(200), "audio/ogg")
    languages = [s for s in shorts if len(s) <= 16]
    transcribe = await run_all(
        fake_discord,
        world,
        "transcribe file",
        [{"file": audio, "language": s} for s in languages],
        world.member_id,
    )
    for fi in transcribe:
        assert_safe(fi)
    # The commands without free text still work on whatever the corpus left in the database.
    for name, user in [
        ("usage", world.member_id),
        ("limits show", world.moderator_id),
        ("moderation status", world.moderator_id),
        ("forget me", world.member_id),
        ("forget channel", world.moderator_id),
    ]:
        (fi,) = await run_all(fake_discord, world, name, [{}], user)
        assert_safe(fi)
    assert_database_intact(roomy_bot)


@pytest.mark.parametrize("name", list(hostile_images()))
async def test_hostile_images_given_to_ask(
    roomy_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, name: str
) -> None:
    file: HostileFile = hostile_images()[name]
    attachment = fake_discord.add_attachment(file.filename, file.data, file.content_type)
    (done,) = await run_all(
        fake_discord,
        world,
        "ask",
        [{"prompt": "what is in this picture?", "file": attachment}],
        world.member_id,
    )
    text = assert_safe(done)
    really_an_image = file.data.startswith(b"\x89PNG") and len(file.data) < 10_000 and name != "truncated png"
    if really_an_image:
        assert answer_text(text).startswith("Echo:"), (
            done.describe()
        )  # the bytes decide, not the name or MIME type
    else:
        assert file.filename in text, done.describe()  # the refusal names the file it refuses
        assert done.ephemeral or (done.followups and done.followups[-1]["flags"] & 64), done.describe()
        assert fake_openai.calls("/chat/completions") == []
    if name == "30 MiB":
        assert not any(str(attachment["id"]) in url for url in fake_discord.cdn_requests), (
            "an oversized image is refused from its declared size, without downloading it"
        )
    assert_database_intact(roomy_bot)


@pytest.mark.parametrize("name", list(hostile_audio()))
async def test_hostile_audio_given_to_transcribe(
    roomy_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, name: str
) -> None:
    file = hostile_audio()[name]
    attachment = fake_discord.add_attachment(file.filename, file.data, file.content_type)
    (done,) = await run_all(fake_discord, world, "transcribe file", [{"file": attachment}], world.member_id)
    text = assert_safe(done)
    assert "hello from the fake transcriber" not in text, "garbage is not passed off as speech"
    assert_database_intact(roomy_bot)


async def test_model_answers_that_try_to_ping_reach_nobody(
    roomy_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.chat_reply = MODEL_PINGS
    (asked,) = await run_all(
        fake_discord, world, "ask", [{"prompt": "ping everyone for me"}], world.member_id
    )
    assert "@\u200beveryone" in asked.all_text() and "<@&123>" in asked.all_text()
    message = await fake_discord.post_message(
        world.channel_id, world.member_id, "ping them", mentions_bot=True
    )
    await fake_discord.wait_until(
        lambda: any(
            (m.get("message_reference") or {}).get("message_id") == message["id"]
            for m in fake_discord.messages_in(world.channel_id)
        )
    )
    fake_discord.seed_history(
        world.channel_id, [{"author_id": world.member_id, "content": f"chat line {i}"} for i in range(5)]
    )
    (summary,) = await run_all(fake_discord, world, "tldr", [{}], world.member_id)
    assert_safe(summary)
    await fake_discord.wait_until(lambda: len(roomy_bot.in_flight) == 0)
    for sent in fake_discord.sent_messages():
        assert (
            not sent.get("mention_everyone") and not sent.get("mention_roles") and not sent.get("mentions")
        ), sent
        assert "@everyone" not in (sent.get("content") or "")


async def test_channel_moderation_survives_the_corpus(
    roomy_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    images = hostile_images()
    del images["30 MiB"]  # a real upload that size is refused by Discord for most servers
    posted = []
    for text in HOSTILE_TEXTS.values():
        posted.append(await fake_discord.post_message(world.other_channel_id, world.member_id, text))
    for file in images.values():
        attachment = fake_discord.add_attachment(file.filename, file.data, file.content_type)
        posted.append(
            await fake_discord.post_message(
                world.other_channel_id, world.member_id, "look", attachments=[attachment]
            )
        )
    for text in list(HOSTILE_TEXTS.values())[:5]:
        posted.append(
            await fake_discord.post_message(world.channel_id, world.member_id, text, mentions_bot=True)
        )
    await asyncio.sleep(0.2)
    await fake_discord.wait_until(lambda: len(roomy_bot.in_flight) == 0, timeout=15)
    moderated = moderated_texts(fake_openai)
    for message in posted[: len(HOSTILE_TEXTS)]:
        content = message["content"]
        if content.strip():
            seen = normalize(content)  # the gate undoes zalgo and zero-width tricks
            assert any(seen in text for text in moderated), f"not moderated: {content[:40]!r}"
    assert_database_intact(roomy_bot)
    png = fake_discord.add_attachment("ok.png", png_bytes(), "image/png")
    (after,) = await run_all(
        fake_discord, world, "ask", [{"prompt": "still fine?", "file": png}], world.member_id
    )
    assert answer_text(after.all_text()).startswith("Echo:")

"""/tldr end to end: history reading, filters, refusals, privacy, moderation, and parallel chunked summaries."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

from bot.discord_io.client import OpenAIBot
from bot.openai_api.tokens import TokenCounter
from bot.settings import SettingsError, load_settings
from bot.summary.summarizer import CHUNK_INSTRUCTIONS, COMBINE_INSTRUCTIONS
from testkit.discord import FakeDiscord, FakeInteraction
from testkit.openai import FakeOpenAI, RecordedRequest
from tests.support.server import BotFactory, World

VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
READ_MESSAGE_HISTORY = 1 << 16
HISTORY_READS = r"/channels/\d+/messages$"


async def tldr(
    fake: FakeDiscord,
    world: World,
    options: dict[str, Any] | None = None,
    *,
    channel: int | None = None,
    permissions: int | None = None,
) -> FakeInteraction:
    interaction = await fake.invoke(
        "tldr",
        options or {},
        guild_id=world.guild_id,
        channel_id=channel or world.channel_id,
        user_id=world.member_id,
        permissions=permissions,
    )
    return await interaction.wait_done(timeout=20, settle=0.2)


def notes_shown(interaction: FakeInteraction) -> bool:
    """The summary's last piece is posted: it ends with the line of notes ("-# ...")."""
    posted = [m for m in (interaction.original, *interaction.followups) if m is not None]
    return bool(posted) and str(posted[-1].get("content") or "").rsplit("\n", 1)[-1].startswith("-# ")


def jump_url(world: World, channel_id: int, message: dict[str, Any]) -> str:
    return f"https://discord.com/channels/{world.guild_id}/{channel_id}/{message['id']}"


def chunk_requests(fake_openai: FakeOpenAI) -> list[RecordedRequest]:
    return [
        r
        for r in fake_openai.calls("/chat/completions")
        if r.json["messages"][0]["content"].startswith(CHUNK_INSTRUCTIONS)
    ]


def transcripts(fake_openai: FakeOpenAI) -> str:
    return "\n".join(r.json["messages"][-1]["content"] for r in chunk_requests(fake_openai))


def cite_everything(body: dict[str, Any]) -> str:
    """A fake model that cites the first and last message it saw (chunks) or every citation (merges)."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if system.startswith(CHUNK_INSTRUCTIONS):
        refs = re.findall(r"^\[m(\d+)\]", user, re.MULTILINE)
        return f"- the team discussed the release [m{refs[0]}] and agreed [m{refs[-1]}]"
    assert system == COMBINE_INSTRUCTIONS
    refs = re.findall(r"\[m(\d+)\]", user)
    return "- merged: " + " ".join(f"[m{n}]" for n in refs)


def public_texts(fake: FakeDiscord) -> str:
    return "\n".join(str(m.get("content") or "") for m in fake.sent_messages() if not m.get("deleted"))


async def test_happy_path_names_participants_and_links_key_points(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bob = fake_discord.add_member(world.guild_id, name="bob")
    fake_discord.seed_history(
        world.channel_id,
        [
            {"author_id": world.member_id, "content": "Let's ship the release on Friday"},
            {"author_id": bob, "content": "Agreed, Friday works"},
            {"author_id": bob, "content": "I'll write the release notes"},
        ],
    )
    seeded = fake_discord.messages_in(world.channel_id)
    fake_openai.queue_chat_replies(
        "- alice proposes shipping on Friday [m1]\n- bob agrees and writes the notes [m2, m3]\n"
        "- an invented point [m99]"
    )
    done = await tldr(fake_discord, world)

    assert done.deferred and not done.ephemeral
    [request] = fake_openai.calls("/chat/completions")
    assert request.model == bot.settings.summary_model
    transcript = request.json["messages"][-1]["content"]
    assert transcript.splitlines() == [
        "[m1] alice: Let's ship the release on Friday",
        "[m2] bob: Agreed, Friday works",
        "[m3] bob: I'll write the release notes",
    ]
    text = done.all_text()
    assert "**Participants:** bob (2), alice (1)" in text
    assert "alice proposes shipping on Friday" in text
    for message in seeded:
        assert f"(<{jump_url(world, world.channel_id, message)}>)" in text
    assert "[m99]" not in text and "- an invented point" in text  # the point stays, unlinked
    assert text.count("https://discord.com/channels/") == 3  # m99 does not exist: not linked
    # The output was moderated before it was posted.
    moderation = fake_openai.calls("/moderations")
    assert any("alice proposes shipping" in str(r.json["input"]) for r in moderation)
    assert fake_discord.requests_to("GET", HISTORY_READS)


async def test_since_reads_only_recent_messages(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    now = dt.datetime.now(dt.UTC)
    fake_discord.seed_history(
        world.channel_id,
        [
            {
                "author_id": world.member_id,
                "content": "old news from this morning",
                "timestamp": now - dt.timedelta(hours=3),
            },
            {
                "author_id": world.member_id,
                "content": "older than an hour",
                "timestamp": now - dt.timedelta(minutes=70),
            },
            {
                "author_id": world.member_id,
                "content": "fresh topic one",
                "timestamp": now - dt.timedelta(minutes=20),
            },
            {
                "author_id": world.member_id,
                "content": "fresh topic two",
                "timestamp": now - dt.timedelta(minutes=5),
            },
        ],
    )
    fake_openai.chat_reply = cite_everything
    done = await tldr(fake_discord, world, {"since": "1h"})
    sent = transcripts(fake_openai)
    assert "fresh topic one" in sent and "fresh topic two" in sent
    assert "old news" not in sent and "older than an hour" not in sent
    assert "TL;DR** of 2 messages" in done.all_text()


async def test_bad_since_is_refused_before_any_work(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await tldr(fake_discord, world, {"since": "yesterday"})
    assert done.ephemeral and not done.deferred
    assert "`yesterday` is not a duration" in done.all_text() and "1h30m" in done.all_text()
    assert not fake_discord.requests_to("GET", HISTORY_READS)
    assert not fake_openai.calls("/chat/completions")


async def test_bots_this_bot_and_empty_messages_are_skipped(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    other_bot = fake_discord.add_member(world.guild_id, name="helperbot", bot=True)
    image = fake_discord.add_attachment("cat.png", b"\x89PNG fake")
    fake_discord.seed_history(
        world.channel_id,
        [
            {"author_id": world.member_id, "content": "human point one"},
            {"author_id": other_bot, "content": "BOT SPAM from another bot"},
            {"author_id": fake_discord.bot_user_id, "content": "my own earlier TL;DR"},
            {"author_id": world.member_id, "content": "", "attachments": [image]},
            {"author_id": world.member_id, "content": "   "},
            {"author_id": world.moderator_id, "content": "human point two"},
        ],
    )
    fake_openai.chat_reply = cite_everything
    done = await tldr(fake_discord, world)
    sent = transcripts(fake_openai)
    assert sent.splitlines() == ["[m1] alice: human point one", "[m2] mod: human point two"]
    text = done.all_text()
    assert "3 bot or empty messages skipped" in text
    assert "helperbot" not in text and "FakeBot" not in text


async def test_works_in_threads(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    thread = fake_discord.add_channel(world.guild_id, "release-thread", type=11, parent_id=world.channel_id)
    await start_bot()
    fake_discord.seed_history(world.channel_id, [{"author_id": world.member_id, "content": "parent chatter"}])
    fake_discord.seed_history(thread, [{"author_id": world.member_id, "content": "thread decision"}])
    [message] = fake_discord.messages_in(thread)
    fake_openai.chat_reply = cite_everything
    done = await tldr(fake_discord, world, channel=thread)
    sent = transcripts(fake_openai)
    assert "thread decision" in sent and "parent chatter" not in sent
    assert jump_url(world, thread, message) in done.all_text()
    assert any(
        f"/channels/{thread}/messages" in r.path for r in fake_discord.requests_to("GET", HISTORY_READS)
    )


async def test_refused_without_read_message_history(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_discord.seed_history(
        world.channel_id, [{"author_id": world.moderator_id, "content": "secret plans"}]
    )
    done = await tldr(fake_discord, world, permissions=VIEW_CHANNEL | SEND_MESSAGES)
    assert done.ephemeral
    assert "You need the" in done.all_text() and "Read Message History" in done.all_text()
    assert not fake_discord.requests_to("GET", HISTORY_READS)
    assert not fake_openai.calls("/chat/completions")
    assert "secret plans" not in public_texts(fake_discord)


async def test_refused_without_view_channel(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await tldr(fake_discord, world, permissions=READ_MESSAGE_HISTORY | SEND_MESSAGES)
    assert done.ephemeral and "You need the" in done.all_text()
    assert not fake_openai.calls("/chat/completions")


async def test_empty_channel_has_nothing_to_summarise(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await tldr(fake_discord, world)
    assert "Nothing to summarise: this channel has no messages yet." in done.all_text()
    assert not fake_openai.calls("/chat/completions")


async def test_channel_of_only_bot_messages_has_nothing_to_summarise(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    other_bot = fake_discord.add_member(world.guild_id, name="helperbot", bot=True)
    fake_discord.seed_history(
        world.channel_id,
        [{"author_id": other_bot, "content": "beep"}, {"author_id": world.member_id, "content": ""}],
    )
    done = await tldr(fake_discord, world)
    assert (
        "Nothing to summarise: the last 2 messages here are only from bots or have no text."
        in done.all_text()
    )
    assert not fake_openai.calls("/chat/completions")


async def test_quiet_channel_has_nothing_to_summarise(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    now = dt.datetime.now(dt.UTC)
    fake_discord.seed_history(
        world.channel_id,
        [{"author_id": world.member_id, "content": "hours ago", "timestamp": now - dt.timedelta(hours=5)}],
    )
    done = await tldr(fake_discord, world, {"since": "30m"})
    assert "Nothing to summarise: nobody wrote anything in the last 30m." in done.all_text()
    assert not fake_openai.calls("/chat/completions")


async def test_private_summary_is_ephemeral(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_discord.seed_history(world.channel_id, [{"author_id": world.member_id, "content": "quiet idea"}])
    fake_openai.chat_reply = cite_everything
    done = await tldr(fake_discord, world, {"private": True})
    assert done.ephemeral
    assert "the team discussed the release" in done.all_text()
    posted = [
        m
        for m in fake_discord.messages_in(world.channel_id)
        if m["author"]["id"] == str(fake_discord.bot_user_id)
    ]
    assert posted == []


async def test_flagged_summary_is_not_posted(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_discord.seed_history(world.channel_id, [{"author_id": world.member_id, "content": "heated thread"}])
    fake_openai.queue_chat_replies("- alice said FLAGME things [m1]")
    done = await tldr(fake_discord, world)
    assert "flagged by moderation" in done.all_text()
    assert "FLAGME" not in public_texts(fake_discord)
    assert "alice said" not in done.all_text()


async def test_history_no_moderation_saw_is_screened_and_flagged_messages_never_reach_the_model(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    # Start-up catch-up is off in tests (conftest): the history below stands for messages it never read.
    await start_bot()
    fake_discord.seed_history(
        world.channel_id,
        [
            {"author_id": world.member_id, "content": "we ship on friday"},
            {"author_id": world.member_id, "content": "posted while offline FLAGME"},
            {"author_id": world.moderator_id, "content": "friday works"},
        ],
    )
    flagged = next(m for m in fake_discord.messages_in(world.channel_id) if "FLAGME" in m["content"])
    fake_openai.queue_chat_replies("- they agreed on friday [m1, m2]")
    done = await tldr(fake_discord, world)
    assert "they agreed on friday" in done.all_text(), done.describe()
    assert "1 message held back by moderation" in done.all_text()
    assert "we ship on friday" in transcripts(fake_openai) and "friday works" in transcripts(fake_openai)
    for request in fake_openai.calls("/chat/completions"):
        assert "FLAGME" not in str(request.json), "a flagged message reached the model"
    # Handed to channel moderation: the server's policy deleted it, on the verdict already paid for.
    await fake_discord.wait_until(lambda: int(flagged["id"]) in fake_discord.deleted_message_ids)
    moderated = [t for r in fake_openai.calls("/moderations") for t in moderation_texts(r.json)]
    assert moderated.count("posted while offline FLAGME") == 1


def moderation_texts(body: dict[str, Any]) -> list[str]:
    value = body.get("input")
    return [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)]


async def test_over_1000_messages_chunks_run_in_parallel_and_nothing_is_dropped(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    budget = 2000
    bot = await start_bot(tldr_max_messages=2000, tldr_chunk_tokens=budget, tldr_concurrency=4)
    bob = fake_discord.add_member(world.guild_id, name="bob")
    authors = [world.member_id, bob, world.moderator_id]
    contents = [f"note {i}: release item {i * 7919 % 1000} is ready" for i in range(1100)]
    fake_discord.seed_history(
        world.channel_id, [{"author_id": authors[i % 3], "content": c} for i, c in enumerate(contents)]
    )
    seeded = fake_discord.messages_in(world.channel_id)
    fake_openai.chat_reply = cite_everything
    fake_openai.chat_latency = 0.2
    done = await tldr(fake_discord, world, {"count": 1100})
    # A summary this long is sent in several messages: a pause between two is not its end.
    await done.wait_for(notes_shown)

    chunks = chunk_requests(fake_openai)
    assert len(chunks) >= 4, len(chunks)
    # Every message's content reached some chunk request.
    sent = transcripts(fake_openai)
    missing = [c for c in contents if c not in sent]
    assert missing == []
    # The chunk requests overlapped in time, and no more than TLDR_CONCURRENCY ran at once.
    overlapping = [
        (a, b) for a in chunks for b in chunks if a is not b and a.time < b.end_time and b.time < a.end_time
    ]
    assert overlapping, [(r.time, r.end_time) for r in chunks]
    most_at_once = max(sum(1 for r in chunks if r.time <= a.time < r.end_time) for a in chunks)
    assert 2 <= most_at_once <= 4
    # No request was over the token budget, chunks or merges.
    counter = TokenCounter(bot.settings.summary_model)
    for request in fake_openai.calls("/chat/completions"):
        tokens = sum(counter.count_message(m["content"]) for m in request.json["messages"]) + 3
        assert tokens <= budget
    merges = [r for r in fake_openai.calls("/chat/completions") if r not in chunks]
    assert merges and all(r.time >= max(c.end_time for c in chunks) for r in merges)
    text = done.all_text()
    assert jump_url(world, world.channel_id, seeded[0]) in text
    assert jump_url(world, world.channel_id, seeded[-1]) in text
    assert "TL;DR** of 1100 messages" in text and "alice (367)" in text and "bob (367)" in text
    assert f"read in {len(chunks)} parts summarised in parallel" in text
    assert all(len(m["content"]) <= 2000 for m in done.followups)


async def test_count_is_capped_by_the_setting(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    contents = [f"c{i}" for i in range(1010)]
    fake_discord.seed_history(
        world.channel_id, [{"author_id": world.member_id, "content": c} for c in contents]
    )
    fake_openai.chat_reply = cite_everything
    done = await tldr(fake_discord, world, {"count": 5000})
    await done.wait_for(notes_shown)  # the notes close the summary's last message
    sent = set(re.findall(r": (c\d+)$", transcripts(fake_openai), re.MULTILINE))
    assert sent == set(contents[10:])  # the newest 1000
    assert "count capped at 1000" in done.all_text()


def test_settings_keep_the_cap_at_least_1000(tmp_path: Path) -> None:
    base = {"DISCORD_TOKEN": "t", "OPENAI_API_KEY": "k", "DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}"}
    assert load_settings(base, env_file=None).tldr_max_messages == 1000
    assert load_settings({**base, "TLDR_MAX_MESSAGES": "5000"}, env_file=None).tldr_max_messages == 5000
    with pytest.raises(SettingsError) as caught:
        load_settings({**base, "TLDR_MAX_MESSAGES": "500", "TLDR_CHUNK_TOKENS": "10"}, env_file=None)
    assert any("TLDR_MAX_MESSAGES must be a whole number, at least 1000" in p for p in caught.value.problems)
    assert any("TLDR_CHUNK_TOKENS" in p for p in caught.value.problems)


async def test_a_failed_chunk_posts_nothing_and_says_why(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot(tldr_chunk_tokens=1000)
    contents = [f"item {i} needs review by the team" for i in range(300)]
    fake_discord.seed_history(
        world.channel_id, [{"author_id": world.member_id, "content": c} for c in contents]
    )
    fake_openai.chat_reply = cite_everything
    fake_openai.inject_insufficient_quota("/chat/completions", times=1)
    done = await tldr(fake_discord, world, {"count": 300})
    assert "no credit left" in done.all_text()
    assert "TL;DR" not in public_texts(fake_discord)

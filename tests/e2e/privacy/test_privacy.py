"""/forget me, the retention purge, and a whole run's logs holding no message text, token or key."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from bot.discord_io.client import OpenAIBot
from bot.ops.logs import formatter_for
from bot.storage.store import open_store
from testkit.discord import FakeDiscord, running_bot
from testkit.driver import answered, ask, run
from testkit.openai import FakeOpenAI
from tests.support.database import database_url
from tests.support.server import BotFactory, World, make_settings


async def count(bot: OpenAIBot, sql: str, *params: object) -> int:
    row = await bot.services.store.fetchone(sql, params)
    assert row is not None
    return int(row[0])


async def add_moderation_records(bot: OpenAIBot, world: World, user_id: int) -> None:
    now = time.time()
    async with bot.services.store.transaction() as db:
        cursor = await db.execute(
            "INSERT INTO moderation_actions (guild_id, channel_id, message_id, author_id, source, categories, "
            "scores, action, created_at) VALUES (?, ?, 1, ?, 'message', '[]', '{}', 'warn', ?) RETURNING id",
            (world.guild_id, world.channel_id, user_id, now),
        )
        action = await cursor.fetchone()
        await db.execute(
            "INSERT INTO moderation_strikes (guild_id, user_id, action_id, created_at) VALUES (?, ?, ?, ?)",
            (world.guild_id, user_id, action[0], now),
        )
        await db.execute(
            "INSERT INTO moderation_queue (guild_id, channel_id, message_id, subject, enqueued_at) "
            "VALUES (?, ?, 2, ?, ?)",
            (world.guild_id, world.channel_id, json.dumps({"author_id": user_id, "text": "x"}), now),
        )


async def test_forget_me_deletes_the_callers_data_and_counts_it(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await ask(fake_discord, world, "my secret plan")
    await ask(fake_discord, world, "more of it", channel=world.other_channel_id)
    await run(fake_discord, world, "ask", {"prompt": "the moderator's question"}, user=world.moderator_id)
    await add_moderation_records(bot, world, world.member_id)
    await add_moderation_records(bot, world, world.moderator_id)
    ledger = bot.services.ledger
    assert ledger is not None
    mine = await count(bot, "SELECT COUNT(*) FROM usage_events WHERE user_id = ?", world.member_id)
    server_before = await ledger.totals(world.guild_id, since=0)
    spent_before = await ledger.spent(world.guild_id, since=0, user_id=world.member_id)

    done = await run(fake_discord, world, "forget me")
    text = done.all_text()
    assert done.ephemeral
    assert "deleted 4 conversation turns" in text
    # Moderation is not undone (kept for MODERATION_RETENTION_DAYS), and the reply says so and for how long.
    assert "1 moderation record and 1 strike about you, for 90 days" in text
    assert "1 message of yours posted while moderation was unavailable is still waiting" in text
    assert f"{mine} usage records" in text and mine > 0

    assert await count(bot, "SELECT COUNT(*) FROM turns WHERE author_id = ?", world.member_id) == 0
    assert await count(bot, "SELECT COUNT(*) FROM turns WHERE content LIKE '%secret plan%'") == 0
    assert await count(bot, "SELECT COUNT(*) FROM turns") == 2  # the moderator's exchange stays
    assert await count(bot, "SELECT COUNT(*) FROM usage_events WHERE user_id = ?", world.member_id) == 0
    assert await count(bot, "SELECT COUNT(*) FROM usage_events WHERE user_hash IS NOT NULL") == mine
    for table, column in (("moderation_actions", "author_id"), ("moderation_strikes", "user_id")):
        assert await count(bot, f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", world.member_id) == 1  # noqa: S608
        assert await count(bot, f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", world.moderator_id) == 1  # noqa: S608
    # Both queued messages stay until the drain has judged them, which then deletes them.
    assert await count(bot, "SELECT COUNT(*) FROM moderation_queue") == 2
    # The server's totals keep the cost, and forgetting does not reset today's budget.
    assert await ledger.totals(world.guild_id, since=0) == server_before
    assert await ledger.spent(world.guild_id, since=0, user_id=world.member_id) == pytest.approx(spent_before)
    again = await run(fake_discord, world, "forget me")
    assert "0 conversation turns" in again.all_text() and "0 usage records" in again.all_text()


async def test_retention_purges_old_history_periodically(
    start_bot: BotFactory, fake_discord: FakeDiscord, world: World, tmp_path: Path
) -> None:
    store = await open_store(database_url(tmp_path))
    now = time.time()
    for age_days, content in ((10, "ancient"), (8, "old"), (1, "recent")):
        created = now - age_days * 86400
        await store.execute(
            "INSERT INTO turns (guild_id, channel_id, author_id, role, content, tokens, created_at) "
            "VALUES (?, ?, ?, 'user', ?, 1, ?)",
            (world.guild_id, world.channel_id, world.member_id, content, created),
        )
        await store.execute(
            "INSERT INTO usage_events (created_at, guild_id, user_id, command, kind, model, cost) "
            "VALUES (?, ?, ?, 'ask', 'chat', 'gpt-5-mini', 0.01)",
            (created, world.guild_id, world.member_id),
        )
    await store.close()
    bot = await start_bot(retention_days=7)
    for _ in range(250):  # the purge task runs at start-up, then every hour
        if await count(bot, "SELECT COUNT(*) FROM turns") == 1:
            break
        await asyncio.sleep(0.02)
    rows = await bot.services.store.fetchall("SELECT content FROM turns")
    assert [r[0] for r in rows] == ["recent"]
    assert await count(bot, "SELECT COUNT(*) FROM usage_events WHERE user_id IS NOT NULL") == 1
    assert await count(bot, "SELECT COUNT(*) FROM usage_events") == 3  # costs stay in the totals


class Capture(logging.Handler):
    """Every record as the bot's LOG_FORMAT writes it (bot/ops/logs.py), with its exception."""

    def __init__(self, log_format: str) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter_for(log_format))
        self.lines: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.exc_info and record.exc_info[0] is not None and "Traceback" not in text:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append((record.name, record.levelno, text))


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_message_text_token_or_key_reaches_the_logs(tmp_path: Path, log_format: str) -> None:
    sentinel = "ZEBRA-SENTINEL-4711"
    token = "discord-token-SENTINEL-abcdefghijklmnop"
    key = "sk-proj-SENTINEL-key-0123456789abcdef"
    capture = Capture(log_format)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        async with FakeDiscord(token=token) as fake, FakeOpenAI(api_key=key) as openai_fake:
            guild = fake.add_guild("Sentinel Guild")
            channel = fake.add_channel(guild, "general")
            user = fake.add_member(guild, name="alice")
            settings = make_settings(tmp_path, openai_fake, discord_token=token)
            bot = OpenAIBot(settings, guild_ready_timeout=0.05)
            async with running_bot(fake, bot):
                openai_fake.queue_chat_replies(f"echo {sentinel}")
                for name, options in (
                    ("ask", {"prompt": f"please remember {sentinel}"}),
                    ("ask", {"prompt": f"FLAGME {sentinel}"}),
                    ("usage", {}),
                    ("forget me", {}),
                ):
                    interaction = await fake.invoke(
                        name, options, guild_id=guild, channel_id=channel, user_id=user
                    )
                    await interaction.wait_done(settle=0.2)
                await fake.post_message(channel, user, f"hey {sentinel}", mentions_bot=True)
                await fake.wait_until(lambda: len(fake.messages_in(channel)) >= 2)
                openai_fake.inject_insufficient_quota("/chat/completions")
                interaction = await fake.invoke(
                    "ask", {"prompt": f"broke {sentinel}"}, guild_id=guild, channel_id=channel, user_id=user
                )
                await interaction.wait_done(settle=0.2)
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
    ours = ("bot", "cogs")
    checked = [
        text for name, level, text in capture.lines if level >= logging.INFO or name.split(".")[0] in ours
    ]
    assert len(checked) > 10  # the run did log
    # Canary: the text did flow through logging (the libraries' own DEBUG payloads), so the grep can see it.
    assert any(sentinel in text for _, _, text in capture.lines)
    for secret in (sentinel, token, key):
        leaks = [text for text in checked if secret in text]
        assert not leaks, f"{secret!r} reached the logs: {leaks[:3]}"
    if log_format == "json":
        for _, _, text in capture.lines:
            line = json.loads(text)  # one object per line, its exception inside it
            assert {
                "time",
                "level",
                "logger",
                "event",
                "guild",
                "channel",
                "command",
                "latency",
            } <= line.keys()


def on_disk(tmp_path: Path) -> bytes:
    """The raw bytes of the database and its WAL and shared-memory files, as a disk reader would see them."""
    return b"".join(
        (tmp_path / name).read_bytes()
        for name in ("bot.db", "bot.db-wal", "bot.db-shm")
        if (tmp_path / name).exists()
    )


@pytest.mark.sqlite_only(
    "searches the bytes of bot.db and its WAL; PostgreSQL keeps dead tuples until vacuumed, docs/privacy.md"
)
async def test_forgotten_texts_are_gone_from_the_files_on_disk(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, tmp_path: Path
) -> None:
    forgotten_by_me = ["QUESTION-MARMOT-7781", "ANSWER-MARMOT-7781"]
    forgotten_by_channel = ["QUESTION-OTTER-4410", "ANSWER-OTTER-4410"]
    purged = ["QUESTION-WOMBAT-9023", "ANSWER-WOMBAT-9023"]
    kept = ["QUESTION-HERON-5532", "ANSWER-HERON-5532"]
    fake_openai.queue_chat_replies(forgotten_by_me[1])
    await ask(fake_discord, world, forgotten_by_me[0])
    for (question, answer), channel in (
        (forgotten_by_channel, world.other_channel_id),
        (purged, world.channel_id),
        (kept, world.channel_id),
    ):
        fake_openai.queue_chat_replies(answer)
        interaction = await fake_discord.invoke(
            "ask",
            {"prompt": question},
            guild_id=world.guild_id,
            channel_id=channel,
            user_id=world.moderator_id,
        )
        # The exchange is stored before the answer shows finished: wait for that, not a quiet moment.
        await interaction.wait_for(answered, timeout=10)
        await interaction.wait_done(timeout=10, settle=0.2)
    # Canary: the texts are on disk before, so the search below could see them.
    before = on_disk(tmp_path)
    for text in forgotten_by_me + forgotten_by_channel + purged + kept:
        assert text.encode() in before, text

    await bot.services.store.execute("UPDATE turns SET created_at = 0 WHERE content LIKE '%WOMBAT%'")
    # An answer's record for its buttons ages with it.
    await bot.services.store.execute("UPDATE chat_answers SET created_at = 0 WHERE prompt LIKE '%WOMBAT%'")
    await run(fake_discord, world, "forget me")
    channel_done = await (
        await fake_discord.invoke(
            "forget channel",
            guild_id=world.guild_id,
            channel_id=world.other_channel_id,
            user_id=world.moderator_id,
        )
    ).wait_done()
    assert "Forgot 2 turns" in channel_done.all_text()
    privacy = bot.services.privacy
    assert privacy is not None
    report = await privacy.purge_expired(retention_days=1)
    assert report.rows("turns") == 2

    after = on_disk(tmp_path)
    # Some SQLite builds zero freed space by default (Debian's), others do not: the store asks for it.
    secure = await bot.services.store.fetchone("PRAGMA secure_delete")
    assert secure is not None and secure[0] == 1
    for text in forgotten_by_me + forgotten_by_channel + purged:
        assert text.encode() not in after, f"{text} is still readable on disk"
    for text in kept:
        assert text.encode() in after, text

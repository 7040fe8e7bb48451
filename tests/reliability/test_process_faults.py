"""Process and database faults: kill -9 in a burst of writes, SIGTERM with work in flight, a full or
read-only database. The crash tests run the real runner in a child process against the fakes."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord, FakeInteraction
from testkit.driver import answer_text, answered, ask_settled, invoke_ask
from testkit.openai import FakeOpenAI
from tests.reliability.helpers import (
    EPHEMERAL,
    assert_next_ask_works,
    integrity_check,
    moderation_inputs,
    turns,
)
from tests.support.database import database_url, query
from tests.support.server import BotFactory, World

ROOT = Path(__file__).resolve().parents[2]


class ChildBot:
    """`bot.ops.runner.serve` in a child process (tests/reliability/child_bot.py), against the fakes."""

    def __init__(
        self, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, tmp_path: Path, **env: str
    ) -> None:
        self.fake = fake_discord
        self.db_url = database_url(tmp_path / "child")
        self.log_path = tmp_path / "child.log"
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "FAKE_DISCORD_PORT": str(fake_discord.port),
            "DISCORD_TOKEN": FakeDiscord.DEFAULT_TOKEN,
            "OPENAI_API_KEY": fake_openai.api_key,
            "OPENAI_BASE_URL": fake_openai.base_url,
            "DATABASE_URL": self.db_url,
            "STREAM_EDIT_INTERVAL": "0.05",
            "OPENAI_TIMEOUT": "5",
            "USER_REQUESTS_PER_MINUTE": "100000",
            "USER_BURST": "100000",
            "SERVER_MAX_CONCURRENT_JOBS": "64",
            "SERVER_QUEUE_SIZE": "1000",
            "USER_DAILY_BUDGET": "1000",
            "SERVER_MONTHLY_BUDGET": "100000",
            "LOG_LEVEL": "INFO",
            **env,
        }
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        identifies = self.fake.identify_count
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.reliability.child_bot",
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        try:
            await self.fake.wait_until(
                lambda: self.fake.identify_count > identifies and self.fake.connected and self.ready(),
                timeout=20,
                what="the child bot to connect",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log()}") from None

    def ready(self) -> bool:
        return b"connected to Gateway" in self.log_path.read_bytes() or self.fake.sync_count > 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    async def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 15) -> int:  # noqa: ASYNC109
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def child(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, tmp_path: Path
) -> AsyncIterator[ChildBot]:
    bots: list[ChildBot] = []

    def make(**env: str) -> ChildBot:
        bot = ChildBot(fake_discord, fake_openai, tmp_path, **env)
        bots.append(bot)
        return bot

    holder = make()
    holder.make = make  # type: ignore[attr-defined]
    try:
        yield holder
    finally:
        for bot in bots:
            await bot.stop()


def db_turns(url: str) -> list[tuple[str, str]]:
    return [(r, c) for r, c in query(url, "SELECT role, content FROM turns ORDER BY id")]


def final_answer(fi: FakeInteraction) -> str | None:
    """The answer the user was shown as finished (no streaming cursor), else None."""
    if fi.original is None or fi.loading:
        return None
    content = answer_text(fi.original.get("content"))
    return content if content.startswith("Echo: ") and not content.endswith("▌") else None


def db_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    return query(url, sql)


async def test_kill_9_loses_no_acknowledged_turn_and_the_moderation_queue_resumes(
    child: ChildBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    # A long retry interval: the queue is only drained at start-up, i.e. by the restarted process.
    child.env["MODERATION_RETRY_INTERVAL"] = "60"
    await child.start()

    # 1. A moderation outage: channel messages wait in the durable queue.
    fake_openai.inject("/moderations", 503, times=-1)
    posted = [
        await fake_discord.post_message(
            world.other_channel_id, world.member_id, f"message {i}" + (" FLAGME" if i % 5 == 0 else "")
        )
        for i in range(20)
    ]
    await fake_discord.wait_until(
        lambda: len(db_rows(child.db_url, "SELECT id FROM moderation_queue")) == len(posted), timeout=10
    )
    fake_openai.clear_injections()

    # 2. A burst of /ask writes, killed mid-way.
    fake_openai.stream_chunk_chars = 4
    fake_openai.stream_chunk_delay = 0.05
    burst: list[FakeInteraction] = []

    async def send(count: int) -> None:
        for _ in range(count):
            burst.append(await invoke_ask(fake_discord, world, f"burst question {len(burst)}"))
            await asyncio.sleep(0.01)

    # The first 20 answers stream at once; the next 40 chat requests hang past the kill, so it lands mid-burst
    # however the machine's load bunches the answers (timing alone let all 60 finish first on a loaded CI).
    await send(20)
    fake_openai.inject_hang("/chat/completions", 30, times=40)
    await send(40)
    await fake_discord.wait_until(lambda: sum(final_answer(fi) is not None for fi in burst) >= 15, timeout=20)
    await child.signal(signal.SIGKILL)
    assert await child.wait() == -signal.SIGKILL
    fake_openai.clear_injections()
    acknowledged = {
        fi.payload["data"]["options"][0]["value"]: final_answer(fi) for fi in burst if final_answer(fi)
    }
    assert 15 <= len(acknowledged) < len(burst), "the kill must land mid-burst"

    assert integrity_check(child.db_url) == "ok"
    stored = db_turns(child.db_url)
    for prompt, answer in acknowledged.items():
        assert ("user", prompt) in stored and ("assistant", answer) in stored, prompt
    roles = [role for role, _ in stored]
    assert roles == ["user", "assistant"] * (len(roles) // 2), "exchanges are stored whole or not at all"
    assert len(db_rows(child.db_url, "SELECT id FROM moderation_queue")) == len(posted)

    # 3. The restarted bot drains the queue, and the channel works.
    restarted = child.make(MODERATION_RETRY_INTERVAL="60")  # type: ignore[attr-defined]
    await restarted.start()
    await fake_discord.wait_until(
        lambda: db_rows(child.db_url, "SELECT id FROM moderation_queue") == [], timeout=10, what="the queue"
    )
    flagged = {int(m["id"]) for m in posted if "FLAGME" in m["content"]}
    acted = {row[0] for row in db_rows(child.db_url, "SELECT message_id FROM moderation_actions")}
    assert acted == flagged
    moderated = {text for r in fake_openai.calls("/moderations") for text in moderation_inputs(r.json)}
    assert {m["content"] for m in posted} <= moderated, "every queued message was moderated"

    fi = await invoke_ask(fake_discord, world, "after the crash")
    await fi.wait_for(answered, timeout=10)  # a pause mid-stream is not the end of the answer
    await fi.wait_done(timeout=10, settle=0.2)
    assert final_answer(fi) == "Echo: after the crash"
    after = db_turns(child.db_url)
    assert after[: len(stored)] == stored and after[-1] == ("assistant", "Echo: after the crash")
    await restarted.signal(signal.SIGTERM)
    assert await restarted.wait() == 0


async def test_sigterm_finishes_what_it_can_tells_the_rest_and_refuses_new_work(
    child: ChildBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    child.env["SHUTDOWN_GRACE"] = "1.5"
    await child.start()
    fake_openai.stream_chunk_chars = 3

    fake_openai.stream_chunk_delay = 0.04  # "short one" streams in ~0.3 s, "long one..." in ~8 s
    short = await invoke_ask(fake_discord, world, "short one")
    long = await invoke_ask(fake_discord, world, "long one " + "word " * 120)
    await short.wait_for(lambda fi: len(fi.edits()) >= 1)
    await long.wait_for(lambda fi: len(fi.edits()) >= 1)
    await child.signal(signal.SIGTERM)
    await asyncio.sleep(0.1)
    late = await invoke_ask(fake_discord, world, "too late")
    assert await child.wait() == 0, child.log()

    assert final_answer(short) == "Echo: short one"
    assert "restarting" in long.all_text() and "try again" in long.all_text(), long.describe()
    assert long.followups[-1]["flags"] & EPHEMERAL and "▌" not in long.all_text()
    await late.wait_done(timeout=5)
    assert "restarting" in late.all_text() and late.responses[0]["json"]["data"]["flags"] & EPHEMERAL
    assert db_turns(child.db_url) == [("user", "short one"), ("assistant", "Echo: short one")]
    assert integrity_check(child.db_url) == "ok"


async def test_drain_in_process_waits_for_mention_replies(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(shutdown_grace=5.0)
    fake_openai.stream_chunk_chars = 3
    fake_openai.stream_chunk_delay = 0.03
    message = await fake_discord.post_message(
        world.channel_id, world.member_id, "reply slowly", mentions_bot=True
    )
    await fake_discord.wait_until(lambda: len(bot.in_flight) > 0)
    await bot.close()
    replies = [
        m
        for m in fake_discord.messages_in(world.channel_id)
        if (m.get("message_reference") or {}).get("message_id") == message["id"]
    ]
    assert [m["content"] for m in replies] == ["Echo: reply slowly"]


async def test_drain_cuts_a_slow_mention_reply_cleanly(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(shutdown_grace=0.3)
    fake_openai.stream_chunk_chars = 2
    fake_openai.stream_chunk_delay = 0.1
    message = await fake_discord.post_message(
        world.channel_id, world.member_id, "a long slow reply please", mentions_bot=True
    )
    await fake_discord.wait_until(
        lambda: any(
            (m.get("message_reference") or {}).get("message_id") == message["id"]
            for m in fake_discord.messages_in(world.channel_id)
        )
    )
    await bot.close()
    replies = [
        m["content"]
        for m in fake_discord.messages_in(world.channel_id)
        if (m.get("message_reference") or {}).get("message_id") == message["id"]
    ]
    assert len(replies) == 1 and "restarting" in replies[0], replies  # the partial answer was removed
    assert db_turns(bot.settings.database_url) == [], "nothing half-done was stored"


# -- the database fails under a running bot ------------------------------------------------------


async def fill_the_disk(bot: OpenAIBot) -> None:
    """SQLITE_FULL from now on for anything that needs a new page, as on a full disk."""
    writer = bot.services.store._writer  # noqa: SLF001 - the test reaches for the one writer connection
    await writer.execute("CREATE TABLE IF NOT EXISTS disk_filler (blob BLOB)")
    pages = await (await writer.execute("PRAGMA page_count")).fetchone()
    await writer.execute(f"PRAGMA max_page_count = {pages[0] + 2}")
    # Fill every free page so that any insert needs a page the "disk" cannot give.
    for size in (4096, 512, 64, 8, 1):
        while True:
            try:
                await writer.execute("INSERT INTO disk_filler VALUES (zeroblob(?))", (size,))
            except sqlite3.OperationalError:
                break


@pytest.mark.sqlite_only("fills SQLite's file (max_page_count) or makes its connection query_only")
@pytest.mark.parametrize("fault", ["disk full", "read-only"])
async def test_unwritable_database_gives_a_clear_error_and_the_bot_keeps_answering(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, fault: str
) -> None:
    # The bot has been running a while (lazily created state such as the usage pseudonym key exists).
    fake_openai.queue_chat_replies("warm-up")
    await ask_settled(fake_discord, world, "warm-up", channel=world.other_channel_id)
    writer = bot.services.store._writer  # noqa: SLF001
    if fault == "disk full":
        await fill_the_disk(bot)
    else:
        await writer.execute("PRAGMA query_only = ON")
    long_prompt = "a question long enough to need new pages " * 100
    fake_openai.queue_chat_replies("the answer still arrives")
    done = await ask_settled(fake_discord, world, long_prompt)
    assert done.original is not None
    assert answer_text(done.original["content"]).startswith("the answer still arrives")
    assert "could not save this exchange" in done.original["content"]

    persona = await fake_discord.invoke(
        "persona set",
        {"text": "You are a pirate. " * 80},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.moderator_id,
    )
    await persona.wait_done(timeout=10, settle=0.2)
    if fault == "read-only":
        assert "database cannot be written" in persona.all_text(), persona.describe()
    else:
        # max_page_count cannot fill the page a small row lands in: either outcome is clear and safe.
        assert "database cannot be written" in persona.all_text() or "Persona set" in persona.all_text()

    message = await fake_discord.post_message(
        world.channel_id, world.member_id, "still alive?", mentions_bot=True
    )
    await fake_discord.wait_until(
        lambda: any(
            (m.get("message_reference") or {}).get("message_id") == message["id"]
            for m in fake_discord.messages_in(world.channel_id)
        )
    )
    await fake_discord.wait_until(lambda: len(bot.in_flight) == 0, what="the mention reply to finish")
    stored = await turns(bot, world.channel_id)
    assert ("user", long_prompt) not in stored
    if fault == "read-only":
        assert stored == []

    if fault == "disk full":
        await writer.execute("PRAGMA max_page_count = 1073741823")
    else:
        await writer.execute("PRAGMA query_only = OFF")
    assert await bot.services.store.integrity_ok()
    await assert_next_ask_works(bot, fake_discord, fake_openai, world)


# -- catch-up from Discord after a crash ----------------------------------------------------------


def texts_moderated(fake_openai: FakeOpenAI) -> list[str]:
    return [text for r in fake_openai.calls("/moderations") for text in moderation_inputs(r.json)]


async def test_kill_9_mid_moderation_then_restart_acts_on_the_lost_messages_and_nothing_twice(
    child: ChildBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await child.start()
    # Acted on before the crash: a clean verdict (the watermark passes it) and a flagged one.
    clean = await fake_discord.post_message(world.channel_id, world.member_id, "a clean hello")
    early = await fake_discord.post_message(world.channel_id, world.member_id, "early FLAGME")
    await fake_discord.wait_until(lambda: int(early["id"]) in fake_discord.deleted_message_ids, timeout=10)
    await fake_discord.wait_until(
        lambda: (
            db_rows(child.db_url, "SELECT message_id FROM moderation_watermarks") == [(int(early["id"]),)]
        ),
        timeout=5,
        what="the watermark's group commit",
    )

    # The Moderation endpoint hangs; the bot dies with these messages' verdicts in flight.
    fake_openai.inject_hang("/moderations", seconds=3, times=-1)
    lost = [
        await fake_discord.post_message(world.channel_id, world.member_id, f"lost {i} FLAGME")
        for i in range(3)
    ]
    await fake_discord.wait_until(
        lambda: {f"lost {i} FLAGME" for i in range(3)} <= set(texts_moderated(fake_openai)), timeout=5
    )
    await child.signal(signal.SIGKILL)
    assert await child.wait() == -signal.SIGKILL
    fake_openai.clear_injections()
    assert not {int(m["id"]) for m in lost} & fake_discord.deleted_message_ids
    assert db_rows(child.db_url, "SELECT id FROM moderation_queue") == [], "nothing reached the durable queue"

    restarted = child.make()  # type: ignore[attr-defined]
    await restarted.start()
    for message in lost:
        await fake_discord.wait_until(
            lambda m=message: int(m["id"]) in fake_discord.deleted_message_ids,
            timeout=10,
            what="a lost message",
        )
    await asyncio.sleep(0.3)  # time for a second action, if there were one
    acted = sorted(row[0] for row in db_rows(child.db_url, "SELECT message_id FROM moderation_actions"))
    assert acted == sorted([int(early["id"])] + [int(m["id"]) for m in lost])
    moderated = texts_moderated(fake_openai)
    assert moderated.count("a clean hello") == 1 and moderated.count("early FLAGME") == 1
    assert int(clean["id"]) not in fake_discord.deleted_message_ids
    warnings = [dm for dm in fake_discord.dms if dm["recipient_id"] == world.member_id]
    assert len(warnings) == 4, "one warning per flagged message, none repeated"
    await restarted.signal(signal.SIGTERM)
    assert await restarted.wait() == 0


async def test_kill_9_mid_stream_then_restart_tells_the_asker_the_answer_was_interrupted(
    child: ChildBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await child.start()
    fake_openai.stream_chunk_chars = 3
    fake_openai.stream_chunk_delay = 0.05
    cut = await invoke_ask(fake_discord, world, "a long one " + "word " * 100)
    await cut.wait_for(lambda fi: len(fi.edits()) >= 1 and "▌" in (fi.original or {}).get("content", ""))
    await child.signal(signal.SIGKILL)
    assert await child.wait() == -signal.SIGKILL
    assert cut.original is not None and "▌" in cut.original["content"]

    restarted = child.make()  # type: ignore[attr-defined]
    await restarted.start()
    await cut.wait_for(lambda fi: "interrupted" in (fi.original or {}).get("content", ""), timeout=5)
    assert "ask again" in cut.original["content"] and "▌" not in cut.original["content"]
    assert db_rows(child.db_url, "SELECT id FROM inflight_answers") == []

    fake_openai.stream_chunk_delay = 0.0
    done = await invoke_ask(fake_discord, world, "after the restart")
    await done.wait_for(answered, timeout=10)  # a pause mid-stream is not the end of the answer
    await done.wait_done(timeout=10, settle=0.2)
    assert final_answer(done) == "Echo: after the restart"
    await restarted.signal(signal.SIGTERM)
    assert await restarted.wait() == 0
    assert db_rows(child.db_url, "SELECT id FROM inflight_answers") == [], "a finished answer leaves no row"

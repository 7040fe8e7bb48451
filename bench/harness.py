"""The bench world: the fake Discord and fake OpenAI in this process, the real bot in a child process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.discord import FakeDiscord
from testkit.driver import Seat
from testkit.openai import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    """One row of the table: a measured value beside its baseline from the same run."""

    section: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    ok: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


@dataclass
class Upstream:
    """How the fake OpenAI behaves: latencies in seconds and the streamed answer's shape."""

    moderation_latency: float = 0.1
    chat_ttft: float = 0.3  # the fake waits this long before its first byte
    chunk_delay: float = 0.02  # then one chunk every chunk_delay
    chunk_chars: int = 8
    answer_chars: int = 240

    @property
    def round_trip(self) -> float:
        """One /ask's upstream time: prompt moderation, the whole stream, answer moderation."""
        chunks = -(-self.answer_chars // self.chunk_chars)
        return 2 * self.moderation_latency + self.chat_ttft + chunks * self.chunk_delay

    @property
    def first_token(self) -> float:
        """The upstream's own time to first token: headers after chat_ttft, first text one chunk later."""
        return self.chat_ttft + self.chunk_delay

    def apply(self, fake: FakeOpenAI) -> None:
        fake.moderation_latency = self.moderation_latency
        fake.chat_latency = self.chat_ttft
        fake.stream_chunk_delay = self.chunk_delay
        fake.stream_chunk_chars = self.chunk_chars
        length = self.answer_chars

        def reply(body: dict[str, Any]) -> str:
            tag = ""
            for message in reversed(body.get("messages") or []):
                if message.get("role") == "user" and isinstance(message.get("content"), str):
                    tag = message["content"].split(" ", 1)[0]
                    break
            text = f"{tag} answers: " + "the quick brown fox jumps over the lazy dog " * (length // 40 + 1)
            return text[:length].rstrip()

        fake.chat_reply = reply


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def hwm_mb(pid: int) -> float:
    """Peak resident set size of a process so far (VmHWM), in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return math.nan


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used, all its threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class BenchWorld:
    """A guild with channels and members in the fake Discord, the fake OpenAI, and the bot process.

    With `shards`, the fake Discord has that many shards and one guild on each (the channels and members
    spread over them), and `process_shards` lists the bot processes: one per entry, each running
    SHARD_COUNT=`shards` with that entry as its SHARD_IDS, all on `settings`' DATABASE_URL (PostgreSQL).
    """

    upstream: Upstream = field(default_factory=Upstream)
    settings: dict[str, Any] = field(default_factory=dict)
    channels: int = 20
    members: int = 200
    bare: bool = False  # a plain discord.py client instead of the bot (the memory baseline)
    # bench/floor_bot.py instead of the bot (the CPU baseline): True for /ask's, "channel" for channel moderation's
    floor: bool | str = False
    tweaks: dict[str, Any] = field(default_factory=dict)  # service attributes set once the bot is up
    heartbeat_ms: int | None = None  # the gateway's heartbeat interval (Discord's: 41,250 ms)
    # (base URL, key) of an OpenAI the bot uses instead of this process's fake (a fake in another process)
    openai_endpoint: tuple[str, str] | None = None
    shards: int = 0  # 0: an unsharded bot and fake Discord
    process_shards: tuple[tuple[int, ...], ...] = ()  # the shards of each bot process (default: all in one)
    discord: FakeDiscord = field(init=False)
    openai: FakeOpenAI = field(init=False)
    guild_id: int = field(init=False, default=0)
    channel_ids: list[int] = field(init=False, default_factory=list)
    member_ids: list[int] = field(init=False, default_factory=list)
    # (guild, channel ids, member ids): one guild, or one on each shard
    guilds: list[tuple[int, list[int], list[int]]] = field(init=False, default_factory=list)
    processes: list[asyncio.subprocess.Process] = field(init=False, default_factory=list)
    process_shards_started: list[tuple[int, ...]] = field(init=False, default_factory=list)
    _tmp: str = field(init=False, default="")
    _logs: list[Any] = field(init=False, default_factory=list)

    async def __aenter__(self) -> BenchWorld:
        self._tmp = tempfile.mkdtemp(prefix="bench-")
        self.discord = FakeDiscord(shard_count=max(1, self.shards))
        self.openai = FakeOpenAI()
        await self.discord.start()
        await self.openai.start()
        self.upstream.apply(self.openai)
        if self.heartbeat_ms is not None:
            self.discord.heartbeat_interval_ms = self.heartbeat_ms
        count = max(1, self.shards)
        for shard in range(count):
            guild = self.discord.add_guild("Bench Guild", shard=shard if self.shards else None)
            channels = [self.discord.add_channel(guild, f"c{i}") for i in range(self.channels // count)]
            members = [self.discord.add_member(guild, name=f"u{i}") for i in range(self.members // count)]
            self.guilds.append((guild, channels, members))
        self.guild_id, self.channel_ids, self.member_ids = self.guilds[0]
        try:
            for shards in self.process_shards or ((),):
                await self._spawn(shards)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    def seat(self, index: int) -> Seat:
        """Where the `index`-th /ask goes: consecutive asks go to consecutive guilds (so to every shard's
        process alike), then to the guild's channels and members in turn."""
        guild, channels, members = self.guilds[index % len(self.guilds)]
        turn = index // len(self.guilds)
        return Seat(guild, channels[turn % len(channels)], members[turn % len(members)])

    async def _spawn(self, shards: tuple[int, ...] = ()) -> None:
        settings = {
            "discord_token": FakeDiscord.DEFAULT_TOKEN,
            "openai_api_key": self.openai_endpoint[1] if self.openai_endpoint else self.openai.api_key,
            "openai_base_url": self.openai_endpoint[0] if self.openai_endpoint else self.openai.base_url,
            "database_url": f"sqlite:///{self._tmp}/bot.db",
            "log_level": "WARNING",
            # One guild stands for many servers here: its per-server and per-user limits are lifted so
            # the figures measure the bot's own cost, not its admission queue.
            "server_max_concurrent_jobs": 100_000,
            "server_queue_size": 100_000,
            "user_requests_per_minute": 100_000.0,
            "user_burst": 100_000,
            "user_daily_budget": 1_000_000.0,
            "server_monthly_budget": 1_000_000.0,
            **self.settings,
        }
        if self.shards:
            settings["shard_count"] = self.shards
            settings["shard_ids"] = list(shards or range(self.shards))
        config = {
            "discord_url": self.discord.base_url,
            "gateway_url": f"ws://127.0.0.1:{self.discord.port}/gateway",
            "token": FakeDiscord.DEFAULT_TOKEN,
            "settings": settings,
            "bare": self.bare,
            "floor": self.floor,
            "tweaks": self.tweaks,
        }
        log = self._open_log(len(self.processes))
        self._logs.append(log)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.botproc",
            json.dumps(config),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.processes.append(process)
        self.process_shards_started.append(tuple(settings.get("shard_ids", ())))
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
        except TimeoutError:
            line = b""
        if line.strip() != b"READY":
            raise RuntimeError(f"the bot did not start:\n{self.bot_log()[-3000:]}")

    def _log_path(self, index: int) -> Path:
        return Path(self._tmp) / ("bot.log" if index == 0 else f"bot{index}.log")

    def _open_log(self, index: int) -> Any:
        return open(self._log_path(index), "wb")  # closed in __aexit__

    def bot_log(self) -> str:
        paths = [self._log_path(i) for i in range(max(1, len(self.processes)))]
        return "".join(path.read_text(errors="replace") for path in paths if path.exists())

    @property
    def process(self) -> asyncio.subprocess.Process | None:
        """The (first) bot process."""
        return self.processes[0] if self.processes else None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def cpu_seconds(self) -> float:
        """CPU time of every bot process together."""
        return sum(self.process_cpu_seconds())

    def process_cpu_seconds(self) -> list[float]:
        """CPU time of each bot process, in start order."""
        return [cpu_seconds(p.pid) for p in self.processes]

    async def __aexit__(self, *exc: object) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        await self.openai.close()
        await self.discord.close()
        for log in self._logs:
            log.close()
        with contextlib.suppress(OSError):
            shutil.rmtree(self._tmp)

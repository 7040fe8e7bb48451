"""A cluster of real bot processes holding disjoint shards of one database, against the fakes in this process.

    async with start_cluster(tmp_path) as cluster:          # shard count 2, processes holding [0] and [1]
        done = await cluster.ask(1, "hello")                 # /ask in the guild on shard 1, waited for
        assert cluster.answered_by(done) is cluster.process_for(1)
        await cluster.processes[1].kill()                    # kill -9 (or .terminate(): SIGTERM, drains)
        await cluster.restart(1)                             # the same shards and settings again

Each process is `tests/reliability/child_bot.py`, i.e. the real `bot.ops.runner.serve`, with SHARD_COUNT and
its own SHARD_IDS; every process shares the fake Discord (one gateway session per shard), the fake OpenAI and
one DATABASE_URL (this test's PostgreSQL database; cluster tests are `postgresql_only`). Each process's
SYSTEM_PROMPT ends with its own marker, so the chat request behind an answer names the process that made it.
The fake Discord has a guild (with a channel and a member) on every shard: `cluster.seats[shard]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.discord import FakeDiscord, FakeInteraction
from testkit.driver import Seat, ask, invoke_ask
from testkit.openai import FakeOpenAI
from tests.support.database import database_url, query

ROOT = Path(__file__).resolve().parents[2]
BASE_PROMPT = "You are a helpful assistant in a Discord server."
# Generous for a loaded 2-core machine: a child's start is ~1 s when idle.
START_TIMEOUT = 30.0

# What every process runs with unless the test says otherwise: fast streaming and limits that stay out of
# the way (a test of a shared budget or rate sets its own).
DEFAULT_ENV: dict[str, str] = {
    "STREAM_EDIT_INTERVAL": "0.05",
    "OPENAI_TIMEOUT": "5",
    "USER_REQUESTS_PER_MINUTE": "100000",
    "USER_BURST": "100000",
    "SERVER_MAX_CONCURRENT_JOBS": "64",
    "SERVER_QUEUE_SIZE": "1000",
    "USER_DAILY_BUDGET": "1000",
    "SERVER_MONTHLY_BUDGET": "100000",
    "SHUTDOWN_GRACE": "2",
    "LOG_LEVEL": "INFO",
}


@dataclass
class BotProcess:
    """One bot process of the cluster: its shards, environment, child process and output files."""

    name: str
    shards: tuple[int, ...]
    env: dict[str, str]
    folder: Path
    fake: FakeDiscord
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def marker(self) -> str:
        """The text its SYSTEM_PROMPT ends with: names this process in every chat request it makes."""
        return f"[cluster process {self.name}]"

    @property
    def stdout_path(self) -> Path:
        return self.folder / f"{self.name}.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.folder / f"{self.name}.stderr"

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        """Everything it logged (the bot logs to stderr), every start of it."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return f"--- {self.name} (shards {list(self.shards)}) stderr ---\n{self.stderr()[-chars:]}"

    async def spawn(self) -> None:
        """Start the child process (returns at once; `wait_connected` waits for its shards)."""
        assert not self.running, f"{self.name} is already running"
        self.starts += 1
        banner = f"\n===== start {self.starts} =====\n".encode()
        for path in (self.stdout_path, self.stderr_path):
            with path.open("ab") as out:
                out.write(banner)
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.reliability.child_bot",
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=err,
            )

    async def wait_connected(self, identified_before: dict[int, str | None]) -> None:
        """Until each of its shards has a new session that got READY and its guilds, and the socket is up."""

        def connected() -> bool:
            for shard in self.shards:
                session = self.fake.sessions.get(shard)
                if session is None or session.session_id == identified_before.get(shard):
                    return False
                if not session.ready.is_set() or not self.fake.shard_connected(shard):
                    return False
            return True

        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while not connected():
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}\n{self.log_tail()}")
            if loop.time() > deadline:
                raise AssertionError(f"{self.name} did not connect in {START_TIMEOUT}s\n{self.log_tail()}")
            await asyncio.sleep(0.02)

    async def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 15) -> int:  # noqa: ASYNC109
        """Its exit status (negative: the signal that ended it)."""
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name} still running after {timeout}s\n{self.log_tail()}") from None

    async def terminate(self, timeout: float = 15) -> int:  # noqa: ASYNC109
        """SIGTERM (it drains its own work and exits) and its exit status."""
        await self.signal(signal.SIGTERM)
        return await self.wait(timeout)

    async def kill(self) -> int:
        """kill -9: no drain, no goodbye to Discord; its sessions stay behind until they are replaced."""
        await self.signal(signal.SIGKILL)
        return await self.wait()

    async def stop(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            await self.proc.wait()


@dataclass
class Cluster:
    """The fakes, the shared database and the bot processes; see the module docstring."""

    fake_discord: FakeDiscord
    fake_openai: FakeOpenAI
    database_url: str
    shard_count: int
    seats: dict[int, Seat]
    processes: list[BotProcess] = field(default_factory=list)

    def process_for(self, shard: int) -> BotProcess:
        """The process holding `shard`."""
        return next(p for p in self.processes if shard in p.shards)

    def seat(self, shard: int) -> Seat:
        return self.seats[shard]

    async def invoke_ask(self, shard: int, prompt: str, **options: object) -> FakeInteraction:
        """/ask in the guild on `shard`, by its member; returns at once."""
        return await invoke_ask(self.fake_discord, self.seats[shard], prompt, **options)

    async def ask(self, shard: int, prompt: str, **options: object) -> FakeInteraction:
        """/ask in the guild on `shard`, waited for until the answer shows finished."""
        return await ask(self.fake_discord, self.seats[shard], prompt, **options)

    def chat_requests_for(self, prompt: str) -> list[dict[str, object]]:
        """The chat request bodies whose newest user message carries `prompt`."""
        found = []
        for request in self.fake_openai.calls("/chat/completions"):
            body = request.json if isinstance(request.json, dict) else {}
            users = [m for m in body.get("messages", []) if m.get("role") == "user"]
            if users and prompt in str(users[-1].get("content")):
                found.append(body)
        return found

    def answered_by(self, prompt: str) -> list[BotProcess]:
        """The processes whose chat requests served `prompt` (one entry per request), by SYSTEM_PROMPT marker."""
        out = []
        for body in self.chat_requests_for(prompt):
            system = " ".join(
                str(m.get("content")) for m in body.get("messages", []) if m.get("role") == "system"
            )
            out += [p for p in self.processes if p.marker in system]
        return out

    async def start(self, *processes: BotProcess) -> None:
        """Start these processes (default: every one not running) at once, and wait until all are connected."""
        chosen = list(processes) or [p for p in self.processes if not p.running]
        before = {
            shard: (s.session_id if (s := self.fake_discord.sessions.get(shard)) else None)
            for p in chosen
            for shard in p.shards
        }
        for process in chosen:
            await process.spawn()
        try:
            await asyncio.gather(*(p.wait_connected(before) for p in chosen))
            # The holder of shard 0 syncs in its setup, before it connects; slash commands need that schema.
            await self.fake_discord.wait_until(
                lambda: self.fake_discord.sync_count > 0, START_TIMEOUT, what="a command sync"
            )
        except BaseException:
            await self.stop()
            raise

    async def restart(self, index: int) -> BotProcess:
        """Start process `index` again (after kill() or terminate()), same shards and settings."""
        process = self.processes[index]
        if process.running:
            raise AssertionError(f"{process.name} is still running: kill() or terminate() it first")
        await self.start(process)
        return process

    async def stop(self) -> None:
        for process in self.processes:
            await process.stop()

    def logs(self) -> str:
        return "\n".join(p.log_tail() for p in self.processes)


def split_shards(shard_count: int, process_count: int) -> list[tuple[int, ...]]:
    """Shards 0..count-1 dealt into contiguous ranges, one per process."""
    per, extra = divmod(shard_count, process_count)
    out, start = [], 0
    for index in range(process_count):
        size = per + (index < extra)
        out.append(tuple(range(start, start + size)))
        start += size
    return out


@contextlib.asynccontextmanager
async def start_cluster(
    tmp_path: Path,
    *,
    shard_count: int = 2,
    processes: Sequence[Sequence[int]] | None = None,
    env: Mapping[str, str] | None = None,
    process_env: Sequence[Mapping[str, str]] | None = None,
    start: bool = True,
) -> AsyncIterator[Cluster]:
    """The fakes (shard count `shard_count`, required), a guild on every shard, and one bot process per entry
    of `processes` (default: one shard each) sharing this test's database; all started unless `start` is
    False. `env` applies to every process, `process_env[i]` to process i only (after `env`)."""
    plan = [tuple(p) for p in processes] if processes is not None else split_shards(shard_count, shard_count)
    held = sorted(s for p in plan for s in p)
    if len(held) != len(set(held)) or not set(held) <= set(range(shard_count)):
        raise AssertionError(f"processes {plan} must hold disjoint shards of 0..{shard_count - 1}")
    folder = tmp_path / "cluster"
    folder.mkdir(parents=True, exist_ok=True)
    async with (
        FakeDiscord(shard_count=shard_count, required_shard_count=shard_count) as fake_discord,
        FakeOpenAI() as fake_openai,
    ):
        seats = {}
        for shard in range(shard_count):
            guild = fake_discord.add_guild(f"Guild on shard {shard}", shard=shard)
            channel = fake_discord.add_channel(guild, "general")
            seats[shard] = Seat(guild, channel, fake_discord.add_member(guild, name=f"member{shard}"))
        cluster = Cluster(fake_discord, fake_openai, database_url(folder), shard_count, seats)
        for index, shards in enumerate(plan):
            name = f"p{index}"
            process_vars = {
                "PATH": os.environ.get("PATH", ""),
                "FAKE_DISCORD_PORT": str(fake_discord.port),
                "DISCORD_TOKEN": FakeDiscord.DEFAULT_TOKEN,
                "OPENAI_API_KEY": fake_openai.api_key,
                "OPENAI_BASE_URL": fake_openai.base_url,
                "DATABASE_URL": cluster.database_url,
                **DEFAULT_ENV,
                "SHARD_COUNT": str(shard_count),
                "SHARD_IDS": ",".join(map(str, shards)),
                **(env or {}),
                **(process_env[index] if process_env and index < len(process_env) else {}),
            }
            process = BotProcess(name, shards, process_vars, folder, fake_discord)
            process.env.setdefault("SYSTEM_PROMPT", BASE_PROMPT)
            process.env["SYSTEM_PROMPT"] += f" {process.marker}"
            cluster.processes.append(process)
        try:
            if start:
                await cluster.start()
            yield cluster
        finally:
            await cluster.stop()


async def rows(cluster: Cluster, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows straight from the shared database, read off the event loop (the fakes run on it)."""
    return await asyncio.to_thread(query, cluster.database_url, sql, params)


async def poll(
    check: Callable[[], Awaitable[bool]], what: str, cluster: Cluster, within: float = 20.0
) -> None:
    """Until `check()` is true; on a timeout, the assertion carries every process's log."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}\n{cluster.logs()}")
        await asyncio.sleep(0.05)

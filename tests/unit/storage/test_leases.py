"""Leases shared by processes on one database: acquire, renew, expiry, takeover, and jobs that run once."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.storage.leases import Leases, this_host
from bot.storage.store import Store, open_store
from tests.support.database import database_url


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, as two bot processes have (two pools, or two SQLite connections)."""
    url = database_url(tmp_path)
    first = await open_store(url)
    second = await open_store(url)
    yield first, second
    await first.close()
    await second.close()


async def test_a_lease_is_held_by_one_renewed_by_it_and_taken_over_once_expired(
    stores: tuple[Store, Store],
) -> None:
    clock = Clock()
    one = Leases(stores[0], holder="host-a:1:aa", clock=clock)
    two = Leases(stores[1], holder="host-b:2:bb", clock=clock)
    assert await one.acquire("purge", 30)
    assert not await two.acquire("purge", 30)
    assert await two.holder_of("purge") == "host-a:1:aa"
    clock.now += 20
    assert await one.acquire("purge", 30), "the holder renews"
    clock.now += 20
    assert not await two.acquire("purge", 30), "renewed 20 s ago for 30 s: still held"
    clock.now += 11
    assert await one.holder_of("purge") is None, "the holder stopped renewing: expired"
    assert await two.acquire("purge", 30), "taken over"
    assert not await one.acquire("purge", 30)
    assert await one.holder_of("purge") == "host-b:2:bb"
    # Released on a clean shutdown: free at once, without waiting for it to expire.
    assert await two.release("purge")
    assert not await one.release("purge"), "only the holder releases"
    assert await one.acquire("purge", 30)
    rows = await stores[0].fetchall("SELECT name, holder FROM leases")
    assert [(r[0], r[1]) for r in rows] == [("purge", "host-a:1:aa")]


async def test_racing_processes_never_both_get_a_lease(stores: tuple[Store, Store]) -> None:
    contenders = [Leases(stores[n % 2], holder=f"host:{n}:x") for n in range(8)]
    for round_ in range(10):
        got = await asyncio.gather(*(leases.acquire(f"job-{round_}", 30) for leases in contenders))
        assert sum(got) == 1, got


async def test_a_dead_process_on_this_host_is_taken_over_without_waiting(stores: tuple[Store, Store]) -> None:
    # A process that no longer exists: a child that has exited (its pid is not reused this soon).
    child = await asyncio.create_subprocess_exec("true")
    await child.wait()
    far = Leases(stores[0], holder=f"another-host:{child.pid}:far")
    assert await far.acquire("drain", 30)
    restarted = Leases(stores[1])
    assert not await restarted.acquire("drain", 30), "another host's process cannot be checked: wait"
    assert await far.release("drain")
    dead = Leases(stores[0], holder=f"{this_host()}:{child.pid}:dead")
    assert await dead.acquire("drain", 30)
    assert restarted.holder.startswith(f"{socket.gethostname()}")
    assert f":{os.getpid()}:" in restarted.holder
    assert await restarted.acquire("drain", 30)
    assert await restarted.holder_of("drain") == restarted.holder


async def test_a_job_runs_in_one_process_and_is_taken_over_when_it_dies(stores: tuple[Store, Store]) -> None:
    runs: list[str] = []
    # Long enough that a loaded machine's stalls do not look like a dead holder.
    seconds = 2.0

    def job(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            runs.append(name)

        return run

    first, second = Leases(stores[0], holder="host-a:1:a"), Leases(stores[1], holder="host-b:2:b")
    keeper_a, keeper_b = first.keeper("purge", seconds), second.keeper("purge", seconds)
    task_a = asyncio.create_task(keeper_a.run_every(0.1, job("a")))
    await asyncio.sleep(0.05)
    task_b = asyncio.create_task(keeper_b.run_every(0.1, job("b")))
    await asyncio.sleep(1.0)
    assert runs and set(runs) == {"a"}, "only the holder runs the job"
    assert keeper_a.held and not keeper_b.held
    # kill -9: the holder stops renewing and never releases.
    task_a.cancel()
    assert keeper_a._task is not None
    keeper_a._task.cancel()
    died = len(runs)
    for _ in range(100):
        await asyncio.sleep(0.1)
        if "b" in runs:
            break
    assert runs[died:] and set(runs[died:]) == {"b"}, "taken over after the lease expired"
    assert await second.holder_of("purge") == "host-b:2:b"
    # A clean stop releases: the other process may take it at once.
    task_b.cancel()
    await keeper_b.stop()
    assert await first.acquire("purge", seconds)

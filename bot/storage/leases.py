"""Named leases in the database: one process at a time holds each, another takes over when it stops renewing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

from bot.storage.base import Store, StoreError

log = logging.getLogger(__name__)

# A holder renews every third of this; a dead one's lease is taken over once it has passed. Clocks of the
# hosts sharing a database must agree to well within it (NTP does).
LEASE_SECONDS = 30.0

# The name of each process's own lease, before its holder name (see Leases.live_processes).
PROCESS_PREFIX = "process:"

_ACQUIRE = (
    "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
    "WHERE leases.holder = excluded.holder OR leases.expires_at <= ? RETURNING holder"
)


def this_host() -> str:
    """The host name, and the pid namespace where there is one: containers sharing a host name (or a host
    network) but not their pids must not judge each other's pids."""
    try:
        namespace = f"/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        namespace = ""
    return socket.gethostname().replace(":", "-") + namespace


def process_name() -> str:
    """This process among the others sharing the database: host and pid for the logs, and a random part
    so a reused pid is never taken for the process that had it before."""
    return f"{this_host()}:{os.getpid()}:{secrets.token_hex(4)}"


def _dead_on_this_host(holder: str) -> bool:
    """A holder on this host whose process is gone (a crash or kill -9 before a restart): its lease need not
    run out first. Anything else (another host, a live pid, a pid we cannot see) counts as alive."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != this_host() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists but is not ours to signal
    return False


class Leases:
    """Acquire-or-renew as one conditional upsert (free, expired or already mine), the same SQL on SQLite and
    PostgreSQL: two processes racing for one lease cannot both get it, whatever the isolation level."""

    def __init__(
        self, store: Store, *, holder: str | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.holder = holder or process_name()
        self.clock = clock
        self._keepers: dict[str, LeaseKeeper] = {}

    async def acquire(self, name: str, seconds: float = LEASE_SECONDS) -> bool:
        """Take the lease `name` for `seconds` if it is free, expired or ours (then it is renewed)."""
        now = self.clock()
        async with self.store.transaction() as db:
            taken = await (await db.execute(_ACQUIRE, (name, self.holder, now + seconds, now))).fetchone()
            if taken is not None:
                return True
            row = await (await db.execute("SELECT holder FROM leases WHERE name = ?", (name,))).fetchone()
            if row is None or not _dead_on_this_host(str(row[0])):
                return False
            stolen = await db.execute(
                "UPDATE leases SET holder = ?, expires_at = ? WHERE name = ? AND holder = ?",
                (self.holder, now + seconds, name, str(row[0])),
            )
        if stolen.rowcount > 0:
            log.info("took over lease %s from %s, a process that is gone", name, row[0])
        return stolen.rowcount > 0

    async def release(self, name: str) -> bool:
        """Give the lease up now (a clean shutdown), so another process need not wait for it to expire."""
        return (
            await self.store.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, self.holder))
            > 0
        )

    async def holder_of(self, name: str) -> str | None:
        """Who holds `name` now (None: nobody, or an expired holder)."""
        row = await self.store.fetchone(
            "SELECT holder FROM leases WHERE name = ? AND expires_at > ?", (name, self.clock())
        )
        return str(row[0]) if row is not None else None

    @property
    def liveness_lease(self) -> str:
        """The lease every running process holds for itself: while it is held, the process is alive."""
        return PROCESS_PREFIX + self.holder

    async def live_processes(self) -> set[str]:
        """The holders of every process that is alive: its own lease renewed, and not a pid on this host
        that has gone (killed before its lease expired)."""
        rows = await self.store.fetchall(
            "SELECT holder FROM leases WHERE name LIKE ? AND expires_at > ?",
            (PROCESS_PREFIX + "%", self.clock()),
        )
        return {str(row[0]) for row in rows if not _dead_on_this_host(str(row[0]))}

    def keeper(self, name: str, seconds: float = LEASE_SECONDS) -> LeaseKeeper:
        """The one keeper of lease `name` in this process."""
        keeper = self._keepers.get(name)
        if keeper is None:
            keeper = self._keepers[name] = LeaseKeeper(self, name, seconds)
        return keeper

    async def close(self) -> None:
        """Stop renewing and release every lease this process holds."""
        for keeper in list(self._keepers.values()):
            await keeper.stop()


class LeaseKeeper:
    """Keeps trying to hold one lease: renews it every third of its length while held, and tries again at
    that pace while another process holds it, so it takes over within one lease length of a holder's death."""

    def __init__(self, leases: Leases, name: str, seconds: float) -> None:
        self.leases = leases
        self.name = name
        self.seconds = seconds
        self._held_until = 0.0
        self._became_held = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lease now, by its last renewal (no database round trip)."""
        return self.leases.clock() < self._held_until

    async def start(self) -> None:
        """Try once now (a job that runs at start-up knows at once), then keep renewing in the background."""
        if self._task is not None:
            return
        await self.try_hold()
        self._task = asyncio.create_task(self._keep(), name=f"lease-{self.name}")

    async def try_hold(self) -> bool:
        asked = self.leases.clock()
        try:
            got = await self.leases.acquire(self.name, self.seconds)
        except StoreError:
            log.warning("lease %s could not be renewed; its jobs pause until it can", self.name)
            got = False
        except Exception:
            # The keeper must outlive any one failure (a store closing under it): it only stops holding.
            log.warning("renewing lease %s failed; its jobs pause until it can", self.name, exc_info=True)
            got = False
        if got and not self.held:
            log.info("this process (%s) now holds lease %s", self.leases.holder, self.name)
        # Counted from before the request, and a third short of the expiry the others see, so this process
        # stops believing it holds the lease before anyone else may take it.
        self._held_until = asked + self.seconds * 2 / 3 if got else 0.0
        if got:
            self._became_held.set()
        else:
            self._became_held.clear()
        return got

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            await self.try_hold()

    async def wait_held(self) -> None:
        """Return once this process holds the lease (at once when it does)."""
        while not self.held:
            self._became_held.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._became_held.wait(), self.seconds / 3)

    async def run_every(self, interval: float, job: Callable[[], Awaitable[object]]) -> None:
        """Run `job` every `interval` seconds while this process holds the lease; when another process
        holds it, wait, and run at once on taking it over. Never returns (cancel it)."""
        await self.start()
        while True:
            await self.wait_held()
            await job()
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """Stop renewing; release the lease if held (a dead process's lease expires instead)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.held:
            self._held_until = 0.0
            try:
                await self.leases.release(self.name)
            except StoreError:
                log.warning("lease %s could not be released; it expires by itself", self.name)

"""The operator's HTTP endpoints (METRICS_PORT): `/metrics` for Prometheus and `/healthz` for a health check."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from typing import Protocol

import discord
from aiohttp import web
from discord.ext import commands

from bot import errors
from bot.settings import Settings
from bot.storage.store import Store
from bot.util.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)


class GatewayView(Protocol):
    """What the health check reads from the Discord client."""

    @property
    def latency(self) -> float: ...

    def is_ready(self) -> bool: ...

    def is_closed(self) -> bool: ...


class GatewayState:
    """Whether each gateway session this process holds is up, from the client's events.

    Unsharded there is one session (shard 0), followed by ready/resumed/disconnect. Sharded (SHARD_COUNT)
    each shard is followed by its shard_ready/shard_resumed/shard_disconnect: one shard can drop and
    RESUME while the others keep going. discord.py reconnects by itself; between a dropped socket and a
    successful RESUME the bot cannot see or answer anything of that shard's servers, and the health check
    says so.
    """

    def __init__(self, shards: Sequence[int] = (0,), shard_count: int | None = None) -> None:
        self.shard_count = shard_count
        now = time.monotonic()
        self.shards: dict[int, bool] = dict.fromkeys(shards, False)
        self.changed: dict[int, float] = dict.fromkeys(shards, now)

    @property
    def sharded(self) -> bool:
        return self.shard_count is not None

    @property
    def connected(self) -> bool:
        return all(self.shards.values())

    @property
    def since(self) -> float:
        """When the longest-down shard went down (or the last change, when all are up)."""
        down = [self.changed[s] for s, up in self.shards.items() if not up]
        return min(down) if down else max(self.changed.values())

    def down_shards(self) -> list[int]:
        return [s for s, up in self.shards.items() if not up]

    def describe(self) -> str:
        """Which shards this process holds, for logs and the health check ("shards 0, 1 of 4")."""
        if not self.sharded:
            return "unsharded"
        ids = ", ".join(str(s) for s in self.shards)
        return f"shard{'s' if len(self.shards) > 1 else ''} {ids} of {self.shard_count}"

    def up(self, shard: int = 0) -> None:
        if not self.shards.get(shard, False):
            self.shards[shard], self.changed[shard] = True, time.monotonic()

    def down(self, shard: int = 0) -> None:
        if self.shards.get(shard, False):
            self.shards[shard], self.changed[shard] = False, time.monotonic()


class OpsServer:
    """Serves `/metrics` and `/healthz`, and samples the gateway latency and event-loop lag."""

    def __init__(
        self,
        client: GatewayView,
        gateway: GatewayState,
        store: Store,
        metrics: Metrics,
        *,
        host: str,
        port: int,
        sample_interval: float = 1.0,
    ) -> None:
        self.client = client
        self.gateway = gateway
        self.store = store
        self.metrics = metrics
        self.host = host
        self.port = port
        self.sample_interval = sample_interval
        self._runner: web.AppRunner | None = None
        self._sampler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        log.info("serving /metrics and /healthz on http://%s:%d", self.host, self.bound_port)
        self._sampler = asyncio.create_task(self._sample(), name="ops-sampler")

    @property
    def bound_port(self) -> int:
        """The listening port (the real one when METRICS_PORT asked the system to choose)."""
        if self._runner is None or not self._runner.addresses:
            return self.port
        return int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        if self._runner is not None:
            await self._runner.cleanup()

    async def health(self) -> tuple[bool, str]:
        """(healthy, reason): the gateway session is up and the database takes a write transaction."""
        if self.client.is_closed():
            return False, "the Discord client is closed"
        if not self.gateway.connected or not self.client.is_ready():
            down = time.monotonic() - self.gateway.since
            which = "the Discord gateway"
            if self.gateway.sharded and self.client.is_ready():
                shards = self.gateway.down_shards()
                which = f"shard{'s' if len(shards) > 1 else ''} {', '.join(map(str, shards))} of {which}"
            return False, f"{which} is disconnected (for {down:.0f} s)"
        try:
            # BEGIN IMMEDIATE takes the write lock: a read-only, full or locked database fails here.
            async with self.store.transaction():
                pass
        except errors.StorageUnavailable as exc:
            return False, f"the database is not writable: {exc}"
        return True, f"ok ({self.gateway.describe()})" if self.gateway.sharded else "ok"

    async def _healthz(self, request: web.Request) -> web.Response:
        healthy, reason = await self.health()
        return web.Response(status=200 if healthy else 503, text=reason + "\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        self._sample_gateway()
        response = web.Response(body=self.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    def _sample_gateway(self) -> None:
        latency = self.client.latency
        self.metrics.gateway_connected.set(1 if self.gateway.connected else 0)
        if self.gateway.sharded:
            for shard, up in self.gateway.shards.items():
                self.metrics.shard_connected.labels(str(shard)).set(1 if up else 0)
        if math.isfinite(latency):
            self.metrics.gateway_latency.set(latency)

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.sample_interval
            await asyncio.sleep(self.sample_interval)
            # A timer due at `expected` ran this late: the time other work held the loop.
            self.metrics.loop_lag.set(max(0.0, loop.time() - expected))
            self._sample_gateway()


def watch_client(
    bot: commands.Bot, metrics: Metrics, shards: Sequence[int] = (0,), shard_count: int | None = None
) -> GatewayState:
    """Follow the gateway sessions (each shard's, when sharded) and count every slash command's success
    (failures: the tree's on_error)."""
    state = GatewayState(shards, shard_count)

    async def on_up() -> None:
        state.up()

    async def on_down() -> None:
        state.down()

    async def on_shard_up(shard_id: int) -> None:
        if not state.shards.get(shard_id, False):
            log.info("shard %d of %s connected", shard_id, shard_count)
        state.up(shard_id)

    async def on_shard_down(shard_id: int) -> None:
        if state.shards.get(shard_id, False):
            log.info("shard %d of %s disconnected", shard_id, shard_count)
        state.down(shard_id)

    async def on_completion(interaction: discord.Interaction, command: object) -> None:
        name = getattr(command, "qualified_name", "?")
        metrics.command(name, "ok", interaction.guild_id)
        latency = (discord.utils.utcnow() - interaction.created_at).total_seconds()
        log.debug(
            "/%s completed in %.3f s",
            name,
            latency,
            extra={
                "command": name,
                "guild": interaction.guild_id,
                "channel": interaction.channel_id,
                "latency": round(latency, 3),
            },
        )

    if state.sharded:
        bot.add_listener(on_shard_up, "on_shard_ready")
        bot.add_listener(on_shard_up, "on_shard_resumed")
        bot.add_listener(on_shard_down, "on_shard_disconnect")
    else:
        bot.add_listener(on_up, "on_ready")
        bot.add_listener(on_up, "on_resumed")
        bot.add_listener(on_down, "on_disconnect")
    bot.add_listener(on_completion, "on_app_command_completion")
    return state


async def serve_ops(
    bot: commands.Bot, state: GatewayState, store: Store, metrics: Metrics, settings: Settings
) -> OpsServer | None:
    """Start the metrics and health server when METRICS_PORT is set."""
    if not settings.metrics_port:
        return None
    server = OpsServer(bot, state, store, metrics, host=settings.metrics_host, port=settings.metrics_port)
    await server.start()
    return server

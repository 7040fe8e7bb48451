"""The bot's Prometheus metrics: one registry built by the composition root, passed to what records."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Seconds: a deferral takes tens of milliseconds, a long streamed answer a minute.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
BREAKER_STATES = ("closed", "open", "half_open")
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Every metric the bot exports, on its own `CollectorRegistry` (never prometheus-client's global one).

    Labels are bounded: command names, outcomes, endpoints, configured models and error kinds. Never a user
    id or any content; a server id only when `guild_labels` is on (METRICS_GUILD_LABELS).
    """

    def __init__(self, *, guild_labels: bool = False, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.guild_labels = guild_labels
        self._clock = clock
        self._oldest_queued: float | None = None
        # Label children by (metric, labels); prometheus-client keeps every child anyway, so this adds none.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._breaker_state: str | None = None
        r = self.registry
        command_labels = ["command", "outcome", "guild"] if guild_labels else ["command", "outcome"]
        self.commands = Counter(
            "discord_bot_commands", "Slash commands by name and outcome.", command_labels, registry=r
        )
        self.ask_latency = Histogram(
            "discord_bot_ask_latency_seconds",
            "/ask latency from the interaction's arrival to each stage: deferral, first token, final answer.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.openai_calls = Counter(
            "discord_bot_openai_calls",
            "OpenAI API calls (each attempt) by endpoint, model and error kind (`none` on success).",
            ["endpoint", "model", "error"],
            registry=r,
        )
        self.tokens = Counter(
            "discord_bot_openai_tokens",
            "Tokens metered, by endpoint and direction.",
            ["endpoint", "direction"],
            registry=r,
        )
        self.spend = Counter(
            "discord_bot_openai_spend_usd",
            "Estimated spend in USD from the price table, by endpoint.",
            ["endpoint"],
            registry=r,
        )
        self.moderation_batch = Histogram(
            "discord_bot_moderation_batch_size",
            "Inputs per moderation request.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.verdict_latency = Histogram(
            "discord_bot_moderation_verdict_seconds",
            "Seconds from an input's arrival at the batcher to its verdict.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.outage_queue_depth = Gauge(
            "discord_bot_moderation_outage_queue_depth",
            "Messages waiting for moderation while the endpoint is unavailable.",
            registry=r,
        )
        self.outage_queue_age = Gauge(
            "discord_bot_moderation_outage_queue_age_seconds",
            "Age of the oldest message waiting for moderation (0 when none wait).",
            registry=r,
        )
        self.outage_queue_age.set_function(self._oldest_queued_age)
        self.breaker = Gauge(
            "discord_bot_quota_breaker_state",
            "The quota circuit breaker: 1 for its current state, 0 for the others.",
            ["state"],
            registry=r,
        )
        self.set_breaker("closed")
        self.gateway_latency = Gauge(
            "discord_bot_gateway_latency_seconds", "Discord gateway heartbeat latency.", registry=r
        )
        self.loop_lag = Gauge(
            "discord_bot_event_loop_lag_seconds",
            "How late the event loop ran a timer, last sample.",
            registry=r,
        )
        self.gateway_connected = Gauge(
            "discord_bot_gateway_connected",
            "1 while the Discord gateway session is up (every shard this process holds).",
            registry=r,
        )
        self.shard_connected = Gauge(
            "discord_bot_shard_connected",
            "1 while this shard's gateway session is up, per shard this process holds.",
            ["shard"],
            registry=r,
        )
        self.db_writes = Histogram(
            "discord_bot_database_write_seconds",
            "Database write transactions, from waiting for the writer to commit.",
            buckets=DB_BUCKETS,
            registry=r,
        )

    # -- recording (small calls, so instrumented code stays readable) ---------------------------------

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, remembered: prometheus-client validates and locks on every lookup, a dozen
        times per /ask."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def command(self, name: str, outcome: str, guild_id: int | None = None) -> None:
        if self.guild_labels:
            self._child(self.commands, name, outcome, str(guild_id or 0)).inc()
        else:
            self._child(self.commands, name, outcome).inc()

    def ask_stage(self, stage: str, seconds: float) -> None:
        self._child(self.ask_latency, stage).observe(seconds)

    def openai_call(self, endpoint: str, model: str, error: str = "none") -> None:
        self._child(self.openai_calls, endpoint, model or "none", error).inc()

    def usage(self, endpoint: str, prompt_tokens: int, completion_tokens: int, cost: float | None) -> None:
        if prompt_tokens:
            self._child(self.tokens, endpoint, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self._child(self.tokens, endpoint, "completion").inc(completion_tokens)
        self._child(self.spend, endpoint).inc(cost or 0.0)

    def outage_queue(self, depth: int, oldest_enqueued_at: float | None) -> None:
        self.outage_queue_depth.set(depth)
        self._oldest_queued = oldest_enqueued_at

    def _oldest_queued_age(self) -> float:
        if self._oldest_queued is None:
            return 0.0
        return max(0.0, self._clock() - self._oldest_queued)

    def set_breaker(self, state: str) -> None:
        if state == self._breaker_state:
            return  # every successful call reports "closed" again
        self._breaker_state = state
        for known in BREAKER_STATES:
            self._child(self.breaker, known).set(1 if known == state else 0)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class Stopwatch:
    """Seconds since it was started, on the monotonic clock; each stage is recorded once."""

    def __init__(self, metrics: Metrics | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self._clock = clock
        self.started = clock()
        self._seen: set[str] = set()

    def stage(self, name: str) -> None:
        if self.metrics is None or name in self._seen:
            return
        self._seen.add(name)
        self.metrics.ask_stage(name, self._clock() - self.started)

"""Coalesces moderation inputs into few upstream requests, bounds their concurrency and caches verdicts."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot import errors
from bot.openai_api.calls import CallContext, ModerationResult
from bot.openai_api.gateway import OpenAIGateway
from bot.settings import Settings
from bot.util.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class BatcherStats:
    """Counters for `/moderation status` and the benchmark."""

    inputs: int = 0
    cache_hits: int = 0
    requests: int = 0
    failed_requests: int = 0
    batched_inputs: int = 0


class _Pending:
    """One input waiting for a request (a plain slotted class: one is made for every channel message).

    Each caller waiting on it has its own future in `waiters`: a caller cancelled (a timeout, a Stop) cancels
    only its own, never another's, with no `asyncio.shield` (a future, two callbacks and one more turn of
    the event loop for every channel message)."""

    __slots__ = ("key", "text", "waiters", "context", "enqueued")

    def __init__(
        self, key: bytes, text: str, waiter: asyncio.Future[ModerationResult], context: CallContext
    ) -> None:
        self.key = key
        self.text = text
        self.waiters = [waiter]
        self.context = context
        self.enqueued = time.monotonic()

    def resolve(self, result: ModerationResult) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(result)

    def fail(self, error: BaseException) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(error)


def _key(kind: str, value: str) -> bytes:
    return hashlib.blake2b(f"{kind}\x00{value}".encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _abandon(waiters: list[asyncio.Future[ModerationResult]]) -> None:
    """Waiters nobody will await: cancelled, or their error marked as seen (no "never retrieved" report)."""
    for waiter in waiters:
        if not waiter.done():
            waiter.cancel()
        elif not waiter.cancelled():
            waiter.exception()


class ModerationBatcher:
    """Every text input becomes one string of a list request shared with the texts that arrived within
    `window` seconds (up to `max_inputs` strings / `max_chars` characters). While every one of the
    `concurrency` request slots is busy, inputs keep accumulating, so batches grow with load instead of
    queueing requests. Identical inputs in flight share one future; verdicts are cached `cache_ttl` s.

    Urgent inputs (a user waits on them: a command's input or output) have their own lane and
    `urgent_concurrency` slots, and channel traffic can never hold them up. A lone urgent input, with no
    urgent request in flight, is sent at once from its caller's task. Otherwise the waiting urgent inputs
    go together as soon as the event loop is idle (a turn of the loop took under `urgent_idle_gap`: the
    burst that queued them has been read) or `urgent_window` after the first one queued, whichever is
    first: a burst of commands becomes a few multi-input requests instead of one request per command
    until the slots run out and then a whole round trip of waiting for the rest.
    """

    @classmethod
    def from_settings(
        cls, gateway: OpenAIGateway, settings: Settings, metrics: Metrics | None = None
    ) -> ModerationBatcher:
        """The batcher as the bot configures it (MODERATION_BATCH_* settings)."""
        return cls(
            gateway,
            window=settings.moderation_batch_window,
            max_inputs=settings.moderation_batch_size,
            concurrency=settings.moderation_concurrency,
            cache_ttl=settings.moderation_cache_seconds,
            metrics=metrics,
        )

    def __init__(
        self,
        gateway: OpenAIGateway,
        *,
        window: float = 0.02,
        max_inputs: int = 64,
        max_chars: int = 100_000,
        concurrency: int = 8,
        urgent_concurrency: int | None = None,
        urgent_window: float = 0.005,
        urgent_idle_gap: float = 0.0005,
        cache_ttl: float = 60.0,
        cache_size: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.gateway = gateway
        self.metrics = metrics
        self.window = window
        self.max_inputs = max_inputs
        self.max_chars = max_chars
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.stats = BatcherStats()
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        # Twice the channel lane: every request costs the event loop time, so more slots saturate it under
        # load (fewer, larger batches are cheaper), while as many as the channel lane leave prompts waiting.
        self.urgent_concurrency = urgent_concurrency or 2 * concurrency
        self._urgent_in_flight = 0
        self.urgent_window = urgent_window
        self.urgent_idle_gap = urgent_idle_gap
        self._urgent_armed = False
        # False sends each command's check on its own while a slot is free, as before coalescing: the
        # benchmark's baseline (bench/coalesce_bench.py).
        self.urgent_coalescing = True
        self._urgent_since = 0.0
        self._urgent_last_turn = 0.0
        self._urgent: deque[_Pending] = deque()
        self._pending: deque[_Pending] = deque()
        self._pending_chars = 0
        self._inflight: dict[bytes, _Pending] = {}
        self._cache: OrderedDict[bytes, tuple[float, ModerationResult]] = OrderedDict()
        self._full = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._requests: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- public ---------------------------------------------------------------------------------

    async def texts(
        self, texts: Sequence[str], *, context: CallContext, urgent: bool = False
    ) -> list[ModerationResult]:
        """One result per text, in order. Raises the upstream's domain error when its request failed.

        `urgent` texts go through the urgent lane (see the class), so a prompt waits neither for the
        batching window nor for a slot behind channel messages.
        """
        futures = [self._submit(text, context, urgent) for text in texts]
        if urgent:
            try:
                await self._send_urgent(futures)
            except BaseException:
                _abandon(futures)  # the caller is gone (cancelled while its request was sent from its task)
                raise
        if len(futures) == 1:
            return [await futures[0]]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [outcome for outcome in outcomes if isinstance(outcome, ModerationResult)]

    def submit(self, text: str, *, context: CallContext) -> asyncio.Future[ModerationResult]:
        """One channel-lane text without a coroutine: the future of its result (done already when cached).
        For callers that attach a callback instead of awaiting (channel messages, see `texts`)."""
        return self._submit(text, context)

    async def image(self, url: str, *, context: CallContext) -> ModerationResult:
        """One image per request (the endpoint refuses two); still cached and concurrency-bound."""
        key = _key("image", url)
        cached = self._cached(key)
        if cached is not None:
            return cached
        self.stats.inputs += 1
        async with self._slots:
            self.stats.requests += 1
            try:
                results = await self.gateway.moderate(
                    [{"type": "image_url", "image_url": {"url": url}}], context=context
                )
            except errors.BotError:
                self.stats.failed_requests += 1
                raise
        if not results:
            raise errors.ModerationUnavailable()
        self._remember(key, results[0])
        return results[0]

    async def close(self) -> None:
        self._closed = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        for task in list(self._requests):
            task.cancel()
        await asyncio.gather(
            *(t for t in [self._dispatcher, *self._requests] if t is not None), return_exceptions=True
        )
        for item in (*self._pending, *self._urgent):
            item.fail(errors.ModerationUnavailable())
        self._pending.clear()
        self._urgent.clear()

    # -- internals ------------------------------------------------------------------------------

    def _cached(self, key: bytes) -> ModerationResult | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        expires, result = entry
        if expires < self._clock():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        self.stats.cache_hits += 1
        return result

    def _remember(self, key: bytes, result: ModerationResult) -> None:
        if self.cache_ttl <= 0:
            return
        self._cache[key] = (self._clock() + self.cache_ttl, result)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _submit(
        self, text: str, context: CallContext, urgent: bool = False
    ) -> asyncio.Future[ModerationResult]:
        waiter: asyncio.Future[ModerationResult] = asyncio.get_running_loop().create_future()
        key = _key("text", text)
        cached = self._cached(key)
        if cached is not None:
            waiter.set_result(cached)
            return waiter
        shared = self._inflight.get(key)
        if shared is not None:
            self.stats.cache_hits += 1
            shared.waiters.append(waiter)
            if urgent:
                self._promote(key)
            return waiter
        self.stats.inputs += 1
        if self._closed:
            waiter.set_exception(errors.ModerationUnavailable())
            return waiter
        item = self._inflight[key] = _Pending(key, text, waiter, context)
        if urgent:
            self._urgent.append(item)
            return waiter
        self._pending.append(item)
        self._pending_chars += len(text)
        if len(self._pending) >= self.max_inputs or self._pending_chars >= self.max_chars:
            self._full.set()  # send without waiting out the window
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch(), name="moderation-batcher")
        return waiter

    def _promote(self, key: bytes) -> None:
        """Move a channel input a user now waits on (an @mention's own text) to the urgent lane."""
        for item in self._pending:
            if item.key == key:
                self._pending.remove(item)
                self._pending_chars -= len(item.text)
                self._urgent.append(item)
                return

    async def _dispatch(self) -> None:
        while not self._closed:
            if not self._pending:
                return  # the next input starts a new dispatcher (_submit): an idle bot keeps no task waiting
            wait = self._pending[0].enqueued + self.window - time.monotonic()
            # With no request in flight nothing is gained by waiting: what arrived in this loop turn goes
            # at once, so an /ask at low load pays no window. Under load, batch.
            if wait > 0 and not self._full.is_set() and self._requests:
                try:
                    await asyncio.wait_for(self._full.wait(), wait)
                except TimeoutError:
                    pass
            # While all slots are busy, more inputs join the batch taken next.
            await self._slots.acquire()
            batch = self._take()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._send(batch), name="moderation-request")
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)

    async def _send_urgent(self, futures: list[asyncio.Future[ModerationResult]]) -> None:
        """Send the caller's urgent inputs at once when the lane is idle; otherwise coalesce (see the class).

        When the caller's own inputs are all that is queued, its request goes from the caller's task: a
        request task would first wait for a turn of a busy event loop, and only the caller's own
        cancellation can cut it short then.
        """
        own = {id(f) for f in futures}
        if (
            self._urgent
            and (self._urgent_in_flight == 0 or not self.urgent_coalescing)
            and self._urgent_in_flight < self.urgent_concurrency
            and not self._urgent_armed
            and all(id(item.waiters[0]) in own for item in self._urgent)
        ):
            batch, _ = self._take_from(self._urgent)
            self._urgent_in_flight += 1
            await self._send(batch, urgent=True)
        elif self._urgent and not self._urgent_armed and self.urgent_coalescing:
            self._urgent_armed = True
            self._urgent_since = self._urgent_last_turn = time.monotonic()
            asyncio.get_running_loop().call_soon(self._urgent_turn)
            return
        self._pump_urgent()

    def _urgent_turn(self) -> None:
        """One turn of the event loop while urgent inputs wait: send them once the loop is idle."""
        now = time.monotonic()
        idle = now - self._urgent_last_turn < self.urgent_idle_gap
        if (
            self._closed
            or not self._urgent
            or idle
            or now - self._urgent_since >= self.urgent_window
            or len(self._urgent) >= self.max_inputs
        ):
            self._urgent_armed = False
            self._pump_urgent()
            return
        self._urgent_last_turn = now
        asyncio.get_running_loop().call_soon(self._urgent_turn)

    def _pump_urgent(self) -> None:
        if self._urgent_armed:
            return  # a burst is still being read: its inputs go together when the loop is idle
        while self._urgent and self._urgent_in_flight < self.urgent_concurrency and not self._closed:
            batch, _ = self._take_from(self._urgent)
            self._urgent_in_flight += 1
            task = asyncio.create_task(self._send(batch, urgent=True), name="moderation-request")
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)

    def _take_from(self, queue: deque[_Pending]) -> tuple[list[_Pending], int]:
        """The next batch from `queue` and its characters."""
        batch: list[_Pending] = []
        chars = 0
        while queue and len(batch) < self.max_inputs:
            size = len(queue[0].text)
            if batch and chars + size > self.max_chars:
                break
            batch.append(queue.popleft())
            chars += size
        return batch, chars

    def _take(self) -> list[_Pending]:
        batch, chars = self._take_from(self._pending)
        self._pending_chars -= chars
        if len(self._pending) < self.max_inputs and self._pending_chars < self.max_chars:
            self._full.clear()
        return batch

    async def _send(self, batch: list[_Pending], *, urgent: bool = False) -> None:
        try:
            self.stats.requests += 1
            self.stats.batched_inputs += len(batch)
            if self.metrics is not None:
                self.metrics.moderation_batch.observe(len(batch))
            first = batch[0].context
            context = CallContext(first.guild_id, first.channel_id, first.user_id, "moderation")
            try:
                results = await self.gateway.moderate([item.text for item in batch], context=context)
                if len(results) != len(batch):
                    raise errors.ModerationUnavailable()
            except BaseException as exc:
                self.stats.failed_requests += 1
                error = exc if isinstance(exc, errors.BotError) else errors.ModerationUnavailable()
                # An urgent request sent from its caller's task dies with that caller (a Stop, a timeout):
                # whoever else waits on its inputs goes in the next urgent request instead of failing.
                retry = urgent and isinstance(exc, asyncio.CancelledError) and not self._closed
                for item in batch:
                    if retry and not all(waiter.done() for waiter in item.waiters):
                        self._urgent.append(item)
                        continue
                    self._inflight.pop(item.key, None)
                    item.fail(error)
                if not isinstance(exc, errors.BotError | asyncio.CancelledError):
                    log.warning("a moderation request failed unexpectedly", exc_info=True)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            judged = time.monotonic()
            for item, result in zip(batch, results, strict=True):
                if self.metrics is not None:
                    self.metrics.verdict_latency.observe(judged - item.enqueued)
                self._inflight.pop(item.key, None)
                self._remember(item.key, result)
                item.resolve(result)
        finally:
            if urgent:
                self._urgent_in_flight -= 1
                self._pump_urgent()  # what queued meanwhile goes now, as one batch
            else:
                self._slots.release()

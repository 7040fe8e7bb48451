"""/recall's core: what is indexed (only what passed moderation), batched embedding, and the search flow."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass

from bot import errors
from bot.moderation.channel import ChannelModerator
from bot.moderation.normalize import is_blank
from bot.moderation.policy import decide
from bot.moderation.queue import MessageSubject
from bot.openai_api.gateway import CallContext, OpenAIGateway
from bot.recall.index import Document, Match, RecallIndex
from bot.settings import Settings

log = logging.getLogger(__name__)
MAX_QUERY_CHARS = 1000
# An embedding input is at most 8,192 tokens; a Discord message (4,000 characters with Nitro) is far below.
MAX_INPUT_CHARS = 8000
BATCH_WINDOW = 0.25  # seconds a batch waits to fill up before it is sent anyway
# Moderation's own skips that still leave text worth indexing: recall then judges the text itself.
UNJUDGED_REASONS = ("moderation off", "exempt", "bot or webhook")
ASK_MIN_SCORE = 0.3  # a weaker match is noise to the model, not memory
RETRY_CEILING = 3600.0  # the longest wait between two attempts at a failed batch
# Failures that say the input itself is unacceptable: sending it again gets the same answer.
REFUSED_INPUT: tuple[type[errors.BotError], ...] = (
    errors.BadRequest,
    errors.ContextTooLong,
    errors.ContentRefused,
)


@dataclass
class IndexStats:
    """What the indexer did since it started, for the benchmark and the backfill's progress line."""

    requests: int = 0
    embedded: int = 0
    failed: int = 0  # messages of failed requests (kept for a retry)
    retried: int = 0  # messages taken back from the database for another attempt
    dropped: int = 0  # messages the embedding model refused as input: never retried


class Recall:
    """Plain data in, plain data out. Indexing runs in the background: `submit` never waits for OpenAI."""

    def __init__(
        self,
        index: RecallIndex,
        gateway: OpenAIGateway,
        moderator: ChannelModerator,
        settings: Settings,
    ) -> None:
        self.index = index
        self.gateway = gateway
        self.moderator = moderator
        self.settings = settings
        self.model = settings.embedding_model
        self.dimensions = settings.embedding_dimensions
        self.batch_size = settings.recall_batch_size
        self.stats = IndexStats()
        self.retry_base = settings.recall_retry_seconds
        self._pending: dict[int, Document] = {}
        self._in_flight: dict[int, Document] = {}
        self._deleted_in_flight: set[int] = set()
        # Messages taken from `recall_pending` for another attempt, with their failures so far; a fresh
        # copy of one (an edit) takes it out.
        self._attempts: dict[int, int] = {}
        self._retrier: asyncio.Task[None] | None = None
        # Set when a failed batch could not be parked (the database failing too): its rows, still due, wait
        # this long rather than being sent to OpenAI again at once.
        self._hold_until = 0.0
        self._parked = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.recall_concurrency)
        self._flusher: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- what gets indexed --------------------------------------------------------------------------

    async def enabled(self, guild_id: int) -> bool:
        return await self.index.enabled(guild_id)

    def known_off(self, guild_id: int | None) -> bool:
        return self.index.known_off(guild_id)

    async def consider(
        self, subject: MessageSubject, status: str, reason: str, author_name: str = ""
    ) -> None:
        """A channel message as moderation left it: indexed only when it passed.

        `status` and `reason` are the moderation Outcome's. A message moderation skipped by the server's
        policy is judged here by the same gate; a flagged or acted-on one is never indexed (an edit that
        turned bad takes its old vector out).
        """
        if subject.kind != "message" or not await self.index.enabled(subject.guild_id):
            return
        if status == "acted":
            await self.forget_messages([subject.message_id])
            return
        if status == "skipped" and reason in UNJUDGED_REASONS:
            if not await self.passes(subject):
                return
        elif status != "clean":
            return
        self.submit([self.document(subject, author_name)])

    async def passes(self, subject: MessageSubject) -> bool:
        """Whether a message passes moderation as the server's policy judges it, with no action taken
        (history being backfilled, or messages the policy does not moderate)."""
        policy, skip = await self.moderator.screen(subject)
        if subject.is_empty or not subject.text.strip():
            return False
        context = CallContext(subject.guild_id, subject.channel_id, subject.author_id, "recall-index")
        try:
            verdict = await self.moderator.gate.check_text(subject.text, context=context)
        except errors.BotError as exc:
            log.info("recall: a message could not be moderated (%s); not indexed", type(exc).__name__)
            return False
        if skip or not policy.enabled:
            return not verdict.flagged
        return decide(policy, verdict.categories, verdict.scores) is None and not verdict.flagged

    async def screen_many(self, subjects: Sequence[MessageSubject]) -> list[bool]:
        """`passes` for many messages at once: the moderation batcher coalesces them into few requests."""
        return list(await asyncio.gather(*(self.passes(s) for s in subjects)))

    @staticmethod
    def document(subject: MessageSubject, author_name: str = "") -> Document:
        return Document(
            message_id=subject.message_id,
            guild_id=subject.guild_id,
            channel_id=subject.channel_id,
            author_id=subject.author_id,
            text=subject.text,
            author_name=author_name,
            parent_channel_id=subject.parent_channel_id or 0,
        )

    # -- batching -----------------------------------------------------------------------------------

    def submit(self, documents: Iterable[Document]) -> None:
        """Queue messages for embedding; a message queued twice (an edit) is embedded once, as last seen."""
        fresh = [d for d in documents if d.text.strip()]
        for document in fresh:
            self._attempts.pop(document.message_id, None)
        self._enqueue(fresh)

    def _enqueue(self, documents: Iterable[Document]) -> None:
        for document in documents:
            self._pending[document.message_id] = document
        if self._pending:
            self._idle.clear()
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush(), name="recall-indexer")

    async def _flush(self) -> None:
        try:
            while self._pending or self._batches:
                if not self._pending:
                    await asyncio.wait(set(self._batches), timeout=BATCH_WINDOW)
                    continue
                if len(self._pending) < self.batch_size:
                    await asyncio.sleep(BATCH_WINDOW)
                await self._slots.acquire()
                ids = list(self._pending)[: self.batch_size]
                if not ids:  # deleted or disabled while waiting
                    self._slots.release()
                    continue
                batch = [self._pending.pop(i) for i in ids]
                self._in_flight.update((d.message_id, d) for d in batch)
                task = asyncio.create_task(self._embed_batch(batch), name="recall-embed")
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
        finally:
            if not self._pending and not self._batches:
                self._idle.set()

    async def _embed_batch(self, batch: list[Document]) -> None:
        try:
            await self._index_batch(batch)
        finally:
            for d in batch:
                self._in_flight.pop(d.message_id, None)
                self._deleted_in_flight.discard(d.message_id)
                if self._pending.get(d.message_id) is None:
                    self._attempts.pop(d.message_id, None)
            self._slots.release()

    async def _index_batch(self, batch: list[Document]) -> None:
        """Embed and store a batch. A failed request parks the batch in the database for a later attempt;
        an input the model refuses is found by halving the batch and dropped alone."""
        import numpy as np

        try:
            vectors = await self.gateway.embed(
                [d.text[:MAX_INPUT_CHARS] for d in batch],
                context=CallContext(batch[0].guild_id, None, None, "recall-index"),
                model=self.model,
                dimensions=self.dimensions or None,
            )
        except REFUSED_INPUT as exc:
            if len(batch) > 1:
                half = len(batch) // 2
                await self._index_batch(batch[:half])
                await self._index_batch(batch[half:])
                return
            self.stats.dropped += 1
            log.warning(
                "recall: message %s was refused by the embedding model (%s); not indexed, not retried",
                batch[0].message_id,
                type(exc).__name__,
            )
            await self._quietly(self.index.unpark([batch[0].message_id]))
            return
        except errors.BotError as exc:
            # Background work: nobody waits on it. The batch waits in the database and is tried again.
            self.stats.failed += len(batch)
            await self._park(batch, exc)
            return
        self.stats.requests += 1
        matrix = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix /= np.where(norms == 0, 1, norms)
        keep = [i for i, d in enumerate(batch) if self._still_wanted(d)]
        retried = [d.message_id for d in batch if d.message_id in self._attempts]
        try:
            self.stats.embedded += await self.index.add(
                [batch[i] for i in keep], matrix[keep], retried=retried
            )
        except errors.BotError as exc:
            self.stats.failed += len(batch)
            log.warning(
                "recall: %d embedded messages could not be stored: %s", len(batch), type(exc).__name__
            )
            await self._park(batch, exc)

    async def _park(self, batch: list[Document], exc: errors.BotError) -> None:
        now = time.time()
        entries = []
        for document in batch:
            if not self._still_wanted(document):
                continue
            attempts = self._attempts.get(document.message_id, 0) + 1
            entries.append((document, attempts, now + self.retry_delay(attempts, exc)))
        if not entries:
            return
        log.warning(
            "recall: %d messages could not be indexed (%s); trying again in %.1f s",
            len(entries),
            type(exc).__name__,
            entries[0][2] - now,
        )
        retried = [d.message_id for d in batch if d.message_id in self._attempts]
        if await self._quietly(self.index.park(entries, retried=retried)):
            self._parked.set()
        else:
            self._hold_until = time.time() + self.retry_base

    def retry_delay(self, attempts: int, exc: errors.BotError | None = None) -> float:
        """Seconds before the next attempt after `attempts` failures: doubling, at most an hour, and never
        sooner than OpenAI asked (a rate limit's or the quota breaker's `retry_after`)."""
        delay = min(RETRY_CEILING, self.retry_base * 2 ** min(attempts - 1, 20))
        if isinstance(exc, errors.BudgetExceeded):
            return max(delay, exc.resets_in)
        return max(delay, float(getattr(exc, "retry_after", 0.0) or 0.0))

    async def _quietly(self, write: Awaitable[object]) -> bool:
        try:
            await write
        except errors.BotError as exc:
            log.warning("recall: the index could not be updated: %s", type(exc).__name__)
            return False
        return True

    def _still_wanted(self, document: Document) -> bool:
        return document.message_id not in self._deleted_in_flight and self._enabled_now(document.guild_id)

    # -- retries ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start taking parked messages back when their retry time comes (those of a previous run too)."""
        if self._retrier is None or self._retrier.done():
            self._retrier = asyncio.create_task(self._retry_parked(), name="recall-retry")

    async def _retry_parked(self) -> None:
        while True:
            self._parked.clear()
            try:
                due_at = await self.index.next_retry()
                if due_at is not None:
                    due_at = max(due_at, self._hold_until)
                now = time.time()
                if due_at is not None and due_at <= now:
                    await self._take_due(now)
                    continue
            except errors.BotError as exc:
                log.warning("recall: parked messages could not be read: %s", type(exc).__name__)
                due_at = time.time() + self.retry_base
            wait = None if due_at is None else max(0.0, due_at - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._parked.wait(), wait)

    async def _take_due(self, now: float) -> None:
        due = await self.index.due(now, self.batch_size * max(1, self.settings.recall_concurrency))
        busy = self._pending.keys() | self._in_flight.keys()
        taken = [(d, attempts) for d, attempts in due if d.message_id not in busy]
        if not taken:
            # Everything due is already queued again (an edit): it settles with that attempt.
            await asyncio.sleep(BATCH_WINDOW)
            return
        for document, attempts in taken:
            self._attempts[document.message_id] = attempts
        self.stats.retried += len(taken)
        self._enqueue(d for d, _ in taken)
        await self.idle()

    def _enabled_now(self, guild_id: int) -> bool:
        # Turned off while the batch was in flight: its vectors must not be written after the delete.
        return self.index._enabled.get(guild_id, True)

    async def idle(self) -> None:
        """Wait until everything submitted so far is embedded and stored (or failed)."""
        await self._idle.wait()

    async def close(self) -> None:
        loops = [task for task in (self._flusher, self._retrier) if task is not None]
        for task in [*loops, *self._batches]:
            task.cancel()
        await asyncio.gather(*loops, *self._batches, return_exceptions=True)

    # -- deletion and the switch --------------------------------------------------------------------

    async def forget_messages(self, message_ids: Iterable[int]) -> int:
        ids = list(message_ids)
        for message_id in ids:
            self._pending.pop(message_id, None)
            if message_id in self._in_flight:
                self._deleted_in_flight.add(message_id)
        return await self.index.delete_messages(ids)

    async def forget_channel(self, channel_id: int) -> int:
        """A channel or thread was deleted: its vectors, its threads' and their queued messages go."""
        for message_id, document in list(self._pending.items()):
            if channel_id in (document.channel_id, document.parent_channel_id):
                del self._pending[message_id]
        for message_id, document in self._in_flight.items():
            if channel_id in (document.channel_id, document.parent_channel_id):
                self._deleted_in_flight.add(message_id)
        return await self.index.delete_channel(channel_id)

    async def enable(self, guild_id: int, user_id: int) -> bool:
        return await self.index.enable(guild_id, user_id)

    async def disable(self, guild_id: int) -> int:
        for message_id, document in list(self._pending.items()):
            if document.guild_id == guild_id:
                del self._pending[message_id]
        return await self.index.disable(guild_id)

    # -- search -------------------------------------------------------------------------------------

    async def channels(self, guild_id: int) -> set[tuple[int, int]]:
        return await self.index.channels(guild_id)

    async def search(
        self, context: CallContext, query: str, channel_ids: Iterable[int], *, limit: int = 5
    ) -> list[Match]:
        """Moderate the query, embed it, match it among `channel_ids` (those the member can read)."""
        assert context.guild_id is not None
        if is_blank(query):
            raise errors.InvalidInput(message_id="input.recall.empty")
        if len(query) > MAX_QUERY_CHARS:
            raise errors.InvalidInput(message_id="input.recall.too_long", limit=f"{MAX_QUERY_CHARS:,}")
        if not await self.index.enabled(context.guild_id):
            raise errors.InvalidInput(message_id="input.recall.off")
        await self.moderator.gate.require_clean_input(query, context=context, what="Your query")
        vector = await self._embed_query(query, context)
        return await self.index.search(context.guild_id, vector, channel_ids, limit=limit)

    async def _embed_query(self, query: str, context: CallContext) -> list[float]:
        vectors = await self.gateway.embed(
            [query], context=context, model=self.model, dimensions=self.dimensions or None, deadline=20.0
        )
        return vectors[0]

    async def recollect(
        self, context: CallContext, prompt: str, *, exclude_texts: Sequence[str] = (), limit: int = 3
    ) -> list[Match]:
        """/ask's long memory: the channel's older messages closest to a (moderated) prompt, or none."""
        if context.guild_id is None or context.channel_id is None or limit <= 0:
            return []
        if not await self.index.enabled(context.guild_id):
            return []
        vector = await self._embed_query(prompt, context)
        return await self.index.search(
            context.guild_id,
            vector,
            [context.channel_id],
            limit=limit,
            min_score=ASK_MIN_SCORE,
            exclude_texts=exclude_texts,
        )

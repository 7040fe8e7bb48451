"""Per-channel moderation watermarks: the newest message id up to which every message was handled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from bot.privacy.owner import DataOwner, Fate, Retention, TablePolicy
from bot.storage.store import Store, StoreError

log = logging.getLogger(__name__)


@dataclass
class _Channel:
    guild_id: int
    mark: int = 0  # every message of the channel at or below it was handled
    flushed: int = 0
    in_flight: set[int] = field(default_factory=set)
    done_above: set[int] = field(default_factory=set)  # handled, but above an unhandled message
    held: int = 0  # the generation of a pending catch-up: messages above `mark` may still be unseen

    def settle(self) -> None:
        """Advance the mark over handled messages, never past one still in flight or a pending catch-up."""
        if self.held:
            return
        lowest = min(self.in_flight, default=None)
        below = [m for m in self.done_above if lowest is None or m < lowest]
        if below:
            self.mark = max(self.mark, *below)
            self.done_above.difference_update(below)


class Watermarks(DataOwner):
    """In-memory marks, flushed to SQLite in group commits (every `flush_interval` seconds, every
    `flush_every` handled messages, and at close) rather than one write per message.

    A message is `claim`ed before it is moderated and `finish`ed once its verdict was acted on (or it
    was queued durably, or skipped). Moderation runs concurrently, so the mark only advances past a
    message once every older claimed one is finished: after a crash, catch-up resumes at the mark and
    sees every message whose verdict may not have been acted on.
    """

    owned_tables = (
        TablePolicy(
            "moderation_watermarks",
            "no member data: per channel, the newest message id moderation has handled",
            Fate.NOT_PERSONAL,
            Retention.DATABASE,
        ),
    )

    def __init__(self, store: Store, *, flush_interval: float = 1.0, flush_every: int = 200) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.flush_every = flush_every
        self._channels: dict[int, _Channel] = {}
        self._unflushed = 0
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._loaded = False
        self._generation = 0

    async def load(self, *, hold: bool = True) -> None:
        """Read the stored marks (once); with `hold`, they stay held until a catch-up ran."""
        if self._loaded:
            return
        self._loaded = True
        rows = await self.store.fetchall("SELECT channel_id, guild_id, message_id FROM moderation_watermarks")
        for row in rows:
            channel = self._channels.setdefault(int(row["channel_id"]), _Channel(int(row["guild_id"])))
            channel.mark = max(channel.mark, int(row["message_id"]))
            channel.flushed = channel.mark
        if hold:
            # Until the start-up catch-up ran, nothing above the stored marks is known to be handled.
            self.hold()

    def channels(self) -> dict[int, int]:
        """Every channel with a mark or a hold: {channel_id: guild_id}."""
        return {channel_id: channel.guild_id for channel_id, channel in self._channels.items()}

    def mark(self, channel_id: int) -> int:
        channel = self._channels.get(channel_id)
        return channel.mark if channel is not None else 0

    def handled(self, channel_id: int, message_id: int) -> bool:
        """Whether the message was already moderated here (at or below the mark, or finished above it)."""
        channel = self._channels.get(channel_id)
        if channel is None:
            return False
        return message_id <= channel.mark or message_id in channel.done_above

    def hold(self, channels: dict[int, int] | None = None) -> int:
        """Keep marks where they are until `release`: a catch-up is pending, and messages handled live
        meanwhile must not carry a mark past ones the gateway never delivered. Holds every known channel
        plus `channels` ({channel_id: guild_id}); returns the hold's generation, for `release`."""
        self._generation += 1
        for channel_id, guild_id in (channels or {}).items():
            self._channels.setdefault(channel_id, _Channel(guild_id))
        for channel in self._channels.values():
            channel.held = self._generation
        return self._generation

    def release(self, channel_id: int, generation: int) -> None:
        """End the hold of `generation` on a channel (a newer hold, from a later disconnect, stays)."""
        channel = self._channels.get(channel_id)
        if channel is not None and channel.held == generation:
            channel.held = 0
            self._settled(channel)

    def claim(self, guild_id: int, channel_id: int, message_id: int) -> bool:
        """Start handling a message; False when it is handled or being handled already."""
        channel = self._channels.get(channel_id)
        if channel is None:  # not setdefault: every message would build a _Channel to throw away
            channel = self._channels[channel_id] = _Channel(guild_id)
        if message_id <= channel.mark or message_id in channel.done_above or message_id in channel.in_flight:
            return False
        channel.in_flight.add(message_id)
        return True

    def finish(self, channel_id: int, message_id: int, *, handled: bool = True) -> None:
        """The message's verdict was acted on (or it can never be: `handled=False` still lets the mark
        move on rather than stall the channel for good)."""
        channel = self._channels.get(channel_id)
        if channel is None or message_id not in channel.in_flight:
            return
        channel.in_flight.discard(message_id)
        channel.done_above.add(message_id)
        if not handled:
            log.info("a message in channel %s was given up on by moderation", channel_id)
        self._settled(channel)

    def _settled(self, channel: _Channel) -> None:
        before = channel.mark
        channel.settle()
        if channel.mark != before:
            self._unflushed += 1
            if self._unflushed >= self.flush_every:
                self._wake.set()
            self._ensure_flusher()

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            with contextlib.suppress(RuntimeError):  # no running loop: close() flushes
                self._flusher = asyncio.get_running_loop().create_task(
                    self._flush_forever(), name="moderation-watermarks"
                )

    async def _flush_forever(self) -> None:
        """Flush while marks keep moving; end once a round found nothing to write (the next move that
        finds no flusher starts one), so an idle bot keeps no task for it."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            try:
                if not await self.flush():
                    return
            except StoreError:
                log.warning("moderation watermarks could not be saved; retrying", exc_info=True)

    async def flush(self) -> int:
        """Write every mark that moved since the last flush, in one transaction; returns how many."""
        changed = [(cid, c.guild_id, c.mark) for cid, c in self._channels.items() if c.mark > c.flushed]
        self._unflushed = 0
        if not changed:
            return 0
        now = time.time()
        async with self.store.transaction() as db:
            await db.executemany(
                "INSERT INTO moderation_watermarks (channel_id, guild_id, message_id, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET "
                # The mark never moves back; CASE, not MAX()/GREATEST(), which only one dialect each knows.
                "message_id = CASE WHEN excluded.message_id > moderation_watermarks.message_id "
                "THEN excluded.message_id ELSE moderation_watermarks.message_id END, "
                "updated_at = excluded.updated_at",
                [(cid, gid, mark, now) for cid, gid, mark in changed],
            )
        for cid, _gid, mark in changed:
            self._channels[cid].flushed = max(self._channels[cid].flushed, mark)
        return len(changed)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush()

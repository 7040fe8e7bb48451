"""One budget of streaming edits per second, shared by every answer that streams at the same time."""

from __future__ import annotations

import math


class StreamPacer:
    """How long a streaming answer waits between two edits: `interval` seconds while few answers stream,
    longer once they are more than `per_second` edits a second can serve at that pace.

    Discord allows a bot 50 requests a second in all, and a streamed answer edits once a second: 200
    answers streaming at once would ask for 200. Under such a burst each answer still shows its first
    text at once and its whole text at the end; only the edits in between come further apart.
    """

    def __init__(self, interval: float, per_second: float) -> None:
        self.base_interval = interval
        self.per_second = per_second
        self.streaming = 0  # answers between their first text and their end

    @classmethod
    def for_process(
        cls, interval: float, per_second: float, held_shards: int, shard_count: int
    ) -> StreamPacer:
        """The pacer of one process: Discord's request limit is the bot's, so each process of a sharded bot
        takes its shards' share of `per_second`."""
        return cls(interval, per_second * held_shards / max(1, shard_count))

    @classmethod
    def fixed(cls, interval: float) -> StreamPacer:
        """A pacer that shares nothing: always `interval` (a reply or a check paced on its own)."""
        return cls(interval, math.inf)

    def interval(self) -> float:
        return max(self.base_interval, self.streaming / self.per_second)

    def started(self) -> None:
        self.streaming += 1

    def finished(self) -> None:
        self.streaming = max(0, self.streaming - 1)

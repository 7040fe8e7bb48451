"""The shared streaming-edit budget: the interval as answers start and end, and a sharded process's share."""

from __future__ import annotations

import pytest

from bot.util.pacing import StreamPacer


def test_few_answers_keep_their_own_interval_and_many_share_the_budget() -> None:
    pacer = StreamPacer(1.0, 20)
    for _ in range(20):
        pacer.started()
    assert pacer.interval() == 1.0  # 20 answers once a second: the budget exactly
    for _ in range(180):
        pacer.started()
    assert pacer.interval() == pytest.approx(10.0)  # 200 answers share 20 edits a second
    for _ in range(200):
        pacer.finished()
    assert pacer.interval() == 1.0
    pacer.finished()  # an extra end never makes the count negative
    assert pacer.streaming == 0


def test_each_process_of_a_sharded_bot_paces_its_shards_share() -> None:
    assert StreamPacer.for_process(1.0, 20, held_shards=1, shard_count=1).per_second == 20
    assert StreamPacer.for_process(1.0, 20, held_shards=2, shard_count=4).per_second == 10
    assert StreamPacer.for_process(1.0, 20, held_shards=1, shard_count=8).per_second == 2.5


def test_a_fixed_pacer_keeps_its_interval_however_many_stream() -> None:
    pacer = StreamPacer.fixed(0.5)
    for _ in range(10_000):
        pacer.started()
    assert pacer.interval() == 0.5

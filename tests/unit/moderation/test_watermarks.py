"""Watermarks: the mark never passes a message still being moderated or a pending catch-up, and is saved
in group commits."""

from __future__ import annotations

from pathlib import Path

from bot.moderation.watermarks import Watermarks
from bot.storage.store import Store, open_store

GUILD, CHANNEL = 1, 10


async def stored(store: Store) -> list[tuple[int, int]]:
    rows = await store.fetchall("SELECT channel_id, message_id FROM moderation_watermarks")
    return [(int(r[0]), int(r[1])) for r in rows]


async def test_the_mark_waits_for_older_messages_in_flight_and_is_saved_in_one_write(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "w.db")
    await store.migrate()
    marks = Watermarks(store, flush_interval=60)
    for message_id in (101, 102, 103):
        assert marks.claim(GUILD, CHANNEL, message_id)
    assert not marks.claim(GUILD, CHANNEL, 102), "a message in flight is not claimed twice"
    marks.finish(CHANNEL, 103)
    marks.finish(CHANNEL, 102)
    assert marks.mark(CHANNEL) == 0, "101 is still in flight: a crash now must see it again"
    assert marks.handled(CHANNEL, 103) and not marks.handled(CHANNEL, 101)
    marks.finish(CHANNEL, 101)
    assert marks.mark(CHANNEL) == 103
    assert not marks.claim(GUILD, CHANNEL, 102)
    assert await stored(store) == [], "nothing written per message"
    await marks.close()
    assert await stored(store) == [(CHANNEL, 103)]

    reloaded = Watermarks(store)
    await reloaded.load()
    assert reloaded.mark(CHANNEL) == 103
    # Held until a catch-up ran: live messages must not carry the mark past ones never delivered.
    assert reloaded.claim(GUILD, CHANNEL, 110)
    reloaded.finish(CHANNEL, 110)
    assert reloaded.mark(CHANNEL) == 103 and reloaded.handled(CHANNEL, 110)
    generation = reloaded.hold({CHANNEL: GUILD})
    reloaded.release(CHANNEL, generation - 1)
    assert reloaded.mark(CHANNEL) == 103, "an older hold's release leaves a newer hold alone"
    reloaded.release(CHANNEL, generation)
    assert reloaded.mark(CHANNEL) == 110
    await reloaded.close()
    assert await stored(store) == [(CHANNEL, 110)]
    await store.close()

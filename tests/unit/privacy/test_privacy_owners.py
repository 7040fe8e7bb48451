"""Every table that holds a user or channel id answers to /forget me and the purge through exactly one owner."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from bot.discord_io.client import OpenAIBot
from bot.privacy.owner import Fate, Retention, TablePolicy
from bot.privacy.registry import INFRASTRUCTURE_TABLES, Privacy

# Column names that carry a Discord user or channel id (including "who set this" columns).
ID_COLUMN = re.compile(r"(^|_)(user|author|member|channel|owner|recipient|target)_id$|(^|_)by$")


def privacy_of(bot: OpenAIBot) -> Privacy:
    privacy = bot.services.privacy
    assert privacy is not None
    return privacy


async def schema(bot: OpenAIBot) -> dict[str, list[str]]:
    """Every table after all migrations, with its column names (as the backend reports them)."""
    store = bot.services.store
    return {name: await store.columns(name) for name in await store.tables()}


async def test_every_table_with_a_user_or_channel_id_is_claimed_by_an_owner(bot: OpenAIBot) -> None:
    columns = await schema(bot)
    holding_ids = {table for table, names in columns.items() if any(ID_COLUMN.search(n) for n in names)}
    # The introspection sees the tables it must: a regex that matched nothing would pass vacuously.
    assert {
        "turns",
        "usage_events",
        "moderation_actions",
        "moderation_strikes",
        "moderation_queue",
    } <= holding_ids
    claimed = set(privacy_of(bot).policies)
    assert holding_ids - claimed == set(), "a table holding user or channel ids escapes /forget me"
    # Stricter: every table states its policy, even those that hold no id.
    assert set(columns) - INFRASTRUCTURE_TABLES - claimed == set()
    assert await privacy_of(bot).unclaimed_tables() == []
    assert claimed <= set(columns), "an owner claims a table the migrations never create"


async def test_a_new_table_with_a_user_id_fails_the_check(bot: OpenAIBot) -> None:
    await bot.services.store.execute(
        "CREATE TABLE reminders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL)"
    )
    assert await privacy_of(bot).unclaimed_tables() == ["reminders"]


async def test_no_table_is_claimed_twice(bot: OpenAIBot) -> None:
    privacy = privacy_of(bot)
    claims = Counter(policy.table for owner in privacy.owners for policy in owner.owned_tables)
    assert claims and max(claims.values()) == 1, [t for t, n in claims.items() if n > 1]
    with pytest.raises(ValueError, match="claimed by two"):
        Privacy(bot.services.store, [bot.services.history, bot.services.history])


async def test_kept_tables_say_why_and_for_how_long(bot: OpenAIBot) -> None:
    kept = [p for p in privacy_of(bot).policies.values() if p.on_forget_user is Fate.KEPT]
    assert {p.table for p in kept} == {"moderation_actions", "moderation_strikes", "moderation_queue"}
    for policy in kept:
        assert policy.why_kept
        assert policy.retention in {Retention.MODERATION, Retention.UNTIL_MODERATED}
    with pytest.raises(ValueError, match="without saying why"):
        TablePolicy("notes", "notes", Fate.KEPT, Retention.MODERATION)

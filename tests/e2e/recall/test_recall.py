"""/recall against the fakes: what was embedded (batched), what Discord showed, what the database holds."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Any

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import ask, chat_bodies, run
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World

VIEW_CHANNEL = 1 << 10
READ_HISTORY = 1 << 16


async def vectors(bot: OpenAIBot, **where: int) -> list[dict[str, Any]]:
    clause = " AND ".join(f"{k} = ?" for k in where) or "1 = 1"
    rows = await bot.services.store.fetchall(
        f"SELECT message_id, channel_id, author_id, excerpt, model, length(vector) AS size "  # noqa: S608
        f"FROM recall_vectors WHERE {clause} ORDER BY message_id",
        tuple(where.values()),
    )
    return [dict(r) for r in rows]


async def wait_for_vectors(bot: OpenAIBot, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await vectors(bot)
        if len(rows) >= count:
            await bot.services.recall.idle()
            return await vectors(bot)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(rows)} vectors after {timeout}s, wanted {count}")
        await asyncio.sleep(0.02)


def embedding_inputs(fake_openai: FakeOpenAI) -> list[list[str]]:
    out = []
    for request in fake_openai.calls("/embeddings"):
        value = request.json["input"]
        out.append([value] if isinstance(value, str) else list(value))
    return out


async def enable(fake_discord: FakeDiscord, world: World) -> Any:
    return await run(fake_discord, world, "recall enable", user=world.moderator_id)


async def test_enable_requires_manage_server_checked_in_code(
    bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    done = await run(fake_discord, world, "recall enable", user=world.member_id)
    assert "Manage Server" in done.all_text()
    assert done.ephemeral
    assert await bot.services.store.fetchall("SELECT * FROM recall_servers") == []


async def test_backfill_indexes_clean_history_in_batches_and_search_shows_jump_links(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    too_old = dt.datetime.now(dt.UTC) - dt.timedelta(days=45)
    fake_discord.seed_history(
        world.channel_id,
        [
            {
                "author_id": world.member_id,
                "content": "my pizza dough recipe needs flour water yeast salt",
                "timestamp": old,
            },
            {
                "author_id": world.member_id,
                "content": "FLAGME you are awful",
                "timestamp": old + dt.timedelta(seconds=1),
            },
            {
                "author_id": world.moderator_id,
                "content": "the server rules are posted in the welcome channel",
                "timestamp": old + dt.timedelta(seconds=2),
            },
            {"author_id": world.member_id, "content": "a pizza message from long ago", "timestamp": too_old},
        ],
    )
    fake_discord.seed_history(
        world.other_channel_id,
        [{"author_id": world.member_id, "content": "bring snacks to the game night", "timestamp": old}],
    )
    interaction = await enable(fake_discord, world)
    await interaction.wait_for(lambda i: "Indexed" in i.all_text(), timeout=15)
    assert "Indexed 3 of 4 messages from the last 30 days in 2 channels" in interaction.all_text()
    assert interaction.ephemeral

    rows = await vectors(bot)
    texts = sorted(r["excerpt"] for r in rows)
    assert texts == sorted(
        [
            "my pizza dough recipe needs flour water yeast salt",
            "the server rules are posted in the welcome channel",
            "bring snacks to the game night",
        ]
    )
    assert all(r["size"] == 512 * 4 and r["model"] == "text-embedding-3-small" for r in rows)
    # Batched: the three clean messages went in one request, shortened to 512 dimensions; the flagged one never.
    requests = fake_openai.calls("/embeddings")
    assert len(requests) == 1 and requests[0].json["dimensions"] == 512
    assert sorted(requests[0].json["input"]) == texts
    assert not any("FLAGME" in text for batch in embedding_inputs(fake_openai) for text in batch)

    done = await run(fake_discord, world, "recall search", {"query": "pizza dough recipe"})
    assert done.ephemeral
    text = done.all_text()
    pizza = next(r for r in rows if "pizza" in r["excerpt"])
    assert f"https://discord.com/channels/{world.guild_id}/{world.channel_id}/{pizza['message_id']}" in text
    assert f"<@{world.member_id}>" in text and re.search(r"<t:\d+:f>", text)
    first = text.splitlines()[1]
    assert str(pizza["message_id"]) in first  # the best match comes first
    assert embedding_inputs(fake_openai)[-1] == ["pizza dough recipe"]

    scoped = await run(
        fake_discord, world, "recall search", {"query": "snacks game night", "scope": "channel"}
    )
    assert "discord.com/channels" in scoped.all_text()
    assert f"/{world.other_channel_id}/" not in scoped.all_text()


async def test_flagged_query_makes_no_embedding_call(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(recall_backfill_days=0)
    await enable(fake_discord, world)
    done = await run(fake_discord, world, "recall search", {"query": "FLAGME where are they"})
    assert done.ephemeral
    assert "discord.com/channels" not in done.all_text()
    assert fake_openai.calls("/embeddings") == []
    assert await bot.services.recall.index.count() == 0


async def test_search_when_off_says_how_to_turn_it_on(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await run(fake_discord, world, "recall search", {"query": "anything"})
    assert "/recall enable" in done.all_text()
    assert fake_openai.calls("/embeddings") == []


async def test_live_messages_that_pass_are_indexed_and_deletions_remove_them(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(recall_backfill_days=0)
    await enable(fake_discord, world)
    kept = await fake_discord.post_message(
        world.channel_id, world.member_id, "tomorrow we hike the north ridge"
    )
    gone = await fake_discord.post_message(world.channel_id, world.member_id, "my phone number changed")
    await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME live insult")
    mod = await fake_discord.post_message(
        world.other_channel_id, world.moderator_id, "meeting moved to friday"
    )
    rows = await wait_for_vectors(bot, 3)
    assert {r["message_id"] for r in rows} == {int(kept["id"]), int(gone["id"]), int(mod["id"])}
    # Live messages arriving together share a request.
    assert max(len(batch) for batch in embedding_inputs(fake_openai)) >= 2

    await fake_discord.delete_message_event(world.channel_id, int(gone["id"]))
    for _ in range(200):
        if len(await vectors(bot)) == 2:
            break
        await asyncio.sleep(0.02)
    assert {r["message_id"] for r in await vectors(bot)} == {int(kept["id"]), int(mod["id"])}

    done = await run(fake_discord, world, "recall search", {"query": "phone number changed"})
    assert str(gone["id"]) not in done.all_text()

    await run(fake_discord, world, "forget me", user=world.member_id)
    assert [r["message_id"] for r in await vectors(bot)] == [int(mod["id"])]
    await run(fake_discord, world, "forget channel", channel=world.other_channel_id, user=world.moderator_id)
    assert await vectors(bot) == []


async def test_members_only_see_matches_from_channels_they_can_read(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, start_bot: BotFactory
) -> None:
    secret = fake_discord.add_channel(world.guild_id, "mods-only")
    guild = fake_discord.world.guild(world.guild_id)
    fake_discord.world.channel(secret).extra["permission_overwrites"] = [
        {"id": str(world.guild_id), "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)},
        {
            "id": str(world.moderator_role_id),
            "type": 0,
            "allow": str(VIEW_CHANNEL | READ_HISTORY),
            "deny": "0",
        },
        {"id": str(guild.bot_role_id), "type": 0, "allow": str(VIEW_CHANNEL | READ_HISTORY), "deny": "0"},
    ]
    bot = await start_bot(recall_backfill_days=0)
    await enable(fake_discord, world)
    hidden = await fake_discord.post_message(secret, world.moderator_id, "the ban list for raid accounts")
    public = await fake_discord.post_message(
        world.channel_id, world.moderator_id, "raid warning for everyone"
    )
    await wait_for_vectors(bot, 2)

    member_view = (
        await run(fake_discord, world, "recall search", {"query": "raid accounts ban list"})
    ).all_text()
    assert str(public["id"]) in member_view
    assert str(hidden["id"]) not in member_view
    mod_view = (
        await run(
            fake_discord, world, "recall search", {"query": "raid accounts ban list"}, user=world.moderator_id
        )
    ).all_text()
    assert str(hidden["id"]) in mod_view.splitlines()[1]


async def test_ask_is_offered_an_old_match_with_its_date(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    old = dt.datetime(2025, 3, 14, 9, 30, tzinfo=dt.UTC)
    fake_discord.seed_history(
        world.channel_id,
        [
            {
                "author_id": world.member_id,
                "content": "the wifi password for the studio is orange-kite-77",
                "timestamp": old,
            },
            {
                "author_id": world.member_id,
                "content": "lunch is at noon",
                "timestamp": old + dt.timedelta(seconds=5),
            },
        ],
    )
    bot = await start_bot(recall_backfill_days=800)
    interaction = await enable(fake_discord, world)
    await interaction.wait_for(lambda i: "Indexed" in i.all_text(), timeout=15)
    await ask(fake_discord, world, "what is the wifi password for the studio")
    messages = chat_bodies(fake_openai)[-1]["messages"]
    # The quotes go just before the prompt, after the stable prefix the prompt cache keeps hitting.
    recalled = messages[-2]
    assert recalled["role"] == "system" and messages[-1]["role"] == "user"
    system = recalled["content"]
    assert "orange-kite-77" in system and "2025-03-14 09:30 UTC" in system
    assert "lunch is at noon" not in system  # not close enough to be offered
    assert "orange-kite-77" not in messages[0]["content"]
    assert embedding_inputs(fake_openai)[-1] == ["what is the wifi password for the studio"]

    await run(fake_discord, world, "recall disable", user=world.moderator_id)
    assert await bot.services.recall.index.count() == 0
    await ask(fake_discord, world, "what is the wifi password for the studio")
    assert not any("orange-kite-77" in str(m["content"]) for m in chat_bodies(fake_openai)[-1]["messages"])


async def test_retention_purge_removes_old_vectors(
    start_bot: BotFactory, fake_discord: FakeDiscord, world: World
) -> None:
    fake_discord.seed_history(
        world.channel_id,
        [
            {
                "author_id": world.member_id,
                "content": "an old note",
                "timestamp": dt.datetime.now(dt.UTC) - dt.timedelta(days=20),
            },
            {
                "author_id": world.member_id,
                "content": "a new note",
                "timestamp": dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
            },
        ],
    )
    bot = await start_bot()
    interaction = await enable(fake_discord, world)
    await interaction.wait_for(lambda i: "Indexed" in i.all_text(), timeout=15)
    assert len(await vectors(bot)) == 2
    await bot.services.privacy.purge_expired(retention_days=10)
    assert [r["excerpt"] for r in await vectors(bot)] == ["a new note"]

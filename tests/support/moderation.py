"""Helpers shared by the moderation tests: policy changes, stored actions and strikes, what was moderated."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.discord_io.client import OpenAIBot
from bot.moderation.channel import ChannelModerator
from bot.moderation.policy import Policy
from testkit.discord import FakeDiscord
from testkit.openai import FakeOpenAI


def moderator(bot: OpenAIBot) -> ChannelModerator:
    channel = bot.services.channel_moderation
    assert channel is not None
    return channel


async def set_policy(bot: OpenAIBot, guild_id: int, **changes: Any) -> Policy:
    return await moderator(bot).policies.update(guild_id, **changes)


async def rows(bot: OpenAIBot, sql: str, *params: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in await bot.services.store.fetchall(sql, params)]


async def actions(bot: OpenAIBot) -> list[dict[str, Any]]:
    return await rows(bot, "SELECT * FROM moderation_actions ORDER BY id")


async def strikes(bot: OpenAIBot) -> list[dict[str, Any]]:
    return await rows(bot, "SELECT * FROM moderation_strikes ORDER BY id")


def moderated_texts(fake_openai: FakeOpenAI) -> list[str]:
    """Every string input the fake Moderation endpoint was asked to judge (answered or not)."""
    out: list[str] = []
    for request in fake_openai.calls("/moderations"):
        value = (request.json or {}).get("input")
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out += [v for v in value if isinstance(v, str)]
            out += [p["text"] for p in value if isinstance(p, dict) and p.get("type") == "text"]
    return out


def image_requests(fake_openai: FakeOpenAI) -> list[list[dict[str, Any]]]:
    return [
        r.json["input"]
        for r in fake_openai.calls("/moderations")
        if isinstance(r.json["input"], list)
        and any(isinstance(p, dict) and p.get("type") == "image_url" for p in r.json["input"])
    ]


def bot_posts(fake: FakeDiscord, channel_id: int) -> list[dict[str, Any]]:
    return [m for m in fake.messages_in(channel_id) if int(m["author"]["id"]) == fake.bot_user_id]


async def settle(seconds: float = 0.15) -> None:
    """Let the bot process events it has no visible reaction to (a clean message)."""
    await asyncio.sleep(seconds)

"""Moderation effects on Discord that both automatic actions and moderators' buttons use: timeouts, reports."""

from __future__ import annotations

import datetime as dt
import logging

import discord

from bot.discord_io.client import OpenAIBot
from bot.moderation.policy import Policy

log = logging.getLogger(__name__)
PERMISSION_PURPOSE = {
    "Manage Messages": "delete flagged messages",
    "Manage Threads": "rename and lock threads and forum posts with flagged names",
    "Timeout Members": "time out members (or their role is above mine)",
    "Send Messages": "post warnings or the mod-log",
}


async def report_missing(bot: OpenAIBot, policy: Policy, permission: str, channel_id: int | None) -> None:
    """Once per server and permission, in plain words in the mod-log (or the bot's log)."""
    if not bot.modlog.first_report(policy.guild_id, permission):
        return
    where = f" in <#{channel_id}>" if channel_id else ""
    text = (
        f"I am missing the **{permission}** permission{where}, so I cannot "
        f"{PERMISSION_PURPOSE.get(permission, 'act')}. Grant it to my role; "
        "until then moderation only logs. (Reported once.)"
    )
    log.warning("moderation in server %s is missing the %s permission", policy.guild_id, permission)
    if policy.modlog_channel_id is not None:
        await bot.modlog.post(policy.guild_id, policy.modlog_channel_id, content=text)


async def timeout_member(bot: OpenAIBot, policy: Policy, user_id: int, seconds: float, reason: str) -> bool:
    """Time a member out; a refusal is reported to the server once and answered with False.

    The server may be on another process's shards (this one drains the outage queue for all): it is then
    fetched over REST rather than read from this process's cache."""
    try:
        guild = bot.get_guild(policy.guild_id) or await bot.fetch_guild(policy.guild_id)
        member = await guild.fetch_member(user_id)
        await member.timeout(dt.timedelta(seconds=seconds), reason=reason)
    except discord.Forbidden:
        await report_missing(bot, policy, "Timeout Members", None)
        return False
    except discord.HTTPException as exc:
        log.warning("timing out a member failed: HTTP %s", exc.status)
        return False
    return True

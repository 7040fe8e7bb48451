"""Moderation effects on Discord that both automatic actions and moderators' buttons use: timeouts, reports."""

from __future__ import annotations

import datetime as dt
import logging

import discord

from bot.discord_io.client import OpenAIBot
from bot.i18n import translate
from bot.moderation.policy import Policy

log = logging.getLogger(__name__)
# Each permission moderation needs: its catalog name, and what the bot cannot do without it.
PERMISSIONS: dict[str, tuple[str, str]] = {
    "Manage Messages": ("permission.manage_messages", "moderation.missing.purpose.delete"),
    "Manage Threads": ("permission.manage_threads", "moderation.missing.purpose.retitle"),
    "Timeout Members": ("permission.moderate_members", "moderation.missing.purpose.timeout"),
    "Send Messages": ("permission.send_messages", "moderation.missing.purpose.post"),
}


def missing_permission_text(permission: str, channel_id: int | None, locale: str | None) -> str:
    name_id, purpose_id = PERMISSIONS.get(permission, ("", "moderation.missing.purpose.act"))
    name = translate(name_id, locale) if name_id else permission
    where_id = "moderation.missing.in_channel" if channel_id else "moderation.missing.anywhere"
    return translate(
        where_id,
        locale,
        permission=name,
        channel=f"<#{channel_id}>" if channel_id else "",
        purpose=translate(purpose_id, locale),
    )


async def report_missing(bot: OpenAIBot, policy: Policy, permission: str, channel_id: int | None) -> None:
    """Once per server and permission, in plain words in the mod-log (or the bot's log)."""
    if not bot.modlog.first_report(policy.guild_id, permission):
        return
    log.warning("moderation in server %s is missing the %s permission", policy.guild_id, permission)
    if policy.modlog_channel_id is not None:
        text = missing_permission_text(permission, channel_id, await bot.modlog.locale_for(policy.guild_id))
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

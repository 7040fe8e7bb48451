"""Failures as Discord sees them: the one clear sentence for any error, sent ephemerally or in the channel."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import aiohttp
import discord
from discord import app_commands

from bot import errors
from bot.discord_io.admission import AdmissionRefused
from bot.discord_io.modlog import public_locale
from bot.i18n import format_span, translate

log = logging.getLogger(__name__)

_PERMISSION_IDS = {
    "manage_messages": "permission.manage_messages",
    "manage_channels": "permission.manage_channels",
    "manage_guild": "permission.manage_guild",
    "moderate_members": "permission.moderate_members",
    "read_message_history": "permission.read_message_history",
    "administrator": "permission.administrator",
    "send_messages": "permission.send_messages",
    "embed_links": "permission.embed_links",
    "attach_files": "permission.attach_files",
}


def _permission_list(names: list[str], locale: str | None) -> str:
    return ", ".join(
        translate(_PERMISSION_IDS[n], locale) if n in _PERMISSION_IDS else n.replace("_", " ").title()
        for n in names
    )


def describe_failure(error: BaseException, locale: str | None = None, *, admin: bool = False) -> str:
    """The one sentence a user sees for any failure, in `locale`. Unknown errors never leak details.

    `admin`: the reader can act on the detail (a setting, an API code), which members never see.
    """
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, AdmissionRefused):
        error = error.error
    if isinstance(error, errors.BotError):
        detail = error.admin_message(locale) if admin else None
        return detail or error.user_message(locale)
    if isinstance(error, app_commands.MissingPermissions):
        return translate(
            "failure.member_permission",
            locale,
            permissions=_permission_list(error.missing_permissions, locale),
        )
    if isinstance(error, app_commands.BotMissingPermissions):
        return translate(
            "failure.bot_permission", locale, permissions=_permission_list(error.missing_permissions, locale)
        )
    if isinstance(error, app_commands.NoPrivateMessage):
        return translate("failure.server_only", locale)
    if isinstance(error, app_commands.CommandOnCooldown):
        wait = format_span(max(1.0, error.retry_after), locale, round_up=True)
        return translate("error.slow_down.user", locale, wait=wait)
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or translate("failure.check", locale)
    if isinstance(error, discord.Forbidden):
        return translate("failure.discord_forbidden", locale)
    if isinstance(error, discord.HTTPException):
        return translate("failure.discord_http", locale)
    return translate("failure.unknown", locale)


def reader_is_admin(interaction: discord.Interaction[Any]) -> bool:
    """An admin of this server (Manage Server): the one who can act on a setting or the OpenAI account."""
    return interaction.guild is not None and interaction.permissions.manage_guild


def token_expired(error: discord.HTTPException) -> bool:
    """Discord refuses an interaction's token after 15 minutes: 401 50027, or 404 Unknown Webhook/Interaction."""
    return error.status == 401 or error.code in (50027, 10015, 10062)


def is_expected(error: BaseException) -> bool:
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    return isinstance(error, errors.BotError | app_commands.CheckFailure | discord.Forbidden)


async def send_failure(interaction: discord.Interaction, error: BaseException) -> None:
    """Tell the user what failed, ephemerally and in their language, whether or not it was deferred."""
    text = describe_failure(error, str(interaction.locale), admin=reader_is_admin(interaction))
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True)
            return
        # A public "thinking…" placeholder or a partial answer must not stay behind.
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
        await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException as exc:
        if token_expired(exc):
            # The interaction expired (15 min): say it in the channel instead of dropping it.
            channel = interaction.channel
            if isinstance(channel, discord.abc.Messageable):
                # A public post: the server's language, and never an admin's detail.
                public = describe_failure(error, await public_locale(interaction))
                with contextlib.suppress(discord.HTTPException):
                    await channel.send(f"{interaction.user.mention} {public}")
                    return
        log.warning(
            "could not deliver a failure message for /%s",
            interaction.command.qualified_name if interaction.command else "?",
        )
    except (aiohttp.ClientError, OSError) as exc:
        # The connection to Discord dropped (network, shutdown): nothing more can be said to this user.
        log.warning("could not deliver a failure message: %s", type(exc).__name__)

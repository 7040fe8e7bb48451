"""Failures as Discord sees them: the one clear sentence for any error, sent ephemerally or in the channel."""

from __future__ import annotations

import contextlib
import logging

import aiohttp
import discord
from discord import app_commands

from bot import errors

log = logging.getLogger(__name__)

_PERMISSION_NAMES = {
    "manage_messages": "Manage Messages",
    "manage_channels": "Manage Channels",
    "manage_guild": "Manage Server",
    "moderate_members": "Timeout Members",
    "read_message_history": "Read Message History",
    "administrator": "Administrator",
}


def _permission_list(names: list[str]) -> str:
    return ", ".join(_PERMISSION_NAMES.get(n, n.replace("_", " ").title()) for n in names)


def describe_failure(error: BaseException) -> str:
    """The one sentence a user sees for any failure. Unknown errors never leak details."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, errors.BotError):
        return error.user_message()
    if isinstance(error, app_commands.MissingPermissions):
        return f"You need the {_permission_list(error.missing_permissions)} permission to use this command."
    if isinstance(error, app_commands.BotMissingPermissions):
        return (
            f"I am missing the {_permission_list(error.missing_permissions)} permission here. "
            "Ask an admin to grant it to my role."
        )
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "You can't use this command here."
    if isinstance(error, discord.Forbidden):
        return "Discord refused the action: I am missing a permission in this channel. Ask an admin to check my role."
    if isinstance(error, discord.HTTPException):
        return "Discord had a problem delivering my reply. Please try again."
    return "Something went wrong on my side and it has been logged. Please try again in a moment."


def token_expired(error: discord.HTTPException) -> bool:
    """Discord refuses an interaction's token after 15 minutes: 401 50027, or 404 Unknown Webhook/Interaction."""
    return error.status == 401 or error.code in (50027, 10015, 10062)


def is_expected(error: BaseException) -> bool:
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    return isinstance(error, errors.BotError | app_commands.CheckFailure | discord.Forbidden)


async def send_failure(interaction: discord.Interaction, error: BaseException) -> None:
    """Tell the user what failed, ephemerally, whether or not the interaction was deferred."""
    text = describe_failure(error)
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
                with contextlib.suppress(discord.HTTPException):
                    await channel.send(f"{interaction.user.mention} {text}")
                    return
        log.warning(
            "could not deliver a failure message for /%s",
            interaction.command.qualified_name if interaction.command else "?",
        )
    except (aiohttp.ClientError, OSError) as exc:
        # The connection to Discord dropped (network, shutdown): nothing more can be said to this user.
        log.warning("could not deliver a failure message: %s", type(exc).__name__)

"""The Discord side of admission: who is asking, read from an interaction or a message, for bot.cost.admission."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import discord
from discord import app_commands

from bot import errors
from bot.cost.admission import Admission, Requester, refusal_reason


class AdmissionRefused(app_commands.CheckFailure):
    """A domain refusal raised from an interaction check, rendered by the one error handler."""

    def __init__(self, error: errors.BotError) -> None:
        # The English text for logs and callers that read str(); the failure handler renders `error` by locale.
        super().__init__(error.user_message("en"))
        self.error = error
        self.reason = refusal_reason(error)


def root_command_name(command: object) -> str:
    """'ask' for /ask, 'forget' for /forget me, the menu's name for a context menu."""
    if isinstance(command, app_commands.Command | app_commands.Group):
        return (command.root_parent or command).name
    return str(getattr(command, "name", "?"))


def parent_channel_id(channel: object) -> int:
    """A thread's (or forum post's) channel, whose /model and persona it inherits; 0 for anything else."""
    if isinstance(channel, discord.Thread):
        return channel.parent_id or 0
    return 0


def requester(
    guild: discord.Guild | None,
    user: discord.Member | discord.User,
    channel_id: int | None = None,
    parent_id: int | None = None,
) -> Requester:
    if guild is None or not isinstance(user, discord.Member):
        return Requester(
            guild.id if guild else None, user.id, channel_id=channel_id, parent_channel_id=parent_id
        )
    return Requester(
        guild.id,
        user.id,
        role_ids=frozenset(role.id for role in user.roles),
        manages_server=user.guild_permissions.manage_guild,
        role_names={role.id: role.name for role in guild.roles},
        channel_id=channel_id,
        parent_channel_id=parent_id,
    )


async def admit_interaction(
    admission: Admission, interaction: discord.Interaction[Any], command: str, options: Mapping[str, object]
) -> None:
    """Raise AdmissionRefused unless `command` may run for this interaction now (takes its rate token).
    Slash commands and menus pass here from the tree; buttons that spend money or post call it themselves."""
    try:
        await admission.admit(
            command,
            requester(
                interaction.guild,
                interaction.user,
                interaction.channel_id,
                parent_channel_id(interaction.channel),
            ),
            options,
        )
    except errors.BotError as exc:
        raise AdmissionRefused(exc) from exc


async def check_interaction(admission: Admission, interaction: discord.Interaction[Any]) -> None:
    """The tree's check for application commands; autocomplete runs and spends nothing."""
    if interaction.type is not discord.InteractionType.application_command:
        return
    if interaction.command is None:
        # An unknown command: only the allowlist applies (the tree then says it does not exist).
        try:
            admission.check_server(interaction.guild_id)
        except errors.BotError as exc:
            raise AdmissionRefused(exc) from exc
        return
    options = {name: value for name, value in interaction.namespace}
    await admit_interaction(admission, interaction, root_command_name(interaction.command), options)

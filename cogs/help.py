"""/help: the commands this member can use here, one line each, in their language."""

from __future__ import annotations

import inspect
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.discord_io.admission import requester, root_command_name
from bot.discord_io.client import OpenAIBot
from bot.discord_io.translator import command_description, command_label
from bot.i18n import translate

EMBED_DESCRIPTION_LIMIT = 4096


def _has_default_permissions(
    command: app_commands.Command[Any, ..., Any], permissions: discord.Permissions
) -> bool:
    root = command.root_parent or command
    needed = root.default_permissions
    if needed is None or permissions.administrator:
        return True
    return needed.value & permissions.value == needed.value


async def _passes_checks(
    command: app_commands.Command[Any, ..., Any], interaction: discord.Interaction[Any]
) -> bool:
    """The command's own checks (permissions in code), run against this member without running the command."""
    for check in command.checks:
        try:
            result = check(interaction)
            if inspect.isawaitable(result):
                result = await result
        except app_commands.CheckFailure:
            return False
        if not result:
            return False
    return True


class Help(commands.Cog):
    def __init__(self, bot: OpenAIBot) -> None:
        self.bot = bot

    async def usable_commands(
        self, interaction: discord.Interaction[Any]
    ) -> list[app_commands.Command[Any, ..., Any]]:
        """What this member may run here: Discord's default permissions, the code checks, /limits rules."""
        usable: list[app_commands.Command[Any, ..., Any]] = []
        asking = requester(interaction.guild, interaction.user)
        for command in self.bot.tree.walk_commands():
            if not isinstance(command, app_commands.Command):
                continue
            root = command.root_parent or command
            if interaction.guild is None and root.guild_only:
                continue
            if not _has_default_permissions(command, interaction.permissions):
                continue
            if not await _passes_checks(command, interaction):
                continue
            try:
                await self.bot.services.admission.check_rule(root_command_name(command), asking)
            except errors.BotError:
                continue
            usable.append(command)
        return usable

    @app_commands.command(name="help", description="List the commands you can use here")
    async def help(self, interaction: discord.Interaction[Any]) -> None:
        locale = str(interaction.locale)
        usable = await self.usable_commands(interaction)
        lines = [
            translate(
                "help.line",
                locale,
                command=command_label(command, locale),
                description=command_description(command, locale),
            )
            for command in usable
        ]
        description = "\n".join(lines) or translate("help.none", locale)
        embed = discord.Embed(
            title=translate("help.title", locale), description=description[:EMBED_DESCRIPTION_LIMIT]
        )
        embed.set_footer(text=translate("help.count", locale, count=len(usable)))
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: OpenAIBot) -> None:
    await bot.add_cog(Help(bot))

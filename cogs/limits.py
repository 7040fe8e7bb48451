"""/limits (Manage Server): budgets, per-command on/off and role requirements for this server."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.cost.admission import UNRULED_COMMANDS
from bot.cost.ledger import day_start, month_start
from bot.cost.limits import Limits
from bot.discord_io.client import OpenAIBot


def cap_text(cap: float, custom: bool) -> str:
    text = "no cap" if cap <= 0 else f"${cap:.2f}"
    return text + ("" if custom else " (default setting)")


class LimitsCog(commands.Cog):
    limits_group = app_commands.Group(
        name="limits",
        description="Budgets and command rules for this server (Manage Server)",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, bot: OpenAIBot, limits: Limits) -> None:
        self.bot = bot
        self.limits = limits

    def command_names(self) -> set[str]:
        return {c.name for c in self.bot.tree.get_commands()} - UNRULED_COMMANDS

    def _known(self, command: str) -> str:
        name = command.strip().lstrip("/").split(" ")[0]
        names = self.command_names()
        if name not in names:
            raise errors.InvalidInput(
                f"There is no command `{name}` I can set rules for. Commands: "
                + ", ".join(f"`{n}`" for n in sorted(names))
            )
        return name

    @limits_group.command(name="show", description="Show this server's budgets, spending and command rules")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def show(self, interaction: discord.Interaction) -> None:
        assert interaction.guild is not None
        guild = interaction.guild
        budgets = await self.limits.store.budgets(guild.id)
        now = self.limits.clock()
        month = await self.limits.ledger.spent(guild.id, since=month_start(now))
        today = await self.limits.ledger.spent(guild.id, since=day_start(now))
        lines = [
            f"Per-user daily budget: {cap_text(budgets.user_daily_cap, budgets.user_daily_custom)}",
            f"Server monthly budget: {cap_text(budgets.server_monthly_cap, budgets.server_monthly_custom)}",
            f"Spent this month: ${month:.4f} (today: ${today:.4f})",
        ]
        rules = await self.limits.store.rules(guild.id)
        for rule in sorted(rules.values(), key=lambda r: r.command):
            parts = ["on" if rule.enabled else "**off**"]
            if rule.role_id is not None:
                role = guild.get_role(rule.role_id)
                parts.append(f"needs role {role.name if role else '(deleted role)'}")
            lines.append(f"`/{rule.command}`: " + ", ".join(parts))
        if not rules:
            lines.append("Every command is on for everyone.")
        await interaction.response.send_message("\n".join(lines), ephemeral=True)

    @limits_group.command(
        name="budget", description="Set the per-user daily and the server monthly cost caps (USD)"
    )
    @app_commands.describe(
        user_daily="Most one member may spend per UTC day, in USD (0: no cap)",
        server_monthly="Most the whole server may spend per calendar month, in USD (0: no cap)",
        reset="Go back to the bot's default budgets",
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def budget(
        self,
        interaction: discord.Interaction,
        user_daily: app_commands.Range[float, 0, 10000] | None = None,
        server_monthly: app_commands.Range[float, 0, 1000000] | None = None,
        reset: bool = False,
    ) -> None:
        assert interaction.guild_id is not None
        if user_daily is None and server_monthly is None and not reset:
            raise errors.InvalidInput("Give `user_daily`, `server_monthly` or `reset:true`.")
        budgets = await self.limits.store.set_budgets(
            interaction.guild_id,
            user_daily=user_daily,
            server_monthly=server_monthly,
            by=interaction.user.id,
            reset=reset,
        )
        await interaction.response.send_message(
            f"Budgets now: per-user daily {cap_text(budgets.user_daily_cap, budgets.user_daily_custom)}, "
            f"server monthly {cap_text(budgets.server_monthly_cap, budgets.server_monthly_custom)}.",
            ephemeral=True,
        )

    @limits_group.command(name="command", description="Turn a command on or off in this server")
    @app_commands.describe(command="The command's name, e.g. imagine", enabled="On (true) or off (false)")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def command(self, interaction: discord.Interaction, command: str, enabled: bool) -> None:
        assert interaction.guild_id is not None
        name = self._known(command)
        await self.limits.store.set_enabled(interaction.guild_id, name, enabled, interaction.user.id)
        await interaction.response.send_message(
            f"`/{name}` is now {'on' if enabled else 'off'} in this server.", ephemeral=True
        )

    @limits_group.command(
        name="role", description="Require a role to use a command (leave role empty to remove)"
    )
    @app_commands.describe(command="The command's name, e.g. imagine", role="The role needed; empty: anyone")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def role(
        self, interaction: discord.Interaction, command: str, role: discord.Role | None = None
    ) -> None:
        assert interaction.guild_id is not None
        name = self._known(command)
        await self.limits.store.set_role(
            interaction.guild_id, name, role.id if role else None, interaction.user.id
        )
        text = (
            f"`/{name}` now needs the **{role.name}** role" if role else f"`/{name}` no longer needs a role"
        )
        await interaction.response.send_message(
            text + " (members with Manage Server are never blocked by a role rule).", ephemeral=True
        )

    @command.autocomplete("command")
    @role.autocomplete("command")
    async def _command_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [
            app_commands.Choice(name=n, value=n)
            for n in sorted(self.command_names())
            if current.lower() in n.lower()
        ][:25]


async def setup(bot: OpenAIBot) -> None:
    await bot.add_cog(LimitsCog(bot, bot.services.limits))

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
from bot.discord_io.locales import member_locale
from bot.i18n import translate


def cap_text(cap: float, custom: bool, locale: str | None = None) -> str:
    text = translate("limits.no_cap", locale) if cap <= 0 else f"${cap:.2f}"
    return text + ("" if custom else " " + translate("limits.default_setting", locale))


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
                message_id="limits.unknown_command",
                command=name,
                commands=", ".join(f"`{n}`" for n in sorted(names)),
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
        locale = member_locale(interaction)
        user_cap = cap_text(budgets.user_daily_cap, budgets.user_daily_custom, locale)
        server_cap = cap_text(budgets.server_monthly_cap, budgets.server_monthly_custom, locale)
        lines = [
            translate("limits.show.user_daily", locale, cap=user_cap),
            translate("limits.show.server_monthly", locale, cap=server_cap),
            translate("limits.show.spent", locale, month=f"${month:.4f}", today=f"${today:.4f}"),
        ]
        rules = await self.limits.store.rules(guild.id)
        for rule in sorted(rules.values(), key=lambda r: r.command):
            parts = [translate("limits.rule.on" if rule.enabled else "limits.rule.off", locale)]
            if rule.role_id is not None:
                role = guild.get_role(rule.role_id)
                name = role.name if role else translate("limits.rule.deleted_role", locale)
                parts.append(translate("limits.rule.needs_role", locale, role=name))
            lines.append(f"`/{rule.command}`: " + ", ".join(parts))
        if not rules:
            lines.append(translate("limits.show.no_rules", locale))
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
            raise errors.InvalidInput(message_id="limits.budget.nothing_given")
        budgets = await self.limits.store.set_budgets(
            interaction.guild_id,
            user_daily=user_daily,
            server_monthly=server_monthly,
            by=interaction.user.id,
            reset=reset,
        )
        locale = member_locale(interaction)
        await interaction.response.send_message(
            translate(
                "limits.budget.now",
                locale,
                user_daily=cap_text(budgets.user_daily_cap, budgets.user_daily_custom, locale),
                server_monthly=cap_text(budgets.server_monthly_cap, budgets.server_monthly_custom, locale),
            ),
            ephemeral=True,
        )

    @limits_group.command(name="command", description="Turn a command on or off in this server")
    @app_commands.describe(command="The command's name, e.g. imagine", enabled="On (true) or off (false)")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def command(self, interaction: discord.Interaction, command: str, enabled: bool) -> None:
        assert interaction.guild_id is not None
        name = self._known(command)
        await self.limits.store.set_enabled(interaction.guild_id, name, enabled, interaction.user.id)
        message_id = "limits.command.on" if enabled else "limits.command.off"
        await interaction.response.send_message(
            translate(message_id, member_locale(interaction), command=name), ephemeral=True
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
        locale = member_locale(interaction)
        if role is not None:
            text = translate("limits.role.set", locale, command=name, role=role.name)
        else:
            text = translate("limits.role.cleared", locale, command=name)
        await interaction.response.send_message(text, ephemeral=True)

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

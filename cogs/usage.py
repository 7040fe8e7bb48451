"""/usage: a member's own cost today and this month; the server's, with breakdowns, for Manage Server."""

from __future__ import annotations

import asyncio
import io

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.models import ChatModels
from bot.cost.chart import render_cost_chart
from bot.cost.ledger import BreakdownRow, UsageLedger, UsageTotals, day_start, month_start
from bot.discord_io.client import OpenAIBot

SCOPES = [
    app_commands.Choice(name="Me", value="me"),
    app_commands.Choice(name="This server (Manage Server)", value="server"),
]


def money(value: float) -> str:
    return f"${value:.4f}" if value < 1 else f"${value:.2f}"


def describe_totals(totals: UsageTotals) -> str:
    if not totals.calls:
        return "nothing yet"
    parts = [f"**{money(totals.cost)}** over {totals.calls} call{'s' if totals.calls != 1 else ''}"]
    if totals.prompt_tokens or totals.completion_tokens:
        parts.append(f"{totals.prompt_tokens:,} tokens in, {totals.completion_tokens:,} out")
    if totals.images:
        parts.append(f"{totals.images} image{'s' if totals.images != 1 else ''}")
    if totals.audio_seconds:
        parts.append(f"{totals.audio_seconds / 60:.1f} min of audio")
    if totals.unpriced_calls:
        parts.append(f"{totals.unpriced_calls} call(s) of unpriced models not counted")
    return "; ".join(parts)


def describe_rows(rows: list[BreakdownRow], *, users: bool = False) -> str:
    if not rows:
        return "—"
    lines = []
    for row in rows:
        key = row.key
        if users:
            key = f"<@{key}>" if key else "forgotten or anonymised users"
        lines.append(f"{key}: {money(row.cost)} ({row.calls})")
    return "\n".join(lines)[:1024]


class Usage(commands.Cog):
    def __init__(self, bot: OpenAIBot, ledger: UsageLedger, models: ChatModels) -> None:
        self.bot = bot
        self.ledger = ledger
        self.models = models

    @app_commands.command(
        name="usage", description="What the bot's OpenAI calls cost: yours, or the server's"
    )
    @app_commands.describe(scope="Me (default), or the whole server (needs Manage Server)")
    @app_commands.choices(scope=SCOPES)
    @app_commands.guild_only()
    async def usage(self, interaction: discord.Interaction, scope: str = "me") -> None:
        assert interaction.guild_id is not None
        member = interaction.user
        is_admin = isinstance(member, discord.Member) and member.guild_permissions.manage_guild
        if scope == "server" and not is_admin:
            raise app_commands.MissingPermissions(["manage_guild"])
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = interaction.guild_id
        now = self.ledger.clock()
        today, month = day_start(now), month_start(now)
        mine_today = await self.ledger.totals(guild_id, since=today, user_id=member.id)
        mine_month = await self.ledger.totals(guild_id, since=month, user_id=member.id)
        chat_model = await self.models.model_for(guild_id, interaction.channel_id)
        embed = discord.Embed(
            title="OpenAI usage in this server (UTC days)",
            description=f"`/ask` in this channel uses **{chat_model}**; each call is priced by its model.",
        )
        embed.add_field(name="You, today", value=describe_totals(mine_today), inline=False)
        embed.add_field(name="You, this month", value=describe_totals(mine_month), inline=False)
        if mine_month.calls:
            mine_by_model = await self.ledger.breakdown(guild_id, since=month, by="model", user_id=member.id)
            embed.add_field(name="Your models (month)", value=describe_rows(mine_by_model), inline=False)
        chart_user: int | None = member.id
        if scope == "server":
            chart_user = None
            embed.add_field(
                name="Server, today",
                value=describe_totals(await self.ledger.totals(guild_id, since=today)),
                inline=False,
            )
            embed.add_field(
                name="Server, this month",
                value=describe_totals(await self.ledger.totals(guild_id, since=month)),
                inline=False,
            )
            for title, by in (("By command", "command"), ("By model", "model"), ("Top users", "user")):
                rows = await self.ledger.breakdown(guild_id, since=month, by=by)
                embed.add_field(name=f"{title} (month)", value=describe_rows(rows, users=by == "user"))
        elif is_admin:
            embed.set_footer(text="/usage scope:server shows the whole server.")
        days = await self.ledger.daily_costs(guild_id, days=30, user_id=chart_user)
        title = (
            "Server cost per day, last 30 days" if chart_user is None else "Your cost per day, last 30 days"
        )
        png = await asyncio.to_thread(render_cost_chart, days, title)
        embed.set_image(url="attachment://usage.png")
        await interaction.followup.send(
            embed=embed, file=discord.File(io.BytesIO(png), filename="usage.png"), ephemeral=True
        )


async def setup(bot: OpenAIBot) -> None:
    await bot.add_cog(Usage(bot, bot.services.ledger, bot.services.chat_models))

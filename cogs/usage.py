"""/usage: a member's own cost today and this month; the server's, with breakdowns, for Manage Server."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import gzip
import io

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.models import ChatModels
from bot.cost.alerts import BudgetAlerts, BudgetStatus
from bot.cost.chart import render_cost_chart
from bot.cost.ledger import BreakdownRow, LedgerRow, UsageLedger, UsageTotals, day_start, month_start
from bot.discord_io.client import OpenAIBot

SCOPES = [
    app_commands.Choice(name="Me", value="me"),
    app_commands.Choice(name="This server (Manage Server)", value="server"),
    app_commands.Choice(name="This month's ledger as a CSV file (Manage Server)", value="export"),
]
EXPORT_COLUMNS = (
    "time_utc",
    "member",
    "command",
    "kind",
    "model",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "images",
    "audio_seconds",
    "cost_usd",
    "priced_from",
)
# Discord's smallest attachment limit is 10 MiB; a bigger month goes up gzipped.
ATTACHMENT_LIMIT = 8 * 1024 * 1024


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


def describe_cache(cached: int, cacheable: int, totals: UsageTotals) -> str:
    """The prompt cache's share of chat input, and the reasoning inside the output."""
    if not cacheable and not totals.reasoning_tokens:
        return "no chat yet"
    parts = []
    if cacheable:
        parts.append(
            f"{cached:,} of {cacheable:,} chat input tokens from OpenAI's prompt cache ({cached / cacheable:.0%})"
        )
    if totals.completion_tokens:
        parts.append(
            f"{totals.reasoning_tokens:,} of {totals.completion_tokens:,} output tokens were hidden reasoning"
        )
    return "; ".join(parts)


def describe_budget(status: BudgetStatus) -> str:
    projection = f"about {money(status.projection)} by the month's end at this month's rate"
    if status.cap <= 0:
        return f"no monthly cap; {projection}"
    return f"{money(status.spent)} of {money(status.cap)} ({status.percent:.0f}%); {projection}"


def export_csv(rows: list[LedgerRow]) -> str:
    """The ledger as CSV: no message content (the ledger has none); forgotten members without an id."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        if row.user_id is not None:
            member = str(row.user_id)
        else:
            member = "forgotten member" if row.forgotten else "anonymised (older than retention)"
        writer.writerow(
            (
                dt.datetime.fromtimestamp(row.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
                member,
                row.command,
                row.kind,
                row.model,
                row.prompt_tokens,
                row.cached_tokens,
                row.completion_tokens,
                row.reasoning_tokens,
                row.images,
                f"{row.audio_seconds:.1f}",
                "" if row.cost is None else f"{row.cost:.10f}",
                row.priced_from or "",
            )
        )
    return out.getvalue()


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
    def __init__(self, bot: OpenAIBot, ledger: UsageLedger, alerts: BudgetAlerts, models: ChatModels) -> None:
        self.bot = bot
        self.ledger = ledger
        self.alerts = alerts
        self.models = models

    @app_commands.command(
        name="usage", description="What the bot's OpenAI calls cost: yours, or the server's"
    )
    @app_commands.describe(
        scope="Me (default), the whole server, or this month's ledger as CSV (both need Manage Server)"
    )
    @app_commands.choices(scope=SCOPES)
    @app_commands.guild_only()
    async def usage(self, interaction: discord.Interaction, scope: str = "me") -> None:
        assert interaction.guild_id is not None
        member = interaction.user
        is_admin = isinstance(member, discord.Member) and member.guild_permissions.manage_guild
        if scope in ("server", "export") and not is_admin:
            raise app_commands.MissingPermissions(["manage_guild"])
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = interaction.guild_id
        if scope == "export":
            await self._export(interaction, guild_id)
            return
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
            server_month = await self.ledger.totals(guild_id, since=month)
            embed.add_field(name="Server, this month", value=describe_totals(server_month), inline=False)
            cached, cacheable = await self.ledger.cacheable_input(guild_id, since=month)
            embed.add_field(
                name="Prompt cache and reasoning (month)",
                value=describe_cache(cached, cacheable, server_month),
                inline=False,
            )
            embed.add_field(
                name="Monthly budget",
                value=describe_budget(await self.alerts.status(guild_id)),
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

    async def _export(self, interaction: discord.Interaction, guild_id: int) -> None:
        now = self.ledger.clock()
        rows = await self.ledger.month_rows(guild_id, since=month_start(now))
        label = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m")
        data = export_csv(rows).encode()
        name = f"usage-{label}.csv"
        if len(data) > ATTACHMENT_LIMIT:
            data, name = gzip.compress(data), name + ".gz"
        await interaction.followup.send(
            f"This server's OpenAI usage for {label} (UTC): {len(rows)} call{'s' if len(rows) != 1 else ''}. "
            "It holds no message content; members who used `/forget me` appear without an id.",
            file=discord.File(io.BytesIO(data), filename=name),
            ephemeral=True,
        )


async def setup(bot: OpenAIBot) -> None:
    await bot.add_cog(Usage(bot, bot.services.ledger, bot.services.alerts, bot.services.chat_models))

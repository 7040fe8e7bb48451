"""/usage: a member's own cost today and this month; the server's, with breakdowns, for Manage Server."""

from __future__ import annotations

import asyncio
import calendar
import csv
import datetime as dt
import gzip
import io

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.models import ChatModels
from bot.cost.alerts import BudgetAlerts, BudgetStatus
from bot.cost.chart import CostChart, render_cost_chart
from bot.cost.ledger import BreakdownRow, LedgerRow, UsageLedger, UsageTotals, day_start, month_start
from bot.cost.limits import Limits
from bot.discord_io.client import OpenAIBot
from bot.discord_io.locales import member_locale
from bot.i18n import translate
from bot.i18n.time import short_date

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


def describe_totals(totals: UsageTotals, locale: str | None = None) -> str:
    if not totals.calls:
        return translate("usage.nothing_yet", locale)
    parts = [translate("usage.totals.cost", locale, cost=money(totals.cost), count=totals.calls)]
    if totals.prompt_tokens or totals.completion_tokens:
        parts.append(
            translate(
                "usage.totals.tokens",
                locale,
                prompt=f"{totals.prompt_tokens:,}",
                completion=f"{totals.completion_tokens:,}",
            )
        )
    if totals.images:
        parts.append(translate("usage.totals.images", locale, count=totals.images))
    if totals.audio_seconds:
        parts.append(translate("usage.totals.audio", locale, minutes=f"{totals.audio_seconds / 60:.1f}"))
    if totals.unpriced_calls:
        parts.append(translate("usage.totals.unpriced", locale, count=totals.unpriced_calls))
    return translate("usage.separator", locale).join(parts)


def describe_cache(cached: int, cacheable: int, totals: UsageTotals, locale: str | None = None) -> str:
    """The prompt cache's share of chat input, and the reasoning inside the output."""
    if not cacheable and not totals.reasoning_tokens:
        return translate("usage.cache.no_chat", locale)
    parts = []
    if cacheable:
        parts.append(
            translate(
                "usage.cache.share",
                locale,
                cached=f"{cached:,}",
                cacheable=f"{cacheable:,}",
                share=f"{cached / cacheable:.0%}",
            )
        )
    if totals.completion_tokens:
        parts.append(
            translate(
                "usage.cache.reasoning",
                locale,
                reasoning=f"{totals.reasoning_tokens:,}",
                completion=f"{totals.completion_tokens:,}",
            )
        )
    return translate("usage.separator", locale).join(parts)


def describe_budget(status: BudgetStatus, locale: str | None = None) -> str:
    projection = translate("usage.budget.projection", locale, projection=money(status.projection))
    if status.cap <= 0:
        return translate("usage.budget.no_cap", locale, projection=projection)
    return translate(
        "usage.budget.spent",
        locale,
        spent=money(status.spent),
        cap=money(status.cap),
        percent=f"{status.percent:.0f}",
        projection=projection,
    )


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


def describe_rows(rows: list[BreakdownRow], *, users: bool = False, locale: str | None = None) -> str:
    if not rows:
        return "—"
    lines = []
    for row in rows:
        key = row.key
        if users:
            key = f"<@{key}>" if key else translate("usage.forgotten_users", locale)
        lines.append(f"{key}: {money(row.cost)} ({row.calls})")
    return "\n".join(lines)[:1024]


class Usage(commands.Cog):
    def __init__(
        self, bot: OpenAIBot, ledger: UsageLedger, alerts: BudgetAlerts, models: ChatModels, limits: Limits
    ) -> None:
        self.bot = bot
        self.ledger = ledger
        self.alerts = alerts
        self.models = models
        self.limits = limits

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
        locale = member_locale(interaction)
        if scope == "export":
            await self._export(interaction, guild_id)
            return
        now = self.ledger.clock()
        today, month = day_start(now), month_start(now)
        mine_today = await self.ledger.totals(guild_id, since=today, user_id=member.id)
        mine_month = await self.ledger.totals(guild_id, since=month, user_id=member.id)
        chat_model = await self.models.model_for(guild_id, interaction.channel_id)
        embed = discord.Embed(
            title=translate("usage.title", locale),
            description=translate("usage.description", locale, model=chat_model),
        )
        embed.add_field(
            name=translate("usage.you.today", locale), value=describe_totals(mine_today, locale), inline=False
        )
        embed.add_field(
            name=translate("usage.you.month", locale), value=describe_totals(mine_month, locale), inline=False
        )
        if mine_month.calls:
            mine_by_model = await self.ledger.breakdown(guild_id, since=month, by="model", user_id=member.id)
            embed.add_field(
                name=translate("usage.you.models", locale),
                value=describe_rows(mine_by_model, locale=locale),
                inline=False,
            )
        chart_user: int | None = member.id
        if scope == "server":
            chart_user = None
            embed.add_field(
                name=translate("usage.server.today", locale),
                value=describe_totals(await self.ledger.totals(guild_id, since=today), locale),
                inline=False,
            )
            server_month = await self.ledger.totals(guild_id, since=month)
            embed.add_field(
                name=translate("usage.server.month", locale),
                value=describe_totals(server_month, locale),
                inline=False,
            )
            cached, cacheable = await self.ledger.cacheable_input(guild_id, since=month)
            embed.add_field(
                name=translate("usage.server.cache", locale),
                value=describe_cache(cached, cacheable, server_month, locale),
                inline=False,
            )
            embed.add_field(
                name=translate("usage.server.budget", locale),
                value=describe_budget(await self.alerts.status(guild_id), locale),
                inline=False,
            )
            for title_id, by in (
                ("usage.by.command", "command"),
                ("usage.by.model", "model"),
                ("usage.by.user", "user"),
            ):
                rows = await self.ledger.breakdown(guild_id, since=month, by=by)
                embed.add_field(
                    name=translate(title_id, locale),
                    value=describe_rows(rows, users=by == "user", locale=locale),
                )
        elif is_admin:
            embed.set_footer(text=translate("usage.footer.server_hint", locale))
        days = await self.ledger.daily_costs(guild_id, days=30, user_id=chart_user)
        chart = await self._chart(guild_id, days, locale, server=chart_user is None)
        if chart.empty:
            # Nothing spent in 30 days: a sentence says so instead of a chart of empty days.
            embed.add_field(
                name=translate("usage.chart.empty.title", locale),
                value=translate("usage.chart.empty", locale),
                inline=False,
            )
            await interaction.followup.send(embed=embed, ephemeral=True)
            return
        png = await asyncio.to_thread(render_cost_chart, chart)
        embed.set_image(url="attachment://usage.png")
        await interaction.followup.send(
            embed=embed, file=discord.File(io.BytesIO(png), filename="usage.png"), ephemeral=True
        )

    async def _chart(
        self, guild_id: int, days: list[tuple[dt.date, float]], locale: str, *, server: bool
    ) -> CostChart:
        """The chart's data and words: the member's daily cap, or the server's monthly cap as a daily pace."""
        budgets = await self.limits.store.budgets(guild_id)
        cap: float | None = None
        cap_label = ""
        if server and budgets.server_monthly_cap > 0:
            today = days[-1][0] if days else dt.datetime.now(dt.UTC).date()
            month_days = calendar.monthrange(today.year, today.month)[1]
            cap = budgets.server_monthly_cap / month_days
            cap_label = translate(
                "usage.chart.cap.server", locale, cap=money(budgets.server_monthly_cap), per_day=money(cap)
            )
        elif not server and budgets.user_daily_cap > 0:
            cap = budgets.user_daily_cap
            cap_label = translate("usage.chart.cap.user", locale, cap=money(cap))
        return CostChart(
            title=translate("usage.chart.title.server" if server else "usage.chart.title.user", locale),
            days=days,
            date_labels=[short_date(day, locale) for day, _ in days],
            cost_label=translate("usage.chart.cost", locale),
            partial_label=translate("usage.chart.today", locale),
            cap=cap,
            cap_label=cap_label,
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
            translate("usage.export", member_locale(interaction), month=label, count=len(rows)),
            file=discord.File(io.BytesIO(data), filename=name),
            ephemeral=True,
        )


async def setup(bot: OpenAIBot) -> None:
    services = bot.services
    await bot.add_cog(Usage(bot, services.ledger, services.alerts, services.chat_models, services.limits))

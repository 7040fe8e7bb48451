"""Wires cost control into the bot, and admits each slash command (allowlist, rules, roles, budgets)."""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot import errors
from bot.cost.breaker import QuotaBreaker
from bot.cost.ledger import UsageLedger
from bot.cost.limits import Limits, plan_for_command
from bot.cost.pricing import load_prices
from bot.cost.rules import LimitsStore
from bot.privacy.registry import Privacy, RetentionDays
from bot.settings import Settings
from bot.storage.store import StoreError

if TYPE_CHECKING:
    from bot.discord_io.client import OpenAIBot, Services

log = logging.getLogger(__name__)

# Commands no per-server rule can turn off: admins must never lock themselves out of /limits.
UNRULED_COMMANDS = frozenset({"limits"})


class AdmissionRefused(app_commands.CheckFailure):
    """A domain refusal raised from the tree's interaction_check, rendered by the one error handler."""

    def __init__(self, error: errors.BotError) -> None:
        super().__init__(error.user_message())
        self.error = error


def guild_allowed(settings: Settings, guild_id: int | None) -> bool:
    return not settings.allowed_guild_ids or guild_id is None or guild_id in settings.allowed_guild_ids


def root_command_name(command: object) -> str:
    """'ask' for /ask, 'forget' for /forget me, the menu's name for a context menu."""
    if isinstance(command, app_commands.Command | app_commands.Group):
        return (command.root_parent or command).name
    return str(getattr(command, "name", "?"))


def install_cost_control(bot: OpenAIBot, services: Services) -> None:
    """Build the ledger, limits, breaker and privacy services and hook them into the gateway."""
    settings = services.settings
    prices = load_prices(settings.prices_file)
    ledger = UsageLedger(services.store, prices)

    async def notify(guild_id: int, text: str) -> None:
        await post_to_modlog(bot, services, guild_id, text)

    breaker = QuotaBreaker(settings.quota_cooldown, notify=notify)
    limits = Limits(LimitsStore(services.store, settings), ledger, prices, settings, breaker)
    services.ledger = ledger
    services.limits = limits
    services.privacy = Privacy(
        services.store,
        [
            services.history,
            ledger,
            limits.store,
            *(services.channel_moderation.data_owners if services.channel_moderation else ()),
            *([services.auto_transcribe] if services.auto_transcribe else []),
        ],
        retention=RetentionDays(settings.retention_days, settings.moderation_retention_days),
    )
    services.gateway.usage_sink = ledger.record
    services.gateway.guard = limits


async def post_to_modlog(bot: discord.Client, services: Services, guild_id: int, text: str) -> None:
    """Post to the server's mod-log channel (set with the moderation settings); log when there is none."""
    try:
        row = await services.store.fetchone(
            "SELECT modlog_channel_id FROM moderation_policies WHERE guild_id = ?", (guild_id,)
        )
    except (sqlite3.Error, StoreError):
        row = None
    channel = bot.get_channel(int(row[0])) if row is not None and row[0] is not None else None
    if not isinstance(channel, discord.abc.Messageable):
        log.warning("server %s has no mod-log channel to tell about the OpenAI credit", guild_id)
        return
    await channel.send(text)


async def check_interaction(interaction: discord.Interaction[Any]) -> None:
    """Raise AdmissionRefused unless this slash command may run now; consumes the user's rate token."""
    if interaction.type is not discord.InteractionType.application_command:
        return  # autocomplete: nothing is run or spent
    services = interaction.client.services
    if not guild_allowed(services.settings, interaction.guild_id):
        log.info("ignored an interaction from server %s (not in ALLOWED_GUILD_IDS)", interaction.guild_id)
        raise AdmissionRefused(errors.GuildNotAllowed())
    if interaction.command is None:
        return
    limits: Limits | None = services.limits
    if limits is None:
        return
    name = root_command_name(interaction.command)
    guild = interaction.guild
    try:
        if guild is not None and name not in UNRULED_COMMANDS:
            await check_rule(limits, guild, interaction.user, name)
        options = {k: v for k, v in interaction.namespace}
        plan = plan_for_command(
            name, options, services.settings, interaction.guild_id or 0, interaction.user.id
        )
        if plan is not None:
            await limits.admit_request(interaction.guild_id or 0, interaction.user.id, plan)
    except errors.BotError as exc:
        raise AdmissionRefused(exc) from exc


async def check_rule(
    limits: Limits, guild: discord.Guild, member: discord.Member | discord.User, name: str
) -> None:
    """The server's /limits rule for `name` (on/off, required role); used by slash commands and mentions."""
    rule = await limits.store.rule(guild.id, name)
    if not rule.enabled:
        raise errors.CommandDisabled(name)
    if rule.role_id is None or not isinstance(member, discord.Member):
        return
    if member.guild_permissions.manage_guild or any(r.id == rule.role_id for r in member.roles):
        return
    role = guild.get_role(rule.role_id)
    raise errors.RoleRequired(
        name, role.name if role else "(a deleted role: an admin must update /limits role)"
    )

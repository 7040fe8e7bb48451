"""/moderation ...: the server's moderation policy, its status at a glance, and a tuning test (Manage Server)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice
from discord.ext import commands

from bot import errors
from bot.errors import CATEGORY_IDS, category_names
from bot.i18n import format_span, translate
from bot.moderation.channel import ChannelModerator
from bot.moderation.policy import ACTION_LABELS, ACTIONS, CATEGORIES, Policy
from cogs.moderation.modlog import action_label

# Readable names ("Self-harm: intent"); the translator shows each member their language's.
CATEGORY_CHOICES = [Choice(name=translate(CATEGORY_IDS[c], "en"), value=c) for c in CATEGORIES]
ACTION_CHOICES = [Choice(name=ACTION_LABELS[a], value=a) for a in ACTIONS]
manage_server = app_commands.checks.has_permissions(manage_guild=True)


def _category(category: str, locale: str) -> str:
    """A category as admin texts show it: its API name, as the mod-log and `/moderation test` show it."""
    return translate("choice.default", locale) if category == "default" else category


def policy_embed(policy: Policy, *, queued: int, outage: str | None, locale: str) -> discord.Embed:
    def t(message_id: str, **params: object) -> str:
        return translate(message_id, locale, **params)

    embed = discord.Embed(
        title=t("moderation.status.title"),
        colour=discord.Colour.green() if policy.enabled else discord.Colour.dark_grey(),
        description=t("moderation.status.on" if policy.enabled else "moderation.status.off"),
    )
    thresholds = "\n".join(
        t("moderation.status.threshold_line", category=_category(c, locale), score=f"{v:.2f}")
        for c, v in sorted(policy.thresholds.items())
    )
    embed.add_field(
        name=t("moderation.status.thresholds"),
        value=thresholds + "\n" + t("moderation.status.thresholds_others")
        if thresholds
        else t("moderation.status.thresholds_all"),
        inline=False,
    )
    lines = [t("moderation.status.action_default", action=action_label(policy.default_action, locale))]
    lines += [
        t("moderation.status.action_line", category=_category(c, locale), action=action_label(a, locale))
        for c, a in sorted(policy.actions.items())
    ]
    embed.add_field(name=t("moderation.status.actions"), value="\n".join(lines), inline=False)
    escalation = (
        t(
            "moderation.status.escalation_on",
            timeout=format_span(policy.timeout_seconds, locale),
            strikes=policy.strikes_to_timeout,
            window=format_span(policy.strike_window, locale),
        )
        if policy.strikes_to_timeout
        else t("moderation.status.none")
    )
    embed.add_field(name=t("moderation.status.escalation"), value=escalation, inline=False)
    roles = " ".join(f"<@&{r}>" for r in sorted(policy.exempt_roles)) or t("moderation.status.none")
    channels = " ".join(f"<#{c}>" for c in sorted(policy.exempt_channels)) or t("moderation.status.none")
    embed.add_field(name=t("moderation.status.exempt_roles"), value=roles[:1024], inline=True)
    embed.add_field(name=t("moderation.status.exempt_channels"), value=channels[:1024], inline=True)
    modlog = (
        f"<#{policy.modlog_channel_id}>" if policy.modlog_channel_id else t("moderation.status.modlog_unset")
    )
    embed.add_field(name=t("moderation.status.modlog"), value=modlog, inline=False)
    embed.add_field(
        name=t("moderation.status.when_down"),
        value=t("moderation.status.fail_open" if policy.fail_open else "moderation.status.fail_closed"),
        inline=False,
    )
    state_id = {"quota": "moderation.status.endpoint_quota", "outage": "moderation.status.endpoint_failing"}
    state = t(state_id.get(outage or "", "moderation.status.endpoint_ok"))
    embed.add_field(
        name=t("moderation.status.endpoint"),
        value=t("moderation.status.endpoint_line", state=state, count=queued),
        inline=False,
    )
    return embed


class ModerationCommands(commands.Cog):
    moderation = app_commands.Group(
        name="moderation",
        description="Automatic moderation of this server (Manage Server)",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, moderator: ChannelModerator) -> None:
        self.moderator = moderator
        self.policies = moderator.policies

    async def _updated(
        self,
        interaction: discord.Interaction[Any],
        message_id: str,
        params: Mapping[str, object],
        **changes: Any,
    ) -> None:
        assert interaction.guild_id is not None
        await self.policies.update(interaction.guild_id, **changes)
        summary = translate(message_id, str(interaction.locale), **params)
        await interaction.response.send_message(summary, ephemeral=True)

    async def _policy(self, interaction: discord.Interaction[Any]) -> Policy:
        assert interaction.guild_id is not None
        return await self.policies.get(interaction.guild_id)

    @moderation.command(name="status", description="Show this server's whole moderation policy")
    @manage_server
    async def status(self, interaction: discord.Interaction[Any]) -> None:
        policy = await self._policy(interaction)
        queued = await self.moderator.queue.count(policy.guild_id)
        locale = str(interaction.locale)
        embed = policy_embed(policy, queued=queued, outage=self.moderator.outage, locale=locale)
        batcher = self.moderator.gate.batcher
        if batcher is not None:
            stats = batcher.stats
            embed.set_footer(
                text=translate(
                    "moderation.status.footer",
                    locale,
                    inputs=stats.inputs,
                    requests=stats.requests,
                    failed=stats.failed_requests,
                    cached=stats.cache_hits,
                )
            )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @moderation.command(name="enable", description="Turn automatic moderation on or off here")
    @app_commands.describe(enabled="On (true) or off (false)")
    @manage_server
    async def enable(self, interaction: discord.Interaction[Any], enabled: bool) -> None:
        await self._updated(
            interaction, "moderation.enabled.on" if enabled else "moderation.enabled.off", {}, enabled=enabled
        )

    @moderation.command(
        name="threshold", description="Act on a category from this score (omit: the endpoint's flag)"
    )
    @app_commands.describe(
        category="The moderation category",
        value="Score from 0.01 to 1; lower is stricter. Leave out to follow the endpoint.",
    )
    @app_commands.choices(category=CATEGORY_CHOICES)
    @manage_server
    async def threshold(
        self,
        interaction: discord.Interaction[Any],
        category: str,
        value: app_commands.Range[float, 0.01, 1.0] | None = None,
    ) -> None:
        thresholds = dict((await self._policy(interaction)).thresholds)
        name = _category(category, str(interaction.locale))
        if value is None:
            thresholds.pop(category, None)
            await self._updated(
                interaction, "moderation.threshold.endpoint", {"category": name}, thresholds=thresholds
            )
            return
        thresholds[category] = float(value)
        await self._updated(
            interaction,
            "moderation.threshold.set",
            {"category": name, "score": f"{value:.2f}"},
            thresholds=thresholds,
        )

    @moderation.command(name="action", description="What to do when a category is hit")
    @app_commands.describe(
        category="A category, or 'default' for every category without its own action",
        action="Log only, delete, or delete and warn the author",
    )
    @app_commands.choices(
        category=[Choice(name="default", value="default"), *CATEGORY_CHOICES], action=ACTION_CHOICES
    )
    @manage_server
    async def action(self, interaction: discord.Interaction[Any], category: str, action: str) -> None:
        locale = str(interaction.locale)
        summary = {"category": _category(category, locale), "action": action_label(action, locale)}
        if category == "default":
            await self._updated(interaction, "moderation.action.set", summary, default_action=action)
            return
        actions: dict[str, str] = dict((await self._policy(interaction)).actions)
        actions[category] = action
        await self._updated(interaction, "moderation.action.set", summary, actions=actions)

    @moderation.command(name="escalation", description="Time members out after N strikes within a window")
    @app_commands.describe(
        strikes="Strikes that trigger a timeout; 0 turns escalation off",
        window_minutes="Strikes older than this are forgotten",
        timeout_minutes="How long the timeout lasts",
    )
    @manage_server
    async def escalation(
        self,
        interaction: discord.Interaction[Any],
        strikes: app_commands.Range[int, 0, 100],
        window_minutes: app_commands.Range[int, 1, 525600] = 1440,
        timeout_minutes: app_commands.Range[int, 1, 40320] = 10,
    ) -> None:
        locale = str(interaction.locale)
        summary = {
            "timeout": format_span(timeout_minutes * 60, locale),
            "strikes": strikes,
            "window": format_span(window_minutes * 60, locale),
        }
        await self._updated(
            interaction,
            "moderation.escalation.on" if strikes else "moderation.escalation.off",
            summary,
            strikes_to_timeout=strikes,
            strike_window=window_minutes * 60.0,
            timeout_seconds=timeout_minutes * 60.0,
        )

    @moderation.command(name="exempt-role", description="Skip (or stop skipping) members with a role")
    @app_commands.describe(
        role="The role whose members moderation skips", exempt="Skip it (true) or not (false)"
    )
    @manage_server
    async def exempt_role(
        self, interaction: discord.Interaction[Any], role: discord.Role, exempt: bool = True
    ) -> None:
        roles = set((await self._policy(interaction)).exempt_roles)
        roles = roles | {role.id} if exempt else roles - {role.id}
        await self._updated(
            interaction,
            "moderation.exempt.on" if exempt else "moderation.exempt.off",
            {"target": f"<@&{role.id}>"},
            exempt_roles=frozenset(roles),
        )

    @moderation.command(
        name="exempt-channel", description="Skip (or stop skipping) a channel and its threads"
    )
    @app_commands.describe(
        channel="The channel (and its threads) moderation skips", exempt="Skip it (true) or not (false)"
    )
    @manage_server
    async def exempt_channel(
        self,
        interaction: discord.Interaction[Any],
        channel: discord.TextChannel | discord.ForumChannel | discord.Thread | discord.VoiceChannel,
        exempt: bool = True,
    ) -> None:
        channels = set((await self._policy(interaction)).exempt_channels)
        channels = channels | {channel.id} if exempt else channels - {channel.id}
        await self._updated(
            interaction,
            "moderation.exempt.on" if exempt else "moderation.exempt.off",
            {"target": f"<#{channel.id}>"},
            exempt_channels=frozenset(channels),
        )

    @moderation.command(name="log-channel", description="Where moderation reports go (omit to unset)")
    @app_commands.describe(channel="The channel for moderation reports; leave out to unset it")
    @manage_server
    async def log_channel(
        self, interaction: discord.Interaction[Any], channel: discord.TextChannel | None = None
    ) -> None:
        if channel is None:
            await self._updated(interaction, "moderation.log_channel.unset", {}, modlog_channel_id=None)
            return
        perms = channel.permissions_for(channel.guild.me)
        if not (perms.send_messages and perms.embed_links):
            raise errors.InvalidInput(message_id="input.moderation.log_channel", channel=f"<#{channel.id}>")
        await self._updated(
            interaction,
            "moderation.log_channel.set",
            {"channel": f"<#{channel.id}>"},
            modlog_channel_id=channel.id,
        )

    @moderation.command(
        name="fail-open", description="When moderation is down, let commands through unmoderated"
    )
    @app_commands.describe(enabled="Let commands through (true) or refuse them (false) while it is down")
    @manage_server
    async def fail_open(self, interaction: discord.Interaction[Any], enabled: bool) -> None:
        await self._updated(
            interaction,
            "moderation.fail_open.on" if enabled else "moderation.fail_open.off",
            {},
            fail_open=enabled,
        )

    @moderation.command(name="test", description="Show the scores of a text and what the policy would do")
    @app_commands.describe(text="The text to score; nothing is posted or stored")
    @manage_server
    async def test(self, interaction: discord.Interaction[Any], text: str) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        verdict, decision = await self.moderator.test_text(
            interaction.guild_id, text, user_id=interaction.user.id
        )
        policy = await self._policy(interaction)
        locale = str(interaction.locale)
        hits = set(decision.categories) if decision else set()
        top = sorted(verdict.scores.items(), key=lambda item: item[1], reverse=True)[:8]
        lines = []
        for category, score in top:
            threshold = policy.thresholds.get(category)
            rule = (
                translate("moderation.test.threshold", locale, threshold=f"{threshold:.2f}")
                if threshold is not None
                else translate("moderation.test.endpoint", locale)
            )
            mark = translate("moderation.test.hit" if category in hits else "moderation.test.ok", locale)
            lines.append(
                translate(
                    "moderation.test.line",
                    locale,
                    category=category,
                    score=f"{score:.4f}",
                    rule=rule,
                    mark=mark,
                )
            )
        verdict_line = (
            translate(
                "moderation.test.would",
                locale,
                action=action_label(decision.action, locale),
                categories=category_names(decision.categories, locale),
            )
            if decision
            else translate("moderation.test.nothing", locale)
        )
        if not policy.enabled:
            verdict_line += " " + translate("moderation.test.off", locale)
        await interaction.followup.send("\n".join([*lines, verdict_line]), ephemeral=True)

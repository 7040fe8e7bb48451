"""/moderation ...: the server's moderation policy, its status at a glance, and a tuning test (Manage Server)."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice
from discord.ext import commands

from bot import errors
from bot.errors import CATEGORY_IDS
from bot.i18n import translate
from bot.moderation.channel import ChannelModerator
from bot.moderation.policy import ACTION_LABELS, ACTIONS, CATEGORIES, Policy
from bot.spans import format_seconds

# Readable names ("Self-harm: intent"); the translator shows each member their language's.
CATEGORY_CHOICES = [Choice(name=translate(CATEGORY_IDS[c], "en"), value=c) for c in CATEGORIES]
ACTION_CHOICES = [Choice(name=ACTION_LABELS[a], value=a) for a in ACTIONS]
manage_server = app_commands.checks.has_permissions(manage_guild=True)


def policy_embed(policy: Policy, *, queued: int, outage: str | None) -> discord.Embed:
    embed = discord.Embed(
        title="Moderation policy",
        colour=discord.Colour.green() if policy.enabled else discord.Colour.dark_grey(),
        description="**On**: every message and edit is moderated." if policy.enabled else "**Off**.",
    )
    thresholds = "\n".join(f"{c}: {v:.2f}" for c, v in sorted(policy.thresholds.items()))
    embed.add_field(
        name="Thresholds",
        value=(thresholds + "\nothers: " if thresholds else "all: ") + "when the endpoint flags",
        inline=False,
    )
    overrides = "\n".join(f"{c}: {ACTION_LABELS[a]}" for c, a in sorted(policy.actions.items()))
    embed.add_field(
        name="Actions",
        value=f"default: {ACTION_LABELS[policy.default_action]}" + (f"\n{overrides}" if overrides else ""),
        inline=False,
    )
    escalation = (
        f"timeout {format_seconds(policy.timeout_seconds, measured=False)} "
        f"after {policy.strikes_to_timeout} strikes "
        f"within {format_seconds(policy.strike_window, measured=False)}"
        if policy.strikes_to_timeout
        else "none"
    )
    embed.add_field(name="Escalation", value=escalation, inline=False)
    roles = " ".join(f"<@&{r}>" for r in sorted(policy.exempt_roles)) or "none"
    channels = " ".join(f"<#{c}>" for c in sorted(policy.exempt_channels)) or "none"
    embed.add_field(name="Exempt roles", value=roles[:1024], inline=True)
    embed.add_field(name="Exempt channels", value=channels[:1024], inline=True)
    modlog = f"<#{policy.modlog_channel_id}>" if policy.modlog_channel_id else "not set (the bot's own log)"
    embed.add_field(name="Mod-log", value=modlog, inline=False)
    embed.add_field(
        name="When moderation is down",
        value="commands go ahead unmoderated (fail open)" if policy.fail_open else "commands are refused",
        inline=False,
    )
    state = {"quota": "no OpenAI credit (insufficient_quota)", "outage": "failing"}.get(outage or "", "ok")
    embed.add_field(name="Endpoint", value=f"{state}; {queued} message(s) queued", inline=False)
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

    async def _updated(self, interaction: discord.Interaction[Any], summary: str, **changes: Any) -> None:
        assert interaction.guild_id is not None
        await self.policies.update(interaction.guild_id, **changes)
        await interaction.response.send_message(summary, ephemeral=True)

    async def _policy(self, interaction: discord.Interaction[Any]) -> Policy:
        assert interaction.guild_id is not None
        return await self.policies.get(interaction.guild_id)

    @moderation.command(name="status", description="Show this server's whole moderation policy")
    @manage_server
    async def status(self, interaction: discord.Interaction[Any]) -> None:
        policy = await self._policy(interaction)
        queued = await self.moderator.queue.count(policy.guild_id)
        embed = policy_embed(policy, queued=queued, outage=self.moderator.outage)
        batcher = self.moderator.gate.batcher
        if batcher is not None:
            stats = batcher.stats
            embed.set_footer(
                text=f"Since start: {stats.inputs} inputs in {stats.requests} requests "
                f"({stats.failed_requests} failed), {stats.cache_hits} answered from the cache."
            )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @moderation.command(name="enable", description="Turn automatic moderation on or off here")
    @app_commands.describe(enabled="On (true) or off (false)")
    @manage_server
    async def enable(self, interaction: discord.Interaction[Any], enabled: bool) -> None:
        await self._updated(
            interaction, f"Automatic moderation is {'on' if enabled else 'off'}.", enabled=enabled
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
        if value is None:
            thresholds.pop(category, None)
            summary = f"`{category}` is acted on when the endpoint flags it."
        else:
            thresholds[category] = float(value)
            summary = f"`{category}` is acted on from a score of {value:.2f}."
        await self._updated(interaction, summary, thresholds=thresholds)

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
        summary = f"`{category}`: {ACTION_LABELS[action]}."
        if category == "default":
            await self._updated(interaction, summary, default_action=action)
            return
        actions: dict[str, str] = dict((await self._policy(interaction)).actions)
        actions[category] = action
        await self._updated(interaction, summary, actions=actions)

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
        summary = (
            f"Timeout of {format_seconds(timeout_minutes * 60, measured=False)} after {strikes} strikes "
            f"within {format_seconds(window_minutes * 60, measured=False)}."
            if strikes
            else "Escalation is off."
        )
        await self._updated(
            interaction,
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
        summary = f"<@&{role.id}> is {'exempt from' if exempt else 'subject to'} moderation."
        await self._updated(interaction, summary, exempt_roles=frozenset(roles))

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
        summary = f"<#{channel.id}> is {'exempt from' if exempt else 'subject to'} moderation."
        await self._updated(interaction, summary, exempt_channels=frozenset(channels))

    @moderation.command(name="log-channel", description="Where moderation reports go (omit to unset)")
    @app_commands.describe(channel="The channel for moderation reports; leave out to unset it")
    @manage_server
    async def log_channel(
        self, interaction: discord.Interaction[Any], channel: discord.TextChannel | None = None
    ) -> None:
        if channel is None:
            await self._updated(
                interaction, "No mod-log channel: the bot's own log is used.", modlog_channel_id=None
            )
            return
        perms = channel.permissions_for(channel.guild.me)
        if not (perms.send_messages and perms.embed_links):
            raise errors.InvalidInput(
                f"I cannot post embeds in <#{channel.id}>: give my role Send Messages and Embed Links there."
            )
        await self._updated(
            interaction, f"Moderation reports go to <#{channel.id}>.", modlog_channel_id=channel.id
        )

    @moderation.command(
        name="fail-open", description="When moderation is down, let commands through unmoderated"
    )
    @app_commands.describe(enabled="Let commands through (true) or refuse them (false) while it is down")
    @manage_server
    async def fail_open(self, interaction: discord.Interaction[Any], enabled: bool) -> None:
        summary = (
            "While moderation is down, commands go ahead unmoderated (channel messages still wait in the queue)."
            if enabled
            else "While moderation is down, commands are refused."
        )
        await self._updated(interaction, summary, fail_open=enabled)

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
        hits = set(decision.categories) if decision else set()
        top = sorted(verdict.scores.items(), key=lambda item: item[1], reverse=True)[:8]
        lines = []
        for category, score in top:
            threshold = policy.thresholds.get(category)
            rule = f"threshold {threshold:.2f}" if threshold is not None else "endpoint's flag"
            mark = "**hit**" if category in hits else "ok"
            lines.append(f"`{category}` {score:.4f} ({rule}): {mark}")
        verdict_line = (
            f"The policy would: **{ACTION_LABELS[decision.action]}** ({', '.join(decision.categories)})."
            if decision
            else "The policy would do nothing: no category is over its threshold."
        )
        if not policy.enabled:
            verdict_line += " (Moderation is off in this server.)"
        await interaction.followup.send("\n".join([*lines, verdict_line]), ephemeral=True)

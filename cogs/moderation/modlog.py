"""The mod-log embed for one moderation action, and its moderator buttons (they survive restarts)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.discord_io.failures import is_expected, send_failure
from bot.discord_io.text import neutralize_mentions
from bot.moderation.channel import Outcome
from bot.moderation.policy import ACTION_LABELS
from bot.moderation.queue import MessageSubject
from bot.util.durations import format_seconds

if TYPE_CHECKING:
    from cogs.moderation.listener import ModerationEvents

log = logging.getLogger(__name__)
EXCERPT_CHARS = 900
COG_NAME = "ModerationEvents"


@dataclass
class Effects:
    """What actually happened on Discord for one action."""

    deleted: bool = False
    already_gone: bool = False
    warned: str = ""  # dm | channel | failed | ""
    timed_out: float = 0.0
    problems: list[str] = field(default_factory=list)


def excerpt(text: str) -> str:
    """Deleted content for moderators: escaped, mention-free, cut, behind a spoiler."""
    body = discord.utils.escape_markdown(neutralize_mentions(text.strip()))
    if len(body) > EXCERPT_CHARS:
        body = body[:EXCERPT_CHARS] + "…"
    return f"||{body}||" if body else "(no text: image only)"


def describe_effects(outcome: Outcome, effects: Effects) -> str:
    parts: list[str] = []
    assert outcome.decision is not None
    parts.append(f"policy: {ACTION_LABELS.get(outcome.decision.action, outcome.decision.action)}")
    if effects.deleted:
        parts.append("deleted")
    elif effects.already_gone:
        parts.append("already deleted before the verdict")
    if effects.warned == "dm":
        parts.append("author warned by DM")
    elif effects.warned == "channel":
        parts.append("author warned in the channel (DMs closed)")
    elif effects.warned == "failed":
        parts.append("warning could not be delivered")
    if outcome.strikes:
        limit = outcome.policy.strikes_to_timeout
        parts.append(f"strike {outcome.strikes}" + (f" of {limit}" if limit else ""))
    if effects.timed_out:
        parts.append(f"timed out for {format_seconds(effects.timed_out, measured=False)}")
    parts += effects.problems
    return " · ".join(parts)


def action_embed(subject: MessageSubject, outcome: Outcome, effects: Effects) -> discord.Embed:
    decision = outcome.decision
    assert decision is not None
    title = "Flagged message" + (" (edited)" if subject.source == "edit" else "")
    embed = discord.Embed(title=title, colour=discord.Colour.red())
    embed.add_field(name="Author", value=f"<@{subject.author_id}> (`{subject.author_id}`)", inline=True)
    embed.add_field(name="Channel", value=f"<#{subject.channel_id}>", inline=True)
    if effects.deleted or effects.already_gone or not subject.jump_url:
        embed.add_field(name="Content", value=excerpt(subject.text), inline=False)
    else:
        embed.add_field(name="Message", value=f"[Jump to the message]({subject.jump_url})", inline=False)
    thresholds = outcome.policy.thresholds
    lines = [
        f"{c}: {decision.scores.get(c, 0.0):.2f}"
        + (f" (threshold {thresholds[c]:.2f})" if c in thresholds else " (flagged by the endpoint)")
        for c in decision.categories
    ]
    embed.add_field(name="Categories", value="\n".join(lines)[:1024], inline=False)
    embed.add_field(name="Action", value=describe_effects(outcome, effects)[:1024], inline=False)
    footer = f"action #{outcome.action_id}"
    if subject.source == "queue":
        footer += " · moderated after an outage of the Moderation endpoint"
    embed.set_footer(text=footer)
    return embed


class ModlogButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"modlog:(?P<kind>timeout|fp):(?P<action>\d+)"
):
    """ "Timeout author" / "False positive" on a mod-log entry; permissions are checked when pressed.

    Both need Manage Messages; "Timeout author" also needs Timeout Members, so the button never lends the
    bot's own permission to someone who could not time the author out by hand.
    """

    def __init__(self, kind: str, action_id: int) -> None:
        label = "Timeout author" if kind == "timeout" else "False positive"
        style = discord.ButtonStyle.danger if kind == "timeout" else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"modlog:{kind}:{action_id}"))
        self.kind = kind
        self.action_id = action_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ModlogButton:
        return cls(match["kind"], int(match["action"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            if interaction.guild is None or not interaction.permissions.manage_messages:
                raise app_commands.MissingPermissions(["manage_messages"])
            if self.kind == "timeout" and not interaction.permissions.moderate_members:
                raise app_commands.MissingPermissions(["moderate_members"])
            events: ModerationEvents | None = interaction.client.get_cog(COG_NAME)
            if events is None:
                raise app_commands.CheckFailure("Moderation is not running right now.")
            if self.kind == "timeout":
                await events.timeout_from_modlog(interaction, self.action_id)
            else:
                await events.false_positive(interaction, self.action_id)
        except Exception as exc:
            if not is_expected(exc):
                log.exception("a mod-log button failed (action %s)", self.action_id)
            await send_failure(interaction, exc)


def action_view(action_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ModlogButton("timeout", action_id))
    view.add_item(ModlogButton("fp", action_id))
    return view

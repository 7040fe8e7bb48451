"""The mod-log embed for one moderation action: what was flagged, and what was done about it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import discord

from bot.discord_io.text import neutralize_mentions
from bot.moderation.channel import Outcome
from bot.moderation.policy import ACTION_LABELS
from bot.moderation.queue import MessageSubject
from bot.spans import format_seconds

log = logging.getLogger(__name__)
EXCERPT_CHARS = 900


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


def describe_effects(subject: MessageSubject, outcome: Outcome, effects: Effects) -> str:
    parts: list[str] = []
    assert outcome.decision is not None
    parts.append(f"policy: {ACTION_LABELS.get(outcome.decision.action, outcome.decision.action)}")
    if effects.deleted:
        parts.append("renamed and locked" if subject.is_thread else "deleted")
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
    title = ("Flagged thread name" if subject.is_thread else "Flagged message") + (
        " (edited)" if subject.source == "edit" else ""
    )
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
    embed.add_field(name="Action", value=describe_effects(subject, outcome, effects)[:1024], inline=False)
    footer = f"action #{outcome.action_id}"
    if subject.source == "queue":
        footer += " · moderated after an outage of the Moderation endpoint"
    embed.set_footer(text=footer)
    return embed

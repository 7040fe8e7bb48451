"""The mod-log embed for one moderation action: what was flagged, and what was done about it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import discord

from bot.discord_io.text import neutralize_mentions
from bot.i18n import format_span, translate
from bot.moderation.channel import Outcome
from bot.moderation.policy import ACTION_LABELS
from bot.moderation.queue import MessageSubject

log = logging.getLogger(__name__)
EXCERPT_CHARS = 900
# The policy's actions by the catalog names their /moderation choices already have ("choice.log only").
ACTION_IDS: dict[str, str] = {action: "choice." + label for action, label in ACTION_LABELS.items()}


def action_label(action: str, locale: str | None) -> str:
    return translate(ACTION_IDS[action], locale) if action in ACTION_IDS else action


@dataclass
class Effects:
    """What actually happened on Discord for one action; `problems` are catalog ids, rendered per reader."""

    deleted: bool = False
    already_gone: bool = False
    warned: str = ""  # dm | channel | failed | ""
    timed_out: float = 0.0
    problems: list[str] = field(default_factory=list)


def excerpt(text: str, locale: str | None) -> str:
    """Deleted content for moderators: escaped, mention-free, cut, behind a spoiler."""
    body = discord.utils.escape_markdown(neutralize_mentions(text.strip()))
    if len(body) > EXCERPT_CHARS:
        body = body[:EXCERPT_CHARS] + "…"
    return f"||{body}||" if body else translate("modlog.no_text", locale)


_WARNED_IDS = {
    "dm": "modlog.effect.warned_dm",
    "channel": "modlog.effect.warned_channel",
    "failed": "modlog.effect.warn_failed",
}


def describe_effects(subject: MessageSubject, outcome: Outcome, effects: Effects, locale: str | None) -> str:
    parts: list[str] = []
    assert outcome.decision is not None
    parts.append(
        translate("modlog.effect.policy", locale, action=action_label(outcome.decision.action, locale))
    )
    if effects.deleted:
        parts.append(
            translate("modlog.effect.retitled" if subject.is_thread else "modlog.effect.deleted", locale)
        )
    elif effects.already_gone:
        parts.append(translate("modlog.effect.already_gone", locale))
    if effects.warned in _WARNED_IDS:
        parts.append(translate(_WARNED_IDS[effects.warned], locale))
    if outcome.strikes:
        limit = outcome.policy.strikes_to_timeout
        if limit:
            parts.append(translate("modlog.effect.strike_of", locale, strike=outcome.strikes, limit=limit))
        else:
            parts.append(translate("modlog.effect.strike", locale, strike=outcome.strikes))
    if effects.timed_out:
        parts.append(
            translate("modlog.effect.timed_out", locale, span=format_span(effects.timed_out, locale))
        )
    parts += [translate(problem, locale) for problem in effects.problems]
    return translate("modlog.separator", locale).join(parts)


def action_embed(
    subject: MessageSubject, outcome: Outcome, effects: Effects, locale: str | None
) -> discord.Embed:
    """The entry in the server's language (`locale`): moderators read it together."""
    decision = outcome.decision
    assert decision is not None
    title_id = "modlog.title.thread" if subject.is_thread else "modlog.title.message"
    if subject.source == "edit":
        title_id += "_edited"
    embed = discord.Embed(title=translate(title_id, locale), colour=discord.Colour.red())
    embed.add_field(
        name=translate("modlog.field.author", locale),
        value=f"<@{subject.author_id}> (`{subject.author_id}`)",
        inline=True,
    )
    embed.add_field(
        name=translate("modlog.field.channel", locale), value=f"<#{subject.channel_id}>", inline=True
    )
    if effects.deleted or effects.already_gone or not subject.jump_url:
        embed.add_field(
            name=translate("modlog.field.content", locale), value=excerpt(subject.text, locale), inline=False
        )
    else:
        embed.add_field(
            name=translate("modlog.field.message", locale),
            value=translate("modlog.jump", locale, url=subject.jump_url),
            inline=False,
        )
    thresholds = outcome.policy.thresholds
    # Categories keep their API names here: moderators tune them by these names with /moderation.
    lines = [
        translate(
            "modlog.category.threshold" if c in thresholds else "modlog.category.endpoint",
            locale,
            category=c,
            score=f"{decision.scores.get(c, 0.0):.2f}",
            threshold=f"{thresholds[c]:.2f}" if c in thresholds else "",
        )
        for c in decision.categories
    ]
    embed.add_field(
        name=translate("modlog.field.categories", locale), value="\n".join(lines)[:1024], inline=False
    )
    embed.add_field(
        name=translate("modlog.field.action", locale),
        value=describe_effects(subject, outcome, effects, locale)[:1024],
        inline=False,
    )
    footer_id = "modlog.footer.after_outage" if subject.source == "queue" else "modlog.footer"
    embed.set_footer(text=translate(footer_id, locale, action=outcome.action_id))
    return embed

"""Discord effects of a moderation decision: delete, warn, timeout, mod-log, and missing-permission reports."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import discord

from bot.discord_io.client import OpenAIBot
from bot.errors import category_names
from bot.i18n import translate
from bot.moderation.channel import ChannelModerator, Outcome
from bot.moderation.policy import Policy
from bot.moderation.queue import MessageSubject
from cogs.moderation.buttons import action_view
from cogs.moderation.effects import report_missing, timeout_member
from cogs.moderation.modlog import Effects, action_embed

log = logging.getLogger(__name__)
NOTICE_SECONDS = 20.0


class ModerationActions:
    """Applies outcomes on Discord. Failures become reports, never exceptions: a refused delete is a
    missing permission to tell the server about (once), not a crash and not a silent failure."""

    def __init__(self, bot: OpenAIBot, moderator: ChannelModerator) -> None:
        self.bot = bot
        self.moderator = moderator
        self.notice_seconds = NOTICE_SECONDS
        self._warned_no_modlog: set[int] = set()
        self._notice_tasks: set[asyncio.Task[None]] = set()

    async def apply(self, subject: MessageSubject, outcome: Outcome) -> Effects:
        decision = outcome.decision
        assert decision is not None
        effects = Effects()
        if decision.action in ("delete", "warn") and subject.is_thread:
            await self._retitle(subject, outcome.policy, effects)
        elif decision.action in ("delete", "warn"):
            await self._delete(subject, outcome.policy, effects)
        # Without a mod-log nobody else hears of a deletion: its author is always told.
        silent = decision.action == "delete" and outcome.policy.modlog_channel_id is None and effects.deleted
        if decision.action == "warn" or silent:
            effects.warned = await self._warn(subject, outcome)
        if outcome.timeout_seconds:
            # The audit log's reason: read by the server's admins, in its language.
            audit_locale = await self.bot.modlog.locale_for(subject.guild_id)
            reason = translate("moderation.audit.strikes", audit_locale, count=outcome.strikes)
            if await timeout_member(
                self.bot, outcome.policy, subject.author_id, outcome.timeout_seconds, reason
            ):
                effects.timed_out = outcome.timeout_seconds
            else:
                effects.problems.append("modlog.problem.timeout_failed")
        await self.moderator.actions.set_effects(
            outcome.action_id, deleted=effects.deleted, warned=effects.warned, timed_out=effects.timed_out
        )
        if outcome.policy.modlog_channel_id is None:
            # No mod-log yet: the bot's own log gets the facts, never the content.
            log.info(
                "moderation: action %s in server %s channel %s message %s author %s: %s -> %s",
                outcome.action_id,
                subject.guild_id,
                subject.channel_id,
                subject.message_id,
                subject.author_id,
                ",".join(decision.categories),
                decision.action,
            )
        else:
            locale = await self.bot.modlog.locale_for(subject.guild_id)
            embed = action_embed(subject, outcome, effects, locale)
            await self.post_modlog(outcome.policy, embed=embed, view=action_view(outcome.action_id, locale))
        return effects

    async def _retitle(self, subject: MessageSubject, policy: Policy, effects: Effects) -> None:
        """A flagged thread or forum post name: renamed to a neutral one and locked, so the name is gone from
        the channel list and nobody builds on it before a moderator looks."""
        try:
            thread = self.bot.get_channel(subject.channel_id) or await self.bot.fetch_channel(
                subject.channel_id
            )
            if not isinstance(thread, discord.Thread):
                return
            # The new name is public, and the audit log's reason for admins: the server's language.
            locale = await self.bot.modlog.locale_for(subject.guild_id)
            await thread.edit(
                name=translate("moderation.retitled", locale),
                locked=True,
                reason=translate("moderation.audit.flagged_name", locale),
            )
            effects.deleted = True
        except discord.NotFound:
            effects.already_gone = True
        except discord.Forbidden:
            effects.problems.append("modlog.problem.retitle_forbidden")
            await report_missing(self.bot, policy, "Manage Threads", subject.parent_channel_id)
        except discord.HTTPException as exc:
            effects.problems.append("modlog.problem.retitle_failed")
            log.warning("renaming a flagged thread failed: HTTP %s", exc.status)

    async def _delete(self, subject: MessageSubject, policy: Policy, effects: Effects) -> None:
        channel = self.bot.get_partial_messageable(subject.channel_id, guild_id=subject.guild_id)
        try:
            await channel.get_partial_message(subject.message_id).delete()
            effects.deleted = True
        except discord.NotFound:
            effects.already_gone = True  # deleted before the verdict, or the channel is gone
        except discord.Forbidden:
            effects.problems.append("modlog.problem.delete_forbidden")
            await report_missing(self.bot, policy, "Manage Messages", subject.channel_id)
        except discord.HTTPException as exc:
            effects.problems.append("modlog.problem.delete_failed")
            log.warning("deleting a flagged message failed: HTTP %s", exc.status)

    async def _warn(self, subject: MessageSubject, outcome: Outcome) -> str:
        assert outcome.decision is not None
        guild = self.bot.get_guild(subject.guild_id)
        # Outside an interaction the member's client language is unknown: the server's language.
        locale = await self.bot.modlog.locale_for(subject.guild_id)
        place = (
            subject.parent_channel_id
            if subject.is_thread and subject.parent_channel_id
            else subject.channel_id
        )
        where = f"<#{place}>" + (f" ({discord.utils.escape_markdown(guild.name)})" if guild else "")
        # Readable names, in lower case mid-sentence ("flagged it for self-harm: intent"; Korean has no case).
        categories = category_names(outcome.decision.categories, locale).lower()
        kind = "thread" if subject.is_thread else "message"
        text = translate(f"moderation.warning.{kind}", locale, where=where, categories=categories)
        limit = outcome.policy.strikes_to_timeout
        if limit and outcome.strikes:
            text += " " + translate("moderation.warning.strikes", locale, strike=outcome.strikes, limit=limit)
        try:
            dm = await self.bot.create_dm(discord.Object(subject.author_id))
            await dm.send(text)
            return "dm"
        except discord.HTTPException:
            pass  # DMs closed: a short-lived notice in the channel instead
        notice = translate(
            f"moderation.notice.{kind}", locale, member=f"<@{subject.author_id}>", categories=categories
        )
        channel = self.bot.get_partial_messageable(subject.channel_id, guild_id=subject.guild_id)
        try:
            sent = await channel.send(notice)
        except discord.Forbidden:
            await report_missing(self.bot, outcome.policy, "Send Messages", subject.channel_id)
            return "failed"
        except discord.HTTPException:
            return "failed"
        task = asyncio.create_task(self._expire(sent), name="moderation-notice")
        self._notice_tasks.add(task)
        task.add_done_callback(self._notice_tasks.discard)
        return "channel"

    async def _expire(self, message: discord.Message) -> None:
        await asyncio.sleep(self.notice_seconds)
        with contextlib.suppress(discord.HTTPException):
            await message.delete()

    async def post_modlog(
        self,
        policy: Policy,
        *,
        content: str | None = None,
        embed: discord.Embed | None = None,
        view: discord.ui.View | None = None,
    ) -> bool:
        if policy.modlog_channel_id is None:
            if policy.guild_id not in self._warned_no_modlog:
                self._warned_no_modlog.add(policy.guild_id)
                log.warning(
                    "moderation in server %s has no mod-log channel (`/moderation log-channel`)",
                    policy.guild_id,
                )
            return False
        return await self.bot.modlog.post(
            policy.guild_id, policy.modlog_channel_id, content=content, embed=embed, view=view
        )

    async def report_outage(self, policy: Policy, reason: str) -> None:
        queued = await self.moderator.queue.count(policy.guild_id)
        message_id = "moderation.outage.quota" if reason == "quota" else "moderation.outage.failing"
        locale = await self.bot.modlog.locale_for(policy.guild_id)
        await self.post_modlog(policy, content=translate(message_id, locale, queued=queued))

    async def close(self) -> None:
        for task in list(self._notice_tasks):
            task.cancel()
        await asyncio.gather(*self._notice_tasks, return_exceptions=True)


__all__ = ["ModerationActions"]

"""Every channel message and edit through moderation; the outage queue drained in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

import discord
from discord.ext import commands

from bot import errors
from bot.discord_io.text import message_text
from bot.moderation.channel import ChannelModerator
from bot.moderation.queue import MessageSubject
from bot.storage.store import StoreError
from cogs.moderation.actions import ModerationActions
from cogs.moderation.modlog import action_embed

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp")


def _is_image(attachment: discord.Attachment) -> bool:
    if attachment.content_type:
        return attachment.content_type.startswith("image/")
    return attachment.filename.lower().endswith(IMAGE_EXTENSIONS)


def image_urls(message: discord.Message) -> tuple[str, ...]:
    """Image attachments and image embeds (link previews of images, and rich embeds' images)."""
    urls = [a.url for a in message.attachments if _is_image(a)]
    for embed in message.embeds:
        if embed.image and embed.image.url:
            urls.append(embed.image.url)
        if embed.type in ("image", "gifv") and embed.thumbnail and embed.thumbnail.url:
            urls.append(embed.thumbnail.url)
    return tuple(dict.fromkeys(urls))


def subject_from_thread(thread: discord.Thread, bot_user_id: int, source: str) -> MessageSubject | None:
    """A thread's or forum post's name, as moderation judges it (the owner answers for it)."""
    if thread.owner_id is None or thread.owner_id == bot_user_id:
        return None
    owner = thread.owner
    return MessageSubject(
        guild_id=thread.guild.id,
        channel_id=thread.id,
        message_id=thread.id,
        author_id=thread.owner_id,
        text=thread.name,
        role_ids=tuple(role.id for role in owner.roles) if owner is not None else (),
        parent_channel_id=thread.parent_id,
        author_is_bot=bool(owner is not None and owner.bot),
        source=source,
        kind="thread",
        jump_url=thread.jump_url,
    )


def subject_from_message(message: discord.Message, bot_user_id: int, source: str) -> MessageSubject | None:
    if message.guild is None or message.author.id == bot_user_id or message.is_system():
        return None
    roles = tuple(role.id for role in getattr(message.author, "roles", []) or [])
    return MessageSubject(
        guild_id=message.guild.id,
        channel_id=message.channel.id,
        message_id=message.id,
        author_id=message.author.id,
        text=message_text(message),
        image_urls=image_urls(message),
        role_ids=roles,
        parent_channel_id=getattr(message.channel, "parent_id", None),
        author_is_bot=message.author.bot or message.webhook_id is not None,
        source=source,
        jump_url=message.jump_url,
    )


class ModerationEvents(commands.Cog):
    """Listens to messages; the verdicts come from the core, the effects from ModerationActions."""

    def __init__(
        self,
        bot: commands.Bot,
        moderator: ChannelModerator,
        actions: ModerationActions,
        retry_interval: float,
    ) -> None:
        self.bot = bot
        self.moderator = moderator
        self.actions = actions
        self.retry_interval = retry_interval
        self._drainer: asyncio.Task[None] | None = None
        self._closing = False

    async def cog_load(self) -> None:
        self._drainer = asyncio.create_task(self._drain_forever(), name="moderation-queue-drainer")

    async def cog_unload(self) -> None:
        self._closing = True
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
            self._drainer = None
        await self.actions.close()

    @property
    def bot_user_id(self) -> int:
        return self.bot.user.id if self.bot.user else 0

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        subject = subject_from_message(message, self.bot_user_id, "message")
        if subject is not None:
            await self.process(subject)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        message = payload.message
        before = payload.cached_message
        if (
            before is not None
            and message_text(before) == message_text(message)
            and image_urls(before) == image_urls(message)
        ):
            return  # a pin or a flag changed: nothing new to judge (a link preview's text is new)
        subject = subject_from_message(message, self.bot_user_id, "edit")
        if subject is not None:
            await self.process(subject)

    @commands.Cog.listener()
    async def on_thread_create(self, thread: discord.Thread) -> None:
        subject = subject_from_thread(thread, self.bot_user_id, "message")
        if subject is not None:
            await self.process(subject)

    @commands.Cog.listener()
    async def on_thread_update(self, before: discord.Thread, after: discord.Thread) -> None:
        if before.name == after.name:
            return  # archived, locked or re-tagged: the name was judged already
        subject = subject_from_thread(after, self.bot_user_id, "edit")
        if subject is not None:
            await self.process(subject)

    async def process(self, subject: MessageSubject) -> None:
        try:
            outcome = await self.moderator.moderate(subject)
        except errors.BotError as exc:
            log.warning(
                "a message could not be moderated in server %s: %s", subject.guild_id, type(exc).__name__
            )
            return
        except Exception:
            if self._closing:
                # Shutting down mid-verdict: the database or client is already closing.
                log.info("a message in server %s was not moderated: the bot is stopping", subject.guild_id)
                return
            raise
        if outcome.status == "acted":
            await self.actions.apply(subject, outcome)
        elif outcome.status == "queued" and outcome.notify and not self._breaker_reports(outcome.reason):
            await self.actions.report_outage(outcome.policy, outcome.reason)

    def _breaker_reports(self, reason: str) -> bool:
        """The quota breaker (cost control) already tells each server's mod-log about insufficient_quota
        once per outage; a second notice from moderation would be noise."""
        return reason == "quota"

    async def drain_once(self) -> tuple[int, bool]:
        """Moderate what waits in the queue: (messages done, whether the endpoint still fails)."""
        done, failing = await self.moderator.drain()
        for subject, outcome in done:
            if outcome.status == "acted":
                await self.actions.apply(subject, outcome)
        return len(done), failing

    async def _drain_forever(self) -> None:
        delay = 0.0  # at start-up: catch up at once on what a restart left in the queue
        failures = 0
        while True:
            await asyncio.sleep(delay)
            done, failing = 0, False
            try:
                if self.moderator.outage is not None or await self.moderator.queue.count():
                    done, failing = await self.drain_once()
            except (StoreError, sqlite3.Error):
                log.warning("the moderation queue could not be read or written", exc_info=True)
                failing = True
            except Exception:
                # The drainer must outlive any one failure: if it died, queued messages would never be judged.
                log.exception("draining the moderation queue failed; retrying later")
                failing = True
            if failing:
                # Back off while the endpoint fails, up to 4x the interval.
                failures += 1
                delay = self.retry_interval * min(4, 2 ** (failures - 1))
            else:
                failures = 0
                delay = 0.0 if done else self.retry_interval


__all__ = ["ModerationEvents", "action_embed", "image_urls", "subject_from_message"]

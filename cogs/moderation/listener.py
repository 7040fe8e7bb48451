"""Every channel message and edit through moderation; the outage queue drained in the background."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sqlite3
from collections.abc import Awaitable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import discord
from discord.ext import commands

from bot import errors
from bot.discord_io.client import OpenAIBot, wants_messages
from bot.discord_io.text import message_text
from bot.moderation.channel import ChannelModerator, Outcome, StartedCheck
from bot.moderation.judged import JudgedContent
from bot.moderation.queue import MessageSubject, Source
from bot.storage.leases import LeaseKeeper
from bot.storage.store import StoreError
from cogs.moderation.actions import ModerationActions

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp")
# Held by the one process (of those sharing the database) that drains the outage queue.
DRAIN_LEASE = "moderation-queue-drain"


def _is_image(attachment: discord.Attachment) -> bool:
    if attachment.content_type:
        return attachment.content_type.startswith("image/")
    return attachment.filename.lower().endswith(IMAGE_EXTENSIONS)


def image_urls(message: discord.Message) -> tuple[str, ...]:
    """Image attachments and image embeds (link previews of images, and rich embeds' images)."""
    if not message.attachments and not message.embeds:
        return ()  # most messages: every one comes through here
    urls = [a.url for a in message.attachments if _is_image(a)]
    for embed in message.embeds:
        if embed.image and embed.image.url:
            urls.append(embed.image.url)
        if embed.type in ("image", "gifv") and embed.thumbnail and embed.thumbnail.url:
            urls.append(embed.thumbnail.url)
    return tuple(dict.fromkeys(urls))


@dataclass(frozen=True)
class CatchUpLimits:
    """How far back a catch-up reads each channel's history (MODERATION_CATCHUP_* settings)."""

    hours: float = 24.0
    messages: int = 1000

    @property
    def enabled(self) -> bool:
        return self.hours > 0 and self.messages > 0


def subject_from_thread(thread: discord.Thread, bot_user_id: int, source: Source) -> MessageSubject | None:
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


def subject_from_message(
    message: discord.Message, bot_user_id: int, source: Source, *, with_roles: bool = True
) -> MessageSubject | None:
    """The message as moderation judges it; `with_roles=False` leaves out the author's roles (a server whose
    policy exempts no role)."""
    if message.guild is None or message.author.id == bot_user_id or message.is_system():
        return None
    roles = tuple(role.id for role in getattr(message.author, "roles", []) or []) if with_roles else ()
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
        bot: OpenAIBot,
        moderator: ChannelModerator,
        actions: ModerationActions,
        retry_interval: float,
        catch_up: CatchUpLimits | None = None,
        *,
        drain_lease: LeaseKeeper | None = None,
    ) -> None:
        self.bot = bot
        self.moderator = moderator
        self.actions = actions
        self.retry_interval = retry_interval
        self.catch_up_limits = catch_up or CatchUpLimits()
        self.watermarks = moderator.watermarks
        self.judged = JudgedContent()
        self.drain_lease = drain_lease
        self._drainer: asyncio.Task[None] | None = None
        self._catch_ups: set[asyncio.Task[None]] = set()
        self._catch_up_lock = asyncio.Lock()
        self._closing = False

    async def cog_load(self) -> None:
        # Before the gateway connects: marks stay held until the start-up catch-up has read past them.
        await self.watermarks.load(hold=self.catch_up_limits.enabled)
        if self.drain_lease is not None:
            await (
                self.drain_lease.start()
            )  # taken now, so what a restart left in the queue is drained at once
        self._drainer = asyncio.create_task(self._drain_forever(), name="moderation-queue-drainer")

    async def cog_unload(self) -> None:
        self._closing = True
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
            self._drainer = None
        try:
            # Cancelling the drainer may land between a claim's commit and its give-back.
            await self.moderator.queue.release_claims()
        except (StoreError, sqlite3.Error):
            log.warning("moderation queue claims could not be given back; they expire by themselves")
        if self.drain_lease is not None:
            await self.drain_lease.stop()
        for task in list(self._catch_ups):
            task.cancel()
        await asyncio.gather(*self._catch_ups, return_exceptions=True)
        await self.actions.close()
        try:
            await self.watermarks.close()
        except (StoreError, sqlite3.Error):
            log.warning("moderation watermarks could not be saved at shutdown", exc_info=True)

    @property
    def bot_user_id(self) -> int:
        return self.bot.user.id if self.bot.user else 0

    def _with_roles(self, message: discord.Message) -> bool:
        return message.guild is not None and self.moderator.needs_roles(message.guild.id)

    @commands.Cog.listener()
    # The bot's own messages (every answer, and every edit of one) are never judged, and most messages are
    # taken without a task (take_message): only the rest make one.
    @wants_messages(
        lambda cog, message: not cog.take_message(message) and message.author.id != cog.bot_user_id
    )
    async def on_message(self, message: discord.Message) -> None:
        subject = subject_from_message(
            message, self.bot_user_id, "message", with_roles=self._with_roles(message)
        )
        if subject is not None:
            self.judged.changed(subject)
            await self.process(subject)

    @commands.Cog.listener()
    @wants_messages(lambda cog, payload: payload.message.author.id != cog.bot_user_id)
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        subject = subject_from_message(
            payload.message, self.bot_user_id, "edit", with_roles=self._with_roles(payload.message)
        )
        # A pin or a flag changed: nothing new to judge (a link preview's text is new, so it is judged).
        if subject is not None and self.judged.changed(subject):
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

    async def process(self, subject: MessageSubject, *, claimed: bool = False) -> None:
        """Moderate one message and act on the verdict. New messages move their channel's watermark once
        acted on; one already handled (replayed by a RESUME and read back by catch-up) is skipped."""
        # Watermarks follow messages; a thread's name is judged on its own event and is not in any history.
        live_message = subject.source == "message" and subject.kind == "message"
        tracked = claimed or live_message
        if (
            live_message
            and not claimed
            and not self.watermarks.claim(subject.guild_id, subject.channel_id, subject.message_id)
        ):
            return
        await self._see_through(
            subject, tracked, self._moderate_and_act(subject, self.moderator.moderate(subject))
        )

    async def _see_through(self, subject: MessageSubject, tracked: bool, work: Awaitable[bool]) -> None:
        """Await a message's moderation; a tracked message's watermark passes it once it is handled."""
        handled = cut_short = False
        try:
            handled = await work
        except asyncio.CancelledError:
            # The shutdown's grace ran out mid-check: the next start judges the message from the durable
            # queue, and its mark stays below it, so catch-up would find it even if that write failed.
            cut_short = True
            await self._queue_cut_short(subject)
            raise
        finally:
            if tracked and not self._closing and not cut_short:
                # Stopping mid-verdict: the mark must stay below this message, so the restart sees it.
                self.watermarks.finish(subject.channel_id, subject.message_id, handled=handled)

    async def _queue_cut_short(self, subject: MessageSubject) -> None:
        try:
            await self.moderator.queue.put(subject)
        except (StoreError, sqlite3.Error):
            log.warning("a message cut short by the shutdown could not be queued; catch-up will find it")
        else:
            log.info("a message in server %s cut short by the shutdown waits in the queue", subject.guild_id)

    async def _moderate_and_act(self, subject: MessageSubject, moderation: Awaitable[Outcome]) -> bool:
        try:
            outcome = await moderation
        except errors.BotError as exc:
            log.warning(
                "a message could not be moderated in server %s: %s", subject.guild_id, type(exc).__name__
            )
            return False
        except Exception:
            if self._closing:
                # Shutting down mid-verdict: the database or client is already closing.
                log.info("a message in server %s was not moderated: the bot is stopping", subject.guild_id)
                return False
            raise
        # Other features (recall) index only what passed: they listen for on_message_moderated.
        self.bot.dispatch("message_moderated", subject, outcome)
        if outcome.status == "acted":
            await self.actions.apply(subject, outcome)
        elif outcome.status == "queued" and outcome.notify and not self._breaker_reports(outcome.reason):
            await self.actions.report_outage(outcome.policy, outcome.reason)
        return True

    # -- the common message, without a task ---------------------------------------------------------

    def take_message(self, message: discord.Message) -> bool:
        """Start moderating a new message without a task when it is the common kind (see
        `ChannelModerator.start`): True when it is taken, False to leave it to `on_message`'s task.

        A clean verdict is concluded in the check's done callback; anything else (flagged, failed) continues
        in a task, as `process` would. The check is in-flight work: a shutdown waits for it and, past its
        grace, queues the message durably, like a task cut short."""
        if self._closing or message.author.id == self.bot_user_id:
            return False
        guild = message.guild
        if guild is None or self.moderator.needs_roles(guild.id):
            return False  # not a server message, or a server whose policy exempts roles: on_message
        try:
            subject = subject_from_message(message, self.bot_user_id, "message", with_roles=False)
        except Exception:
            # Raised again in on_message's task, where it is reported, instead of in the gateway's read.
            return False
        if subject is None:
            return True
        self.judged.changed(subject)
        if not self.watermarks.claim(subject.guild_id, subject.channel_id, subject.message_id):
            return True  # replayed by a RESUME, or read back by catch-up: handled already
        try:
            started = self.moderator.start(subject)
        except Exception:
            log.exception("moderating a message failed to start in server %s", subject.guild_id)
            started = None
        if started is None:
            self._continue(subject, self._moderate_and_act(subject, self.moderator.moderate(subject)))
        elif isinstance(started, Outcome):
            self._concluded(subject, started)
        else:
            check = started.check
            self.bot.in_flight.add(check, lambda: self._queue_cut_short(subject))
            check.add_done_callback(lambda _: self._checked(subject, started))
        return True

    def _checked(self, subject: MessageSubject, started: StartedCheck) -> None:
        if started.check.cancelled():
            return  # cut short by the shutdown: in-flight work queued it, and its mark stays below it
        try:
            outcome = self.moderator.clean_outcome(started)
        except Exception:
            # `settle` meets the same failure in a task, which reports it and finishes the watermark: a
            # message left claimed would hold its channel's mark for ever.
            outcome = None
        if outcome is not None:
            self._concluded(subject, outcome)
        else:
            self._continue(subject, self._moderate_and_act(subject, self.moderator.settle(subject, started)))

    def _concluded(self, subject: MessageSubject, outcome: Outcome) -> None:
        """A clean or skipped message: nothing to act on."""
        try:
            self.bot.dispatch("message_moderated", subject, outcome)
        finally:
            if not self._closing:
                self.watermarks.finish(subject.channel_id, subject.message_id, handled=True)

    def _continue(self, subject: MessageSubject, work: Coroutine[Any, Any, bool]) -> None:
        task = asyncio.create_task(self._continued(subject, work), name="moderation-message")
        self.bot.in_flight.add(task)

    async def _continued(self, subject: MessageSubject, work: Coroutine[Any, Any, bool]) -> None:
        try:
            await self._see_through(subject, True, work)
        except Exception:
            # What discord.py's on_error does for a listener's task (this task is the cog's own).
            log.exception("moderating a message failed in server %s", subject.guild_id)

    async def moderate_unseen(self, messages: Iterable[discord.Message]) -> int:
        """Hand messages read back from history to channel moderation, except those already handled
        (live, before a crash, or waiting in the outage queue). Returns how many were moderated."""
        return await self._process_claimed(await self.claim_unseen(messages))

    async def claim_unseen(self, messages: Iterable[discord.Message]) -> list[MessageSubject]:
        subjects = [
            s for m in messages if (s := subject_from_message(m, self.bot_user_id, "catch-up")) is not None
        ]
        return await self.moderator.unseen(subjects)

    async def _process_claimed(self, subjects: list[MessageSubject]) -> int:
        await asyncio.gather(*(self.process(subject, claimed=True) for subject in subjects))
        return len(subjects)

    # -- catch-up after a restart or a reconnect ---------------------------------------------------

    @commands.Cog.listener()
    async def on_disconnect(self) -> None:
        # Events may be lost until the next RESUME or READY: marks must not move past them meanwhile.
        if self.catch_up_limits.enabled:
            self.watermarks.hold()

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        self._start_catch_up("start-up")

    @commands.Cog.listener()
    async def on_resumed(self) -> None:
        self._start_catch_up("resume")

    def _start_catch_up(self, why: str) -> None:
        if not self.catch_up_limits.enabled or self._closing:
            return
        # The hold is taken before anything else runs, ahead of the live messages that follow the event.
        targets = self._catch_up_targets()
        generation = self.watermarks.hold({cid: gid for cid, (gid, _) in targets.items()})
        task = asyncio.create_task(self._catch_up(targets, generation, why), name="moderation-catch-up")
        self._catch_ups.add(task)
        task.add_done_callback(self._catch_ups.discard)

    def _catch_up_targets(self) -> dict[int, tuple[int, discord.abc.Messageable]]:
        """Readable text channels and threads of every server, plus every channel with a watermark."""
        targets: dict[int, tuple[int, discord.abc.Messageable]] = {}
        for guild in self.bot.guilds:
            me = guild.me
            channels: list[discord.TextChannel | discord.Thread] = [*guild.text_channels, *guild.threads]
            for channel in channels:
                permissions = channel.permissions_for(me)
                if permissions.view_channel and permissions.read_message_history:
                    targets[channel.id] = (guild.id, channel)
        for channel_id, guild_id in self.watermarks.channels().items():
            if channel_id not in targets and self.bot.get_guild(guild_id) is not None:
                targets[channel_id] = (
                    guild_id,
                    self.bot.get_partial_messageable(channel_id, guild_id=guild_id),
                )
        return targets

    async def _catch_up(
        self, targets: dict[int, tuple[int, discord.abc.Messageable]], generation: int, why: str
    ) -> None:
        limits = self.catch_up_limits
        moderated = read = 0
        work: list[asyncio.Task[int]] = []
        async with self._catch_up_lock:
            cutoff = discord.utils.time_snowflake(discord.utils.utcnow() - dt.timedelta(hours=limits.hours))
            for channel_id in set(self.watermarks.channels()) - set(targets):
                self.watermarks.release(channel_id, generation)  # a server the bot left
            for channel_id, (_guild_id, channel) in targets.items():
                try:
                    after = discord.Object(id=max(cutoff, self.watermarks.mark(channel_id)))
                    messages = [
                        m
                        async for m in channel.history(limit=limits.messages, after=after, oldest_first=True)
                    ]
                    read += len(messages)
                    if len(messages) >= limits.messages:
                        log.warning(
                            "moderation catch-up read only the oldest %d missed messages of channel %s",
                            limits.messages,
                            channel_id,
                        )
                    # Claimed now, moderated beside the other channels' (the batcher coalesces them).
                    fresh = await self.claim_unseen(messages)
                    work.append(asyncio.create_task(self._process_claimed(fresh)))
                except discord.HTTPException as exc:
                    log.info("moderation catch-up could not read channel %s: HTTP %s", channel_id, exc.status)
                except Exception:
                    log.exception("moderation catch-up failed in channel %s", channel_id)
                finally:
                    self.watermarks.release(channel_id, generation)
        for result in await asyncio.gather(*work, return_exceptions=True):
            if isinstance(result, BaseException):
                if not isinstance(result, asyncio.CancelledError):
                    log.error("moderation catch-up failed", exc_info=result)
            else:
                moderated += result
        log.info(
            "moderation catch-up (%s): %d channels, %d messages read, %d moderated",
            why,
            len(targets),
            read,
            moderated,
        )

    def _breaker_reports(self, reason: str) -> bool:
        """The quota breaker (cost control) already tells each server's mod-log about insufficient_quota
        once per outage; a second notice from moderation would be noise."""
        return reason == "quota"

    async def drain_once(self) -> tuple[int, bool]:
        """Moderate what waits in the queue: (messages done, whether the endpoint still fails)."""
        done, failing = await self.moderator.drain()
        for subject, outcome in done:
            self.bot.dispatch("message_moderated", subject, outcome)
            if outcome.status == "acted":
                await self.actions.apply(subject, outcome)
        return len(done), failing

    async def _free_orphaned_claims(self) -> None:
        """What a process that died mid-drain had claimed is drained now, not when its claims run out."""
        live = await self.drain_lease.leases.live_processes() if self.drain_lease is not None else set()
        freed = await self.moderator.queue.free_orphaned_claims(live)
        if freed:
            log.info("took back %d queued messages claimed by a process that is gone", freed)

    @property
    def drains(self) -> bool:
        """Whether this process drains the queue: it holds the lease (or runs alone, without one)."""
        return self.drain_lease is None or self.drain_lease.held

    async def _drain_forever(self) -> None:
        """Drain while this process holds the drain lease; the queue's claims keep a message from being
        judged twice even if two processes drain at once (a lease changing hands mid-drain)."""
        delay = 0.0  # at start-up: catch up at once on what a restart left in the queue
        failures = 0
        orphans_freed = False  # once per spell of holding the drain
        while True:
            await asyncio.sleep(delay)
            done, failing = 0, False
            try:
                if not self.drains:
                    orphans_freed = False
                    if self.moderator.outage is not None:
                        self.moderator.probe_live()
                else:
                    if not orphans_freed:
                        await self._free_orphaned_claims()
                        orphans_freed = True
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


__all__ = ["ModerationEvents", "image_urls", "subject_from_message"]

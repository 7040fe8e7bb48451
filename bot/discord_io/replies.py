"""Throttled streaming replies across messages, moving to the channel or a DM once the token expires."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import discord
from discord import app_commands

from bot import errors
from bot.discord_io.failures import token_expired
from bot.discord_io.locales import member_locale, server_locale
from bot.discord_io.text import neutralize_mentions, split_message
from bot.discord_io.translator import command_label
from bot.i18n import translate
from bot.util.pacing import StreamPacer

log = logging.getLogger(__name__)


class Editable(Protocol):
    async def edit(self, content: str) -> Any: ...

    async def delete(self) -> Any: ...


def message_id_of(handle: object) -> int | None:
    """The Discord id of a reply's message, when it has one yet (test doubles may not)."""
    message_id = getattr(handle, "message_id", None)
    return message_id if isinstance(message_id, int) else None


class SentMessage:
    """A message (or webhook followup) the bot sent, adapted to Editable."""

    def __init__(self, message: discord.Message | discord.WebhookMessage | discord.PartialMessage) -> None:
        self.message = message

    @property
    def message_id(self) -> int:
        return self.message.id

    async def edit(self, content: str) -> Any:
        return await self.message.edit(content=content)

    async def delete(self) -> Any:
        return await self.message.delete()


class ExpiryFallback:
    """Where an interaction's reply goes once Discord refuses its token (after 15 minutes).

    Public replies continue in the channel, private ones in a DM, after one note saying why.
    """

    def __init__(self, interaction: discord.Interaction, *, private: bool = False) -> None:
        self.interaction = interaction
        self.private = private
        self.used = False

    def note(self) -> str:
        # A DM is read by the member alone; the channel by the whole server.
        locale = member_locale(self.interaction) if self.private else server_locale(self.interaction)
        command = self.interaction.command
        if isinstance(command, app_commands.Command):
            name = command_label(command, locale)
        else:  # a message menu ("Read aloud") is named as the client shows it in English
            name = command.name if command is not None else "?"
        return translate(
            "reply.expired.dm" if self.private else "reply.expired.channel",
            locale,
            user=self.interaction.user.mention,
            command=name,
        )

    async def send(self, content: str) -> SentMessage:
        target: discord.abc.Messageable
        if self.private:
            target = await self.interaction.user.create_dm()
        elif isinstance(self.interaction.channel, discord.abc.Messageable):
            target = self.interaction.channel
        else:
            raise errors.BotError("the interaction's channel cannot receive messages")
        if not self.used:
            self.used = True
            log.info(
                "interaction token expired; continuing the reply in %s",
                "a DM" if self.private else "the channel",
            )
            await target.send(self.note())
        return SentMessage(await target.send(content))


class LazyReply:
    """The first message of a reply that is sent with its first text (an @mention's answer), carrying the
    answer's buttons like an interaction's original response does."""

    def __init__(self, send: Callable[[str, discord.ui.View | None], Awaitable[discord.Message]]) -> None:
        self._send = send
        self.message: discord.Message | None = None
        self.view: discord.ui.View | None = None
        self.view_sent = True

    @property
    def message_id(self) -> int | None:
        return self.message.id if self.message is not None else None

    def set_view(self, view: discord.ui.View | None) -> None:
        self.view = view
        self.view_sent = False

    async def show_view(self) -> None:
        if not self.view_sent and self.message is not None:
            view = self.view
            self.message = await self.message.edit(view=view)
            self.view_sent = view is self.view

    async def edit(self, content: str) -> Any:
        view = self.view
        if self.message is None:
            self.message = await self._send(content, view)
        else:
            self.message = await self.message.edit(content=content, view=view)
        if view is self.view:
            self.view_sent = True
        return self.message

    async def delete(self) -> Any:
        if self.message is not None:
            return await self.message.delete()
        return None


class _Relocatable:
    """An interaction message that moves to its fallback when Discord refuses the interaction's token."""

    def __init__(self, fallback: ExpiryFallback | None) -> None:
        self.fallback = fallback
        self.moved: Editable | None = None
        self._message_id: int | None = None

    @property
    def message_id(self) -> int | None:
        if self.moved is not None:
            return message_id_of(self.moved)
        return self._message_id

    def _seen(self, message: object) -> None:
        message_id = getattr(message, "id", None)
        if isinstance(message_id, int):
            self._message_id = message_id

    async def _edit_here(self, content: str) -> Any:
        raise NotImplementedError

    async def _delete_here(self) -> Any:
        raise NotImplementedError

    async def edit(self, content: str) -> Any:
        if self.moved is not None:
            return await self.moved.edit(content)
        try:
            return await self._edit_here(content)
        except discord.HTTPException as exc:
            if self.fallback is None or not token_expired(exc):
                raise
            self.moved = await self.fallback.send(content)
            return self.moved

    async def delete(self) -> Any:
        if self.moved is not None:
            return await self.moved.delete()
        return await self._delete_here()


class OriginalResponse(_Relocatable):
    """The deferred response of an interaction, as something a StreamingReply can edit."""

    def __init__(
        self,
        interaction: discord.Interaction,
        fallback: ExpiryFallback | None = None,
        *,
        deferral: Awaitable[Any] | None = None,
    ) -> None:
        super().__init__(fallback)
        self.interaction = interaction
        self.deferral = deferral  # a deferral still in flight; a failed one raises here
        # Buttons sent with every edit (MISSING keeps what the message has, None removes them).
        self.view: Any = discord.utils.MISSING
        self.view_sent = True

    def set_view(self, view: discord.ui.View | None) -> None:
        self.view = view
        self.view_sent = False

    async def show_view(self) -> None:
        """Send the buttons set last if no edit carried them yet (the text may not have changed)."""
        if not self.view_sent and self.moved is None:
            await self._edit_view()

    async def _edit_view(self) -> None:
        if self.deferral is not None:
            await self.deferral
        self._seen(await self.interaction.edit_original_response(view=self.view))
        self.view_sent = True

    async def _edit_here(self, content: str) -> Any:
        if self.deferral is not None:
            await self.deferral
        view = self.view
        message = await self.interaction.edit_original_response(content=content, view=view)
        self._seen(message)
        if view is self.view:
            self.view_sent = True
        return message

    async def _delete_here(self) -> Any:
        if self.deferral is not None:
            await self.deferral
        return await self.interaction.delete_original_response()


class FollowupMessage(_Relocatable):
    """A followup of an interaction; its edits use the interaction's token too."""

    def __init__(self, message: discord.WebhookMessage, fallback: ExpiryFallback | None = None) -> None:
        super().__init__(fallback)
        self.message = message
        self._seen(message)

    async def _edit_here(self, content: str) -> Any:
        return await self.message.edit(content=content)

    async def _delete_here(self) -> Any:
        return await self.message.delete()


async def send_followup(
    interaction: discord.Interaction,
    content: str,
    *,
    ephemeral: bool = False,
    fallback: ExpiryFallback | None = None,
) -> Editable:
    """A followup message, or (once the token expired) a message through `fallback`."""
    try:
        message = await interaction.followup.send(content, ephemeral=ephemeral, wait=True)
    except discord.HTTPException as exc:
        if fallback is None or not token_expired(exc):
            raise
        return await fallback.send(content)
    return FollowupMessage(message, fallback)


Creator = Callable[[str], Awaitable[Editable]]


PLACEHOLDER = "…"  # a part an answer being rewritten has not reached yet


class StreamingReply:
    """Shows a growing answer across as many 2000-character messages as it needs.

    Updates are coalesced and flushed by one background task at most once per `interval`, so a fast
    stream costs about one edit per second per message, well within Discord's rate limits. With a `pacer`,
    its interval is the pacer's, which grows when many answers stream at once (bot/util/pacing.py).

    `rest` are the further parts of an answer being rewritten (Regenerate): they are edited in order as
    the new text reaches them, show a placeholder until then, and the ones the final text does not need
    are deleted at the end. Only messages this reply created are discarded on failure.
    """

    def __init__(
        self,
        first: Editable | None,
        create: Creator,
        *,
        interval: float = 1.0,
        cursor: str = " ▌",
        rest: Sequence[Editable] = (),
        pacer: StreamPacer | None = None,
    ) -> None:
        self._handles: list[Editable] = ([first] if first is not None else []) + list(rest)
        self._given = len(self._handles)
        self._shown: list[str] = []
        self._create = create
        self._pacer = pacer or StreamPacer.fixed(interval)
        self._cursor = cursor
        self._latest = ""
        self._dirty = asyncio.Event()
        self._closed = False
        self._worker: asyncio.Task[None] | None = None
        self._last_flush = 0.0
        self._showing = False
        self.edits = 0

    async def update(self, text: str) -> None:
        self._latest = text
        self._dirty.set()
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="streaming-reply")

    async def _run(self) -> None:
        self._pacer.started()
        try:
            await self._edit_while_streaming()
        finally:
            self._pacer.finished()

    async def _edit_while_streaming(self) -> None:
        while not self._closed:
            await self._dirty.wait()
            if self._closed:
                return
            wait = self._last_flush + self._pacer.interval() - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                if self._closed:
                    return
            self._dirty.clear()
            self._showing = True
            try:
                await self._show(self._latest + self._cursor)
            except discord.HTTPException:
                # A failed intermediate edit is not fatal: the final flush carries the whole answer.
                log.info("a streaming edit failed; continuing")
            finally:
                self._showing = False
            self._last_flush = time.monotonic()

    def message_ids(self) -> list[int]:
        """The ids of the messages showing the answer, in order (those that exist and are known)."""
        return [m for m in (message_id_of(handle) for handle in self._handles) if m is not None]

    async def _show(self, text: str, *, final: bool = False) -> None:
        # Neutralise before splitting: the zero-width space it inserts must not push a piece past 2000.
        pieces = split_message(neutralize_mentions(text)) or ["…"]
        for index, piece in enumerate(pieces):
            if index < len(self._shown) and self._shown[index] == piece:
                continue
            if index < len(self._handles):
                try:
                    await self._handles[index].edit(piece)
                except discord.NotFound:
                    if not 0 < index < self._given:
                        raise
                    # A part of the answer being rewritten was deleted (by a moderator, say): the old
                    # parts after it go too, and the rest follows as new messages, so the order holds.
                    await self._drop_old_parts_from(index)
                    self._handles.append(await self._create(piece))
            else:
                self._handles.append(await self._create(piece))
            self.edits += 1
            if index < len(self._shown):
                self._shown[index] = piece
            else:
                self._shown.append(piece)
        if not final and len(self._handles) > len(pieces):
            # Parts of an answer being rewritten stay until the end (the new text may still reach them),
            # without the old text that no longer belongs to it.
            for index in range(len(pieces), len(self._handles)):
                if index < len(self._shown) and self._shown[index] == PLACEHOLDER:
                    continue
                with contextlib.suppress(discord.HTTPException):
                    await self._handles[index].edit(PLACEHOLDER)
                    self.edits += 1
                while len(self._shown) < index:
                    self._shown.append("")
                if index < len(self._shown):
                    self._shown[index] = PLACEHOLDER
                else:
                    self._shown.append(PLACEHOLDER)
            return
        for extra in self._handles[len(pieces) :]:
            with contextlib.suppress(discord.HTTPException):
                await extra.delete()
        del self._handles[len(pieces) :]
        del self._shown[len(pieces) :]
        self._given = min(self._given, len(self._handles))

    async def _drop_old_parts_from(self, index: int) -> None:
        for handle in self._handles[index + 1 : self._given]:
            with contextlib.suppress(discord.HTTPException):
                await handle.delete()
        del self._handles[index:]
        del self._shown[index:]
        self._given = index

    async def _stop(self) -> None:
        self._closed = True
        self._dirty.set()
        if self._worker is not None:
            if not self._showing:
                # Cancelled only while it waits: cut short inside `_create`, a message Discord already
                # made would never be tracked, so its cursor text would stay behind for good.
                self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def settle(self) -> None:
        """Stop showing intermediate text (the stream is over); `finish` shows the final text."""
        await self._stop()

    async def finish(self, text: str) -> None:
        """Show the final text exactly (no cursor)."""
        await self._stop()
        await self._show(text, final=True)

    async def discard(self, *, keep_first: bool = True) -> None:
        """Remove the messages this reply created; an interaction's first one is replaced by the failure,
        and the parts of an answer being rewritten are left for whoever restores it."""
        await self._stop()
        kept: list[Editable] = []
        for index, handle in enumerate(self._handles):
            if (index == 0 and keep_first) or 0 < index < self._given:
                kept.append(handle)
                continue
            with contextlib.suppress(discord.HTTPException):
                await handle.delete()
        self._handles = kept

"""/recall: search the server's messages by meaning; indexes what passed moderation, backfills on enable."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.discord_io.client import OpenAIBot, wants_messages
from bot.discord_io.locales import member_locale
from bot.discord_io.text import neutralize_mentions, preview
from bot.i18n import translate
from bot.moderation.channel import Outcome
from bot.moderation.queue import MessageSubject
from bot.openai_api.gateway import CallContext
from bot.recall.index import Document, Match
from bot.recall.service import Recall
from bot.settings import Settings
from cogs.moderation.listener import subject_from_message

log = logging.getLogger(__name__)
RESULTS = 5
EXCERPT_CHARS = 200
PROGRESS_INTERVAL = 2.0  # seconds between edits of the admin's progress line
HISTORY_CHUNK = 100  # messages read from history before they are moderated together
OWN_SETTLE = 3.0  # the bot's own answers stream in edits: embed once they have been still this long
EPHEMERAL = 1 << 6


def readable_channels(
    guild: discord.Guild, member: discord.Member, pairs: set[tuple[int, int]]
) -> dict[int, int]:
    """Of the indexed (channel, parent) pairs, those `member` can read now: {channel id: parent id or 0}."""
    readable: dict[int, int] = {}
    for channel_id, parent_id in pairs:
        channel = guild.get_channel_or_thread(channel_id)
        if channel is None:
            continue  # deleted, or an archived thread the bot no longer holds: not shown
        perms = channel.permissions_for(member)
        if not (perms.view_channel and perms.read_message_history):
            continue
        if isinstance(channel, discord.Thread) and channel.is_private() and not perms.manage_threads:
            if channel.owner_id != member.id:
                continue  # a private thread's permissions come from its parent; membership is not known
        readable[channel_id] = parent_id
    return readable


def render_matches(query: str, matches: list[Match], locale: str | None = None) -> str:
    if not matches:
        return translate("recall.no_matches", locale)
    lines = [translate("recall.header", locale, query=preview(" ".join(query.split()), 100))]
    for number, match in enumerate(matches, 1):
        excerpt = neutralize_mentions(preview(" ".join(match.excerpt.split()), EXCERPT_CHARS))
        lines.append(f"{number}. <@{match.author_id}> · <t:{int(match.created_at)}:f> · {match.jump_url}")
        lines.append(f"> {excerpt}")
    return "\n".join(lines)[:2000]


class RecallCommands(commands.Cog):
    recall = app_commands.Group(
        name="recall", description="Search this server's messages by meaning", guild_only=True
    )

    def __init__(self, bot: OpenAIBot, recall: Recall, settings: Settings) -> None:
        self.bot = bot
        self.service = recall
        self.settings = settings
        self._backfills: dict[int, asyncio.Task[None]] = {}
        # The bot's own answers waiting for their stream to settle: {message id: (timer, channel, parent)}.
        self._own_timers: dict[int, tuple[asyncio.TimerHandle, int, int]] = {}

    async def cog_load(self) -> None:
        self.service.start()

    async def cog_unload(self) -> None:
        for timer, _, _ in self._own_timers.values():
            timer.cancel()
        for task in self._backfills.values():
            task.cancel()
        for task in list(self._backfills.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- commands -----------------------------------------------------------------------------------

    @recall.command(name="search", description="Find messages in this server by what they mean")
    @app_commands.describe(
        query="What you are looking for, in your own words", scope="Where to look (default: the whole server)"
    )
    @app_commands.choices(
        scope=[
            app_commands.Choice(name="whole server", value="server"),
            app_commands.Choice(name="this channel", value="channel"),
        ]
    )
    async def search(
        self,
        interaction: discord.Interaction,
        query: str,
        scope: app_commands.Choice[str] | None = None,
    ) -> None:
        guild = interaction.guild
        assert guild is not None and interaction.channel_id is not None
        member = interaction.user
        if not isinstance(member, discord.Member):
            member = guild.get_member(member.id) or await guild.fetch_member(member.id)
        await interaction.response.defer(ephemeral=True, thinking=True)
        readable = readable_channels(guild, member, await self.service.channels(guild.id))
        if scope is not None and scope.value == "channel":
            here = interaction.channel_id
            readable = {c: p for c, p in readable.items() if here in (c, p)}
        context = CallContext(guild.id, interaction.channel_id, member.id, "recall", admitted=True)
        matches = await self.service.search(context, query, readable, limit=RESULTS)
        await interaction.followup.send(
            render_matches(query, matches, member_locale(interaction)), ephemeral=True
        )

    @recall.command(name="enable", description="Index this server's messages for /recall (Manage Server)")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def enable(self, interaction: discord.Interaction) -> None:
        guild = interaction.guild
        assert guild is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        newly = await self.service.enable(guild.id, interaction.user.id)
        days = self.settings.recall_backfill_days
        locale = member_locale(interaction)
        if not newly:
            await interaction.followup.send(translate("recall.already_on", locale), ephemeral=True)
            return
        if days <= 0 or guild.id in self._backfills:
            await interaction.followup.send(translate("recall.on.no_backfill", locale), ephemeral=True)
            return
        await interaction.followup.send(translate("recall.on.backfill", locale, days=days), ephemeral=True)
        task = asyncio.create_task(
            self._backfill(guild, interaction, days), name=f"recall-backfill-{guild.id}"
        )
        self._backfills[guild.id] = task
        task.add_done_callback(lambda _: self._backfills.pop(guild.id, None))

    @recall.command(
        name="disable", description="Stop indexing and delete this server's index (Manage Server)"
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def disable(self, interaction: discord.Interaction) -> None:
        guild = interaction.guild
        assert guild is not None
        backfill = self._backfills.pop(guild.id, None)
        if backfill is not None:
            backfill.cancel()
        deleted = await self.service.disable(guild.id)
        await interaction.response.send_message(
            translate("recall.off", member_locale(interaction), count=deleted), ephemeral=True
        )

    # -- backfill -----------------------------------------------------------------------------------

    async def _backfill(self, guild: discord.Guild, interaction: discord.Interaction, days: int) -> None:
        after = discord.utils.utcnow() - dt.timedelta(days=days)
        every: list[discord.TextChannel | discord.Thread] = [*guild.text_channels, *guild.threads]
        channels = [
            c
            for c in every
            if c.permissions_for(guild.me).view_channel and c.permissions_for(guild.me).read_message_history
        ]
        read = passed = 0
        shown = 0.0
        locale = member_locale(interaction)

        async def progress(done: int, final: str = "") -> None:
            nonlocal shown
            if not final and time.monotonic() - shown < PROGRESS_INTERVAL:
                return
            shown = time.monotonic()
            text = final or translate(
                "recall.backfill.progress", locale, done=done, total=len(channels), read=read, passed=passed
            )
            try:
                await interaction.edit_original_response(content=text)
            except discord.HTTPException:
                log.info("recall: the backfill progress line could not be edited (token expired?)")

        try:
            for done, channel in enumerate(channels):
                chunk: list[discord.Message] = []
                try:
                    async for message in channel.history(limit=None, after=after, oldest_first=True):
                        chunk.append(message)
                        if len(chunk) >= HISTORY_CHUNK:
                            read, passed = read + len(chunk), passed + await self._index_history(chunk)
                            chunk = []
                            await progress(done)
                except discord.HTTPException as exc:
                    log.info("recall: history of channel %s could not be read: %s", channel.id, exc.status)
                read, passed = read + len(chunk), passed + await self._index_history(chunk)
                await progress(done + 1)
            await self.service.idle()
            total = await self.service.index.count(guild.id)
            await progress(
                len(channels),
                translate(
                    "recall.backfill.done",
                    locale,
                    passed=passed,
                    read=read,
                    days=days,
                    count=len(channels),
                    searchable=total,
                ),
            )
        except errors.BotError as exc:
            await progress(0, translate("recall.backfill.stopped", locale, reason=exc.user_message(locale)))

    async def _index_history(self, messages: list[discord.Message]) -> int:
        """Moderate a chunk of history through the same gate (no action on old messages); index what passed."""
        own = [self._own_document(m) for m in messages if m.author.id == self.bot.bot_user_id]
        subjects = [
            (s, m.author.display_name)
            for m in messages
            if (s := subject_from_message(m, self.bot.bot_user_id, "backfill")) is not None and s.text.strip()
        ]
        verdicts = await self.service.screen_many([s for s, _ in subjects])
        documents = [
            self.service.document(s, name) for (s, name), ok in zip(subjects, verdicts, strict=True) if ok
        ]
        documents += [d for d in own if d is not None]
        self.service.submit(documents)
        return len(documents)

    # -- live messages ------------------------------------------------------------------------------

    @commands.Cog.listener()
    # Every channel message's verdict comes here: none starts a task in a server known to have recall off.
    @wants_messages(
        lambda cog, subject: subject.kind == "message" and not cog.service.known_off(subject.guild_id)
    )
    async def on_message_moderated(self, subject: MessageSubject, outcome: Outcome) -> None:
        guild = self.bot.get_guild(subject.guild_id)
        member = guild.get_member(subject.author_id) if guild is not None else None
        try:
            await self.service.consider(
                subject, outcome.status, outcome.reason, member.display_name if member is not None else ""
            )
        except errors.BotError as exc:
            log.warning("recall: a message was not indexed: %s", type(exc).__name__)

    def _own_document(self, message: discord.Message) -> Document | None:
        if message.guild is None or not message.content.strip() or message.flags.ephemeral:
            return None
        return Document(
            message_id=message.id,
            guild_id=message.guild.id,
            channel_id=message.channel.id,
            author_id=message.author.id,
            text=message.content,
            author_name=message.author.display_name,
            parent_channel_id=getattr(message.channel, "parent_id", None) or 0,
        )

    async def _own_message(self, message: discord.Message) -> None:
        """The bot's own answers (already moderated as output) are indexed once their stream settles."""
        document = self._own_document(message)
        if document is None or not await self.service.enabled(document.guild_id):
            return
        waiting = self._own_timers.pop(document.message_id, None)
        if waiting is not None:
            waiting[0].cancel()

        def settled() -> None:
            self._own_timers.pop(document.message_id, None)
            self.service.submit([document])

        timer = asyncio.get_running_loop().call_later(OWN_SETTLE, settled)
        self._own_timers[document.message_id] = (timer, document.channel_id, document.parent_channel_id)

    @commands.Cog.listener()
    # Only the bot's own answers, and none in a server known to have recall off: no task for the rest.
    @wants_messages(
        lambda cog, message: (
            message.author.id == cog.bot.bot_user_id
            and not cog.service.known_off(message.guild.id if message.guild else None)
        )
    )
    async def on_message(self, message: discord.Message) -> None:
        if message.author.id == self.bot.bot_user_id:
            await self._own_message(message)

    @commands.Cog.listener()
    @wants_messages(
        lambda cog, payload: (
            payload.message.author.id == cog.bot.bot_user_id and not cog.service.known_off(payload.guild_id)
        )
    )
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        if payload.message.author.id == self.bot.bot_user_id:
            await self._own_message(payload.message)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self._forget(payload.guild_id, [payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        await self._forget(payload.guild_id, list(payload.message_ids))

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        await self._forget_channel(channel.id)

    @commands.Cog.listener()
    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        await self._forget_channel(payload.thread_id)

    async def _forget_channel(self, channel_id: int) -> None:
        """A deleted channel's or thread's messages are gone from Discord: their vectors go too, whether
        recall is on or not (it may have been turned off and on again since they were indexed)."""
        for message_id, (timer, *where) in list(self._own_timers.items()):
            if channel_id in where:
                timer.cancel()
                del self._own_timers[message_id]
        try:
            await self.service.forget_channel(channel_id)
        except errors.BotError as exc:
            log.warning("recall: a deleted channel's index could not be removed: %s", type(exc).__name__)

    async def _forget(self, guild_id: int | None, message_ids: list[int]) -> None:
        for message_id in message_ids:
            waiting = self._own_timers.pop(message_id, None)
            if waiting is not None:
                waiting[0].cancel()
        if guild_id is None or not await self.service.enabled(guild_id):
            return
        try:
            await self.service.forget_messages(message_ids)
        except errors.BotError as exc:
            log.warning(
                "recall: deleted messages could not be removed from the index: %s", type(exc).__name__
            )


async def setup(bot: OpenAIBot) -> None:
    await bot.add_cog(RecallCommands(bot, bot.services.recall, bot.services.settings))

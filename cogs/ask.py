"""/ask and the @mention / reply trigger: chat with the channel's memory, streamed into Discord."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.chat.conversation import Answer, AskRequest, Conversations
from bot.chat.vision import MAX_VISION_BYTES, check_image_size, image_data_url
from bot.cost.admission import Admission
from bot.discord_io.admission import requester
from bot.discord_io.client import OpenAIBot
from bot.discord_io.replies import (
    Editable,
    ExpiryFallback,
    OriginalResponse,
    SentMessage,
    StreamingReply,
    describe_failure,
    send_followup,
)
from bot.discord_io.text import message_text
from bot.settings import Settings
from bot.util.aio import stop_task

log = logging.getLogger(__name__)


def render_answer(answer: Answer, max_tokens: int) -> str:
    text = answer.text
    if answer.truncated:
        text += f"\n-# (answer cut at the {max_tokens}-token limit; ask me to continue)"
    if not answer.remembered:
        text += "\n-# (I could not save this exchange to the channel's memory)"
    return text


def can_reply(message: discord.Message) -> bool:
    """Whether the bot may post in the message's channel (threads need their own permission)."""
    guild = message.guild
    channel = message.channel
    if guild is None or not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
        return True
    permissions = channel.permissions_for(guild.me)
    if isinstance(channel, discord.Thread):
        return permissions.send_messages_in_threads
    return permissions.send_messages


def channel_guild_ids(channel: object, guild: discord.Guild | None) -> tuple[int, int]:
    return (guild.id if guild else 0), getattr(channel, "id", 0)


class Ask(commands.Cog):
    def __init__(
        self, bot: OpenAIBot, conversations: Conversations, admission: Admission, settings: Settings
    ) -> None:
        self.bot = bot
        self.conversations = conversations
        self.admission = admission
        self.settings = settings

    @app_commands.command(name="ask", description="Ask the AI; it remembers this channel's conversation.")
    @app_commands.describe(
        prompt="Your question or request",
        image="An image for the model to look at",
        private="Only you see the answer (it is still remembered in this channel)",
    )
    async def ask(
        self,
        interaction: discord.Interaction,
        prompt: str,
        image: discord.Attachment | None = None,
        private: bool = False,
    ) -> None:
        if image is not None:
            check_image_size(image.filename, image.size)
        # The answer's work (moderating the prompt, reading the history) starts beside the deferral instead
        # of one round trip after it; the deferral still goes on the wire first (README, "Performance").
        deferred: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        answering = asyncio.create_task(self._answer(interaction, deferred, prompt, image, private))
        try:
            await interaction.response.defer(ephemeral=private, thinking=True)
        except BaseException:
            deferred.cancel()  # the answer is stopped too: the error handler reports the deferral's failure
            await stop_task(answering)
            raise
        deferred.set_result(None)
        try:
            await asyncio.shield(answering)
        except asyncio.CancelledError:
            await stop_task(answering)  # the command itself was cancelled (a shutdown)
            raise

    async def _answer(
        self,
        interaction: discord.Interaction,
        deferral: asyncio.Future[None],
        prompt: str,
        image: discord.Attachment | None,
        private: bool,
    ) -> None:
        image_urls, image_names = [], []
        if image is not None:
            data = await self.bot.attachments.read(image, max_bytes=MAX_VISION_BYTES)
            image_urls.append(await image_data_url(image.filename, data))
            image_names.append(image.filename)
        guild_id, channel_id = channel_guild_ids(interaction.channel, interaction.guild)
        request = AskRequest(
            guild_id,
            channel_id,
            interaction.user.id,
            interaction.user.display_name,
            prompt,
            tuple(image_urls),
            tuple(image_names),
            admitted=True,
        )

        # A very slow answer can outlive the 15-minute token: it then continues in the channel (or a DM).
        fallback = ExpiryFallback(interaction, private=private)

        async def create_followup(content: str) -> Editable:
            return await send_followup(interaction, content, ephemeral=private, fallback=fallback)

        reply = StreamingReply(
            OriginalResponse(interaction, fallback, deferral=deferral),
            create_followup,
            interval=self.settings.stream_edit_interval,
        )
        try:
            answer = await self.conversations.ask(request, on_text=reply.update)
        except BaseException:
            await reply.discard()
            raise
        await reply.finish(render_answer(answer, self.settings.max_answer_tokens))

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.bot.user is None or not self._addresses_bot(message):
            return
        if message.guild is None and not self.settings.allow_dms:
            return
        if message.guild is not None and not can_reply(message):
            # Nobody would see the answer: don't generate, bill or remember it.
            log.info("cannot reply in channel %s: missing Send Messages", message.channel.id)
            return
        if not self.bot.in_flight.accepting:
            return  # shutting down
        prompt = re.sub(rf"<@!?{self.bot.user.id}>", "", message.content).strip()
        if not await self._mention_admitted(message, prompt):
            return
        self.bot.in_flight.track(lambda: self._tell(message, errors.ShuttingDown()))
        guild_id, channel_id = channel_guild_ids(message.channel, message.guild)
        request = AskRequest(
            guild_id,
            channel_id,
            message.author.id,
            message.author.display_name,
            prompt,
            command="mention",
            admitted=True,
            moderation_text=message_text(message),
        )

        async def create_reply(content: str) -> SentMessage:
            return SentMessage(await message.reply(content, mention_author=False))

        reply = StreamingReply(None, create_reply, interval=self.settings.stream_edit_interval)
        try:
            async with message.channel.typing():
                answer = await self.conversations.ask(request, on_text=reply.update)
            await reply.finish(render_answer(answer, self.settings.max_answer_tokens))
        except asyncio.CancelledError:
            # Cut short by the shutdown: no half answer stays behind (the drain tells the user why).
            await reply.discard(keep_first=False)
            raise
        except Exception as exc:
            await reply.discard(keep_first=False)
            if not isinstance(exc, errors.BotError | discord.HTTPException):
                log.exception("mention reply failed (guild %s, channel %s)", guild_id, channel_id)
            with contextlib.suppress(discord.HTTPException):
                await message.reply(describe_failure(exc), mention_author=False)

    async def _mention_admitted(self, message: discord.Message, prompt: str) -> bool:
        """A mention is /ask by other means: the same admission (allowlist, /limits, rate, budgets)."""
        try:
            await self.admission.admit("ask", requester(message.guild, message.author), {"prompt": prompt})
        except errors.GuildNotAllowed:
            return False  # a server the bot does not serve is not answered at all, as before
        except errors.BotError as refusal:
            await self._tell(message, refusal)
            return False
        return True

    async def _tell(self, message: discord.Message, error: BaseException) -> None:
        with contextlib.suppress(discord.HTTPException):
            await message.reply(describe_failure(error), mention_author=False)

    def _addresses_bot(self, message: discord.Message) -> bool:
        assert self.bot.user is not None
        if self.bot.user in message.mentions and not message.mention_everyone:
            return True
        reference = message.reference
        if reference is not None and isinstance(reference.resolved, discord.Message):
            return reference.resolved.author.id == self.bot.user.id
        return False


async def setup(bot: OpenAIBot) -> None:
    services = bot.services
    await bot.add_cog(Ask(bot, services.conversations, services.admission, services.settings))

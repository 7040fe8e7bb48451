"""/ask and the @mention / reply trigger: chat with the channel's memory, streamed into Discord."""

from __future__ import annotations

import contextlib
import logging
import re

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.app import OpenAIBot
from bot.conversation import Answer, AskRequest, Conversations
from bot.media import image_data_url
from bot.responses import OriginalResponse, SentMessage, StreamingReply, describe_failure
from bot.settings import Settings

log = logging.getLogger(__name__)


def render_answer(answer: Answer, max_tokens: int) -> str:
    text = answer.text
    if answer.truncated:
        text += f"\n-# (answer cut at the {max_tokens}-token limit; ask me to continue)"
    if not answer.remembered:
        text += "\n-# (I could not save this exchange to the channel's memory)"
    return text


def channel_guild_ids(channel: object, guild: discord.Guild | None) -> tuple[int, int]:
    return (guild.id if guild else 0), getattr(channel, "id", 0)


class Ask(commands.Cog):
    def __init__(self, bot: OpenAIBot, conversations: Conversations, settings: Settings) -> None:
        self.bot = bot
        self.conversations = conversations
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
        await interaction.response.defer(ephemeral=private, thinking=True)
        image_urls, image_names = [], []
        if image is not None:
            image_urls.append(await image_data_url(image.filename, await image.read()))
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
        )

        async def create_followup(content: str) -> SentMessage:
            return SentMessage(await interaction.followup.send(content, ephemeral=private, wait=True))

        reply = StreamingReply(
            OriginalResponse(interaction), create_followup, interval=self.settings.stream_edit_interval
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
        prompt = re.sub(rf"<@!?{self.bot.user.id}>", "", message.content).strip()
        guild_id, channel_id = channel_guild_ids(message.channel, message.guild)
        request = AskRequest(
            guild_id, channel_id, message.author.id, message.author.display_name, prompt, command="mention"
        )

        async def create_reply(content: str) -> SentMessage:
            return SentMessage(await message.reply(content, mention_author=False))

        reply = StreamingReply(None, create_reply, interval=self.settings.stream_edit_interval)
        try:
            async with message.channel.typing():
                answer = await self.conversations.ask(request, on_text=reply.update)
            await reply.finish(render_answer(answer, self.settings.max_answer_tokens))
        except Exception as exc:
            await reply.discard(keep_first=False)
            if not isinstance(exc, errors.BotError | discord.HTTPException):
                log.exception("mention reply failed (guild %s, channel %s)", guild_id, channel_id)
            with contextlib.suppress(discord.HTTPException):
                await message.reply(describe_failure(exc), mention_author=False)

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
    await bot.add_cog(Ask(bot, services.conversations, services.settings))

"""/speak and the "Read aloud" message menu: moderated text to speech, posted as a Discord voice message."""

from __future__ import annotations

import io
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.discord_io.client import OpenAIBot
from bot.discord_io.locales import server_locale
from bot.discord_io.voice import can_post_voice_message, post_voice_message
from bot.i18n import translate
from bot.i18n.time import format_elapsed
from bot.media.speech import DEFAULT_VOICE, MAX_STYLE_CHARS, VOICES, Speaker, SpeechResult
from bot.openai_api.calls import CallContext

log = logging.getLogger(__name__)

MAX_TEXT_OPTION = 6000  # Discord's longest string option; longer texts are read in several requests
VOICE_CHOICES = [app_commands.Choice(name=voice.capitalize(), value=voice) for voice in VOICES]


def _summary(result: SpeechResult, locale: str | None = None) -> str:
    text = translate(
        "speak.summary", locale, length=format_elapsed(round(result.seconds), locale), voice=result.voice
    )
    if result.parts > 1:
        text += " · " + translate("speak.parts", locale, count=result.parts)
    return text


class Speak(commands.Cog):
    def __init__(self, bot: OpenAIBot, speaker: Speaker) -> None:
        self.bot = bot
        self.speaker = speaker
        self.menu = app_commands.ContextMenu(name="Read aloud", callback=self.read_aloud)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @app_commands.command(name="speak", description="Read text aloud as a voice message.")
    @app_commands.describe(
        text="What to say",
        voice="The voice (default: Alloy)",
        style="How to say it: tone, pace, accent (e.g. 'calm and slow')",
    )
    @app_commands.choices(voice=VOICE_CHOICES)
    async def speak(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, MAX_TEXT_OPTION],
        voice: app_commands.Choice[str] | None = None,
        style: app_commands.Range[str, 1, MAX_STYLE_CHARS] | None = None,
    ) -> None:
        await interaction.response.defer(thinking=True)
        await self._deliver(interaction, text, voice.value if voice else DEFAULT_VOICE, style, "Your text")

    async def read_aloud(self, interaction: discord.Interaction, message: discord.Message) -> None:
        if not message.content.strip():
            raise errors.InvalidInput(message_id="speak.no_text")
        await interaction.response.defer(thinking=True)
        await self._deliver(interaction, message.content, DEFAULT_VOICE, None, "That message")

    async def _deliver(
        self, interaction: discord.Interaction, text: str, voice: str, style: str | None, what: str
    ) -> None:
        context = CallContext(
            interaction.guild_id, interaction.channel_id, interaction.user.id, "speak", admitted=True
        )
        result = await self.speaker.speak(text, voice=voice, style=style, context=context, what=what)
        locale = server_locale(interaction)  # the voice message and its line are public
        if can_post_voice_message(interaction) and interaction.guild_id and interaction.channel_id:
            try:
                link = await post_voice_message(
                    self.bot,
                    interaction.guild_id,
                    interaction.channel_id,
                    result.data,
                    seconds=result.seconds,
                    waveform_base64=result.waveform_base64,
                )
            except discord.HTTPException as exc:
                # A permission changed since the interaction was sent, or the channel refuses voice
                # messages: the speech is not lost, it goes out as an ordinary attachment below.
                log.info("posting a voice message failed (HTTP %s); sending an attachment", exc.status)
            else:
                await interaction.edit_original_response(content=f"🔊 {link} ({_summary(result, locale)})")
                return
        await interaction.edit_original_response(
            content=f"🔊 {_summary(result, locale)}",
            attachments=[discord.File(io.BytesIO(result.data), filename="speech.ogg")],
        )


async def setup(bot: OpenAIBot) -> None:
    await bot.add_cog(Speak(bot, bot.services.speaker))

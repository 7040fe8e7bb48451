"""/imagine: a generated image with its prompt, a live progress line, and an "Again" button for its author."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.cost.admission import Admission
from bot.discord_io.admission import admit_interaction
from bot.discord_io.client import OpenAIBot
from bot.discord_io.failures import is_expected, send_failure
from bot.discord_io.locales import member_locale, server_locale
from bot.discord_io.text import neutralize_mentions, preview
from bot.i18n import translate
from bot.i18n.time import format_elapsed
from bot.media.imaging import MAX_EDIT_IMAGE_BYTES, EditSource, ImageMaker, ImageResult
from bot.openai_api.calls import CallContext
from bot.settings import Settings

log = logging.getLogger(__name__)

MAX_PROMPT_OPTION = 4000  # the whole prompt fits in the result's embed (4096)
# An "Again" button answers for 14 minutes: the result message can be edited (to drop the button) for 15.
AGAIN_TIMEOUT = 14 * 60

SIZE_CHOICES = [
    app_commands.Choice(name="Square (1024×1024)", value="1024x1024"),
    app_commands.Choice(name="Landscape (1536×1024)", value="1536x1024"),
    app_commands.Choice(name="Portrait (1024×1536)", value="1024x1536"),
    app_commands.Choice(name="Auto (the model chooses)", value="auto"),
]
QUALITY_CHOICES = [
    app_commands.Choice(name="Low (fastest, cheapest)", value="low"),
    app_commands.Choice(name="Medium", value="medium"),
    app_commands.Choice(name="High (slowest)", value="high"),
    app_commands.Choice(name="Auto (the model chooses)", value="auto"),
]


def progress_line(seconds: float, locale: str | None = None) -> str:
    return translate("imagine.progress", locale, elapsed=format_elapsed(seconds, locale))


def result_embed(result: ImageResult, model: str, locale: str | None = None) -> discord.Embed:
    # A 4000-character prompt full of @here grows when neutralised: cut it to the embed's 4096 after.
    embed = discord.Embed(
        title=translate("imagine.prompt", locale),
        description=preview(neutralize_mentions(result.prompt), 4096),
    )
    if result.revised_prompt:
        embed.add_field(
            name=translate("imagine.revised_prompt", locale),
            # Neutralise first: the zero-width spaces must not push the field past its 1024 limit.
            value=preview(neutralize_mentions(result.revised_prompt), 1024),
            inline=False,
        )
    footer = translate("imagine.footer", locale, model=model, size=result.size, quality=result.quality)
    if result.reencoded:
        footer += " · " + translate("imagine.reencoded", locale)
    embed.set_footer(text=footer)
    embed.set_image(url=f"attachment://{result.filename}")
    return embed


class Imagine(commands.Cog):
    def __init__(self, bot: OpenAIBot, maker: ImageMaker, admission: Admission, settings: Settings) -> None:
        self.bot = bot
        self.maker = maker
        self.admission = admission
        self.settings = settings
        self.progress_interval = settings.imagine_progress_interval

    @app_commands.command(
        name="imagine", description="Generate an image from a description, or edit a picture."
    )
    @app_commands.describe(
        prompt="What the image should show (with a picture: how to change it)",
        size="Image size (default: auto)",
        quality="Image quality (default: auto); higher is slower and costs more",
        image="A picture to edit instead of drawing from scratch (PNG, JPEG or WebP)",
        mask="With image: a PNG, transparent where the picture may change, the same size as the picture",
    )
    @app_commands.choices(size=SIZE_CHOICES, quality=QUALITY_CHOICES)
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_OPTION],
        size: app_commands.Choice[str] | None = None,
        quality: app_commands.Choice[str] | None = None,
        image: discord.Attachment | None = None,
        mask: discord.Attachment | None = None,
    ) -> None:
        if mask is not None and image is None:
            raise errors.InvalidInput(message_id="imagine.mask_without_image")
        for attachment in (image, mask):
            if attachment is not None and attachment.size > MAX_EDIT_IMAGE_BYTES:
                raise errors.InvalidInput(
                    message_id="imagine.picture_too_large",
                    name=attachment.filename,
                    limit=MAX_EDIT_IMAGE_BYTES // 1024 // 1024,
                )
        size_value, quality_value = size.value if size else "auto", quality.value if quality else "auto"
        if image is None:
            await self.generate(interaction, prompt, size_value, quality_value)
            return
        await interaction.response.defer(thinking=True)
        source = EditSource(
            await self.bot.attachments.read(image, max_bytes=MAX_EDIT_IMAGE_BYTES),
            image.filename,
            await self.bot.attachments.read(mask, max_bytes=MAX_EDIT_IMAGE_BYTES) if mask else None,
            mask.filename if mask else "mask.png",
        )
        await self.generate(interaction, prompt, size_value, quality_value, source)

    async def generate(
        self,
        interaction: discord.Interaction,
        prompt: str,
        size: str,
        quality: str,
        source: EditSource | None = None,
    ) -> None:
        """Defer, show elapsed time while the image is made, then replace the progress line with the image."""
        if not interaction.response.is_done():
            await interaction.response.defer(thinking=True)
        context = CallContext(
            interaction.guild_id, interaction.channel_id, interaction.user.id, "imagine", admitted=True
        )
        started = time.monotonic()
        locale = server_locale(interaction)  # the progress line and the result are public
        if source is None:
            making = self.maker.imagine(
                prompt, size=size, quality=quality, upload_limit=interaction.filesize_limit, context=context
            )
        else:
            making = self.maker.edit(
                prompt,
                source,
                size=size,
                quality=quality,
                upload_limit=interaction.filesize_limit,
                context=context,
            )
        job = asyncio.create_task(making, name="imagine")
        try:
            while not job.done():
                await asyncio.wait({job}, timeout=self.progress_interval)
                if not job.done():
                    # A lost progress edit is harmless: the next one (or the result) replaces it.
                    with contextlib.suppress(discord.HTTPException):
                        await interaction.edit_original_response(
                            content=progress_line(time.monotonic() - started, locale)
                        )
        finally:
            if not job.done():
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job
        result = job.result()  # a failure goes to the tree's (or the view's) error handler
        view = AgainView(self, interaction.user.id, prompt, size, quality, source, locale=locale)
        view.message = await interaction.edit_original_response(
            content=None,
            embed=result_embed(result, self.settings.image_model, locale),
            attachments=[discord.File(io.BytesIO(result.data), filename=result.filename)],
            view=view,
        )


class AgainView(discord.ui.View):
    """The "Again" button: the same prompt, size, quality (and picture to edit), for the user who asked only."""

    def __init__(
        self,
        cog: Imagine,
        owner_id: int,
        prompt: str,
        size: str,
        quality: str,
        source: EditSource | None = None,
        *,
        locale: str | None = None,
    ) -> None:
        super().__init__(timeout=AGAIN_TIMEOUT)
        self.again.label = translate("imagine.again", locale)
        self.cog = cog
        self.owner_id = owner_id
        self.prompt = prompt
        self.size = size
        self.quality = quality
        self.source = source
        self.message: discord.InteractionMessage | None = None

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id == self.owner_id:
            return True
        await interaction.response.send_message(
            translate("imagine.again.not_yours", member_locale(interaction)), ephemeral=True
        )
        return False

    @discord.ui.button(label="Again", emoji="🔁", style=discord.ButtonStyle.secondary)
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button[AgainView]) -> None:
        # Like a slash command (GuardedTree): a shutdown lets it finish, or tells its user why it stopped.
        in_flight = self.cog.bot.in_flight
        if not in_flight.accepting:
            raise errors.ShuttingDown()
        in_flight.track(lambda: send_failure(interaction, errors.ShuttingDown()))
        # The same admission as /imagine itself: allowlist, /limits rules and roles, rate and budgets.
        options = {"prompt": self.prompt, "size": self.size, "quality": self.quality}
        await admit_interaction(self.cog.admission, interaction, "imagine", options)
        await self.cog.generate(interaction, self.prompt, self.size, self.quality, self.source)

    async def on_error(
        self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        if not is_expected(error):
            log.error("the Again button failed (guild %s)", interaction.guild_id, exc_info=error)
        await send_failure(interaction, error)

    async def on_timeout(self) -> None:
        if self.message is not None:
            with contextlib.suppress(discord.HTTPException):
                await self.message.edit(view=None)


async def setup(bot: OpenAIBot) -> None:
    services = bot.services
    await bot.add_cog(Imagine(bot, services.images, services.admission, services.settings))

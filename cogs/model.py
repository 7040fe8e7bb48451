"""/model: which chat model answers /ask and mentions here; admins choose it per server or channel."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.models import SERVER, ChatModels, ModelChoice
from bot.discord_io.admission import parent_channel_id
from bot.discord_io.client import OpenAIBot
from bot.discord_io.locales import member_locale
from bot.i18n import translate

SCOPES = [
    app_commands.Choice(name="This channel", value="channel"),
    app_commands.Choice(name="The whole server", value="server"),
]
# Where the model in use was chosen, as catalog ids.
SOURCES = {
    "channel": "model.source.channel",
    "server": "model.source.server",
    "default": "model.source.default",
}


def describe_choice(choice: ModelChoice, allowed: tuple[str, ...], locale: str | None = None) -> str:
    if choice.source == "parent":
        lines = [translate("model.from_parent", locale, model=choice.model)]
    else:
        source = translate(SOURCES[choice.source], locale)
        lines = [translate("model.show.current", locale, model=choice.model, source=source)]
    for model, scope in ((choice.channel_model, "channel"), (choice.server_model, "server")):
        if model is not None and model not in allowed:
            lines.append(translate(f"model.show.withdrawn.{scope}", locale, model=model))
    if choice.parent_model is not None and choice.parent_model not in allowed:
        lines.append(translate("model.parent_not_offered", locale, model=choice.parent_model))
    offered = ", ".join(f"`{m}`" for m in allowed)
    lines.append(translate("model.show.offered", locale, models=offered, default=allowed[0]))
    return "\n".join(lines)


class Model(commands.Cog):
    model = app_commands.Group(
        name="model", description="The chat model that answers /ask and mentions", guild_only=True
    )

    def __init__(self, bot: OpenAIBot, models: ChatModels) -> None:
        self.bot = bot
        self.models = models

    @model.command(name="show", description="Which chat model answers in this channel")
    async def model_show(self, interaction: discord.Interaction) -> None:
        choice = await self.models.choice(
            interaction.guild_id, interaction.channel_id, parent_channel_id(interaction.channel)
        )
        await interaction.response.send_message(
            describe_choice(choice, self.models.allowed, member_locale(interaction)), ephemeral=True
        )

    @model.command(name="set", description="Choose the chat model for this channel or server (Manage Server)")
    @app_commands.describe(
        name="One of the models the bot offers", scope="This channel (default) or the whole server"
    )
    @app_commands.choices(scope=SCOPES)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def model_set(self, interaction: discord.Interaction, name: str, scope: str = "channel") -> None:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        channel_id = SERVER if scope == "server" else interaction.channel_id
        chosen = await self.models.set(interaction.guild_id, channel_id, name, interaction.user.id)
        message_id = "model.set.server" if scope == "server" else "model.set.channel"
        await interaction.response.send_message(
            translate(message_id, member_locale(interaction), model=chosen), ephemeral=True
        )

    @model_set.autocomplete("name")
    async def model_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        typed = current.lower()
        return [app_commands.Choice(name=m, value=m) for m in self.models.allowed if typed in m.lower()][:25]

    @model.command(name="clear", description="Go back to the default chat model (Manage Server)")
    @app_commands.describe(scope="This channel's choice (default) or the server's")
    @app_commands.choices(scope=SCOPES)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def model_clear(self, interaction: discord.Interaction, scope: str = "channel") -> None:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        channel_id = SERVER if scope == "server" else interaction.channel_id
        removed = await self.models.clear(interaction.guild_id, channel_id)
        choice = await self.models.choice(
            interaction.guild_id, interaction.channel_id, parent_channel_id(interaction.channel)
        )
        outcome = "cleared" if removed else "none"
        await interaction.response.send_message(
            translate(f"model.clear.{outcome}.{scope}", member_locale(interaction), model=choice.model),
            ephemeral=True,
        )


async def setup(bot: OpenAIBot) -> None:
    await bot.add_cog(Model(bot, bot.services.chat_models))

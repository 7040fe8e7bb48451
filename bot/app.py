"""The Bot subclass: builds every service once in setup_hook, loads cogs/, syncs once, closes cleanly."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.conversation import Conversations
from bot.history import History
from bot.moderation import ModerationGate
from bot.openai_gateway import OpenAIGateway
from bot.responses import describe_failure, is_expected, send_failure
from bot.settings import Settings
from bot.store import Store

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything a cog may depend on, built once and passed in explicitly."""

    settings: Settings
    store: Store
    gateway: OpenAIGateway
    moderation: ModerationGate
    history: History
    conversations: Conversations


class GuardedTree(app_commands.CommandTree["OpenAIBot"]):
    """The command tree with the bot's one error handler and its global interaction checks."""

    async def interaction_check(self, interaction: discord.Interaction[OpenAIBot]) -> bool:
        settings = interaction.client.settings
        if interaction.guild is None and not settings.allow_dms:
            await interaction.response.send_message(
                "I only work inside servers: direct messages are turned off by this bot's admin.",
                ephemeral=True,
            )
            return False
        return True

    async def on_error(
        self, interaction: discord.Interaction[OpenAIBot], error: app_commands.AppCommandError
    ) -> None:
        command = interaction.command.qualified_name if interaction.command else "?"
        if is_expected(error):
            log.info(
                "/%s refused: %s (guild %s, channel %s)",
                command,
                type(getattr(error, "original", error)).__name__,
                interaction.guild_id,
                interaction.channel_id,
            )
        else:
            log.error(
                "/%s failed (guild %s, channel %s)",
                command,
                interaction.guild_id,
                interaction.channel_id,
                exc_info=error,
            )
        await send_failure(interaction, error)
        await interaction.client.after_command_error(interaction, error)


def intents_for(settings: Settings) -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.message_content = True
    intents.dm_messages = settings.allow_dms
    return intents


class OpenAIBot(commands.Bot):
    """The Discord client. Services exist from setup_hook until close()."""

    services: Services

    def __init__(self, settings: Settings, **client_options: Any) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents_for(settings),
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=GuardedTree,
            help_command=None,
            **client_options,
        )
        self.settings = settings
        self._store: Store | None = None
        self._gateway: OpenAIGateway | None = None

    @property
    def bot_user_id(self) -> int:
        return self.user.id if self.user else 0

    async def build_services(self) -> Services:
        store = self._store = await Store.open(self.settings.database_path)
        gateway = self._gateway = OpenAIGateway.from_settings(self.settings)
        moderation = ModerationGate(gateway)
        history = History(store)
        conversations = Conversations(
            history, gateway, moderation, self.settings, bot_user_id=lambda: self.bot_user_id
        )
        return Services(self.settings, store, gateway, moderation, history, conversations)

    async def setup_hook(self) -> None:
        self.services = await self.build_services()
        for name in extension_names():
            # A cog that fails to load stops start-up: a half-working bot is worse than a clear error.
            await self.load_extension(name)
        if self.settings.sync_commands:
            synced = await self.tree.sync()
            log.info("synced %d application commands", len(synced))

    async def after_command_error(self, interaction: discord.Interaction[Any], error: Exception) -> None:
        """A hook for services that react to failures (quota breaker); nothing by default."""

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: cogs listen to messages themselves (mentions, moderation)."""

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("unhandled error in %s", event_method)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self._gateway is not None:
                await self._gateway.close()
            if self._store is not None:
                await self._store.close()
            self._gateway = self._store = None


def extension_names() -> list[str]:
    """Every module or package in cogs/ whose name does not start with an underscore."""
    package = importlib.import_module("cogs")
    return sorted(
        f"cogs.{m.name}" for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")
    )


__all__ = ["GuardedTree", "OpenAIBot", "Services", "describe_failure", "extension_names", "intents_for"]

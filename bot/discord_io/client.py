"""The Bot subclass: builds every service once in setup_hook, loads cogs/, syncs once, closes cleanly."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.chat.conversation import Conversations
from bot.chat.history import History
from bot.cost.ledger import UsageLedger
from bot.cost.limits import Limits
from bot.discord_io.admission import check_interaction, install_cost_control
from bot.discord_io.failures import is_expected, send_failure
from bot.discord_io.inflight import InFlight
from bot.media.imaging import ImageMaker
from bot.media.transcription import AutoTranscribeChannels, Transcriber
from bot.moderation.channel import ChannelModerator, build_moderation
from bot.moderation.gate import ModerationGate
from bot.openai_api.gateway import OpenAIGateway
from bot.privacy.registry import Privacy
from bot.settings import Settings
from bot.storage.store import Store
from bot.summary.summarizer import Summarizer, SummaryLimits

log = logging.getLogger(__name__)
DRAINED_EVENTS = frozenset({"on_message", "on_message_edit", "on_raw_message_edit"})


@dataclass
class Services:
    """Everything a cog may depend on, built once and passed in explicitly."""

    settings: Settings
    store: Store
    gateway: OpenAIGateway
    moderation: ModerationGate
    history: History
    conversations: Conversations
    images: ImageMaker | None = None
    transcriber: Transcriber | None = None
    auto_transcribe: AutoTranscribeChannels | None = None
    summarizer: Summarizer | None = None
    channel_moderation: ChannelModerator | None = None
    ledger: UsageLedger | None = None
    limits: Limits | None = None
    privacy: Privacy | None = None


class AdmissionCrashed(app_commands.AppCommandError):
    """An unexpected failure while admitting a command, carried to the tree's one error handler."""

    def __init__(self, original: Exception) -> None:
        super().__init__(f"admitting the command failed: {type(original).__name__}")
        self.original = original


class GuardedTree(app_commands.CommandTree["OpenAIBot"]):
    """The command tree with the bot's one error handler and its global interaction checks."""

    async def interaction_check(self, interaction: discord.Interaction[OpenAIBot]) -> bool:
        try:
            return await self._admit(interaction)
        except app_commands.AppCommandError:
            raise
        except Exception as exc:
            # discord.py hands only AppCommandErrors to on_error: anything else raised here would leave the
            # interaction unanswered ("The application did not respond").
            raise AdmissionCrashed(exc) from exc

    async def _admit(self, interaction: discord.Interaction[OpenAIBot]) -> bool:
        settings = interaction.client.settings
        if interaction.guild is None and not settings.allow_dms:
            await interaction.response.send_message(
                "I only work inside servers: direct messages are turned off by this bot's admin.",
                ephemeral=True,
            )
            return False
        if interaction.type is discord.InteractionType.application_command:
            in_flight = interaction.client.in_flight
            if not in_flight.accepting:
                await send_failure(interaction, errors.ShuttingDown())
                return False
            in_flight.track(lambda: send_failure(interaction, errors.ShuttingDown()))
        # Allowlist, per-command on/off and roles, rate limit, budgets and the quota breaker: before any call.
        await check_interaction(interaction)
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
        # Commands and replies in progress: close() lets them finish within SHUTDOWN_GRACE.
        self.in_flight = InFlight()
        self._store: Store | None = None
        self._gateway: OpenAIGateway | None = None

    def _schedule_event(
        self,
        coro: Callable[..., Coroutine[Any, Any, Any]],
        event_name: str,
        *args: Any,
        **kwargs: Any,
    ) -> asyncio.Task[Any]:
        # Message handlers (mention replies, channel moderation) are work a shutdown lets finish.
        task = super()._schedule_event(coro, event_name, *args, **kwargs)
        if event_name in DRAINED_EVENTS:
            self.in_flight.add(task)
        return task

    @property
    def bot_user_id(self) -> int:
        return self.user.id if self.user else 0

    async def build_services(self) -> Services:
        store = self._store = await Store.open(self.settings.database_path)
        gateway = self._gateway = OpenAIGateway.from_settings(self.settings)
        moderation, channel_moderation = build_moderation(self.settings, gateway, store)
        history = History(store, window_tokens=self.settings.history_token_budget)
        conversations = Conversations(
            history, gateway, moderation, self.settings, bot_user_id=lambda: self.bot_user_id
        )
        return Services(
            self.settings,
            store,
            gateway,
            moderation,
            history,
            conversations,
            images=ImageMaker(gateway, moderation, moderate_output=self.settings.image_output_moderation),
            transcriber=Transcriber(
                gateway, moderation, limit_bytes=self.settings.transcription_upload_limit
            ),
            auto_transcribe=AutoTranscribeChannels(store),
            channel_moderation=channel_moderation,
            summarizer=Summarizer(
                gateway, self.settings.summary_model, SummaryLimits.from_settings(self.settings)
            ),
        )

    async def setup_hook(self) -> None:
        self.services = await self.build_services()
        install_cost_control(self, self.services)
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
            # Before the HTTP session and the database close, so in-flight work can still answer and save.
            await self.in_flight.drain(self.settings.shutdown_grace)
            await super().close()
        finally:
            services: Services | None = getattr(self, "services", None)
            if services is not None:
                await services.moderation.close()
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


__all__ = ["GuardedTree", "OpenAIBot", "Services", "extension_names", "intents_for"]

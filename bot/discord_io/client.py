"""The Bot subclass: builds every service once in setup_hook, loads cogs/, syncs once, closes cleanly.

`create_bot` picks the class: `OpenAIBot` (a plain commands.Bot, one gateway session) unless SHARD_COUNT is
set, then `ShardedOpenAIBot` (the same bot on discord.py's AutoShardedBot) running SHARD_IDS' shards.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.discord_io.admission import check_interaction
from bot.discord_io.attachments import AttachmentReader
from bot.discord_io.failures import is_expected, send_failure
from bot.discord_io.gateway_turns import taking_turns
from bot.discord_io.health import OpsServer, serve_ops, watch_client
from bot.discord_io.inflight import InFlight
from bot.discord_io.modlog import DiscordModlog
from bot.discord_io.translator import CatalogTranslator
from bot.i18n import translate
from bot.services import Services, build_services
from bot.settings import Settings

log = logging.getLogger(__name__)
Listener = TypeVar("Listener", bound=Callable[..., Coroutine[Any, Any, Any]])


def wants_messages(test: Callable[[Any, Any], bool]) -> Callable[[Listener], Listener]:
    """Give a message listener (`on_message`, `on_raw_message_edit`, `on_message_moderated`) a synchronous test
    of (its cog, the event's first argument), run before discord.py makes the listener a task: an event it
    fails costs no task.

    discord.py starts one task per listener per message; of the five message listeners, most want few
    messages (voice messages, mentions, the bot's own), and the tasks were a fifth of a busy process's CPU
    (docs/performance.md). The listener's own checks stay: the test only spares the task.
    """

    def mark(listener: Listener) -> Listener:
        listener.wants_message = test  # type: ignore[attr-defined]
        return listener

    return mark


DRAINED_EVENTS = frozenset(
    {"on_message", "on_message_edit", "on_raw_message_edit", "on_thread_create", "on_thread_update"}
)


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
                translate("failure.dms_off", str(interaction.locale)), ephemeral=True
            )
            return False
        if interaction.type is discord.InteractionType.application_command:
            in_flight = interaction.client.in_flight
            if not in_flight.accepting:
                await send_failure(interaction, errors.ShuttingDown())
                return False
            in_flight.track(lambda: send_failure(interaction, errors.ShuttingDown()))
        # Allowlist, per-command on/off and roles, rate limit, budgets and the quota breaker: before any call.
        await check_interaction(interaction.client.services.admission, interaction)
        return True

    async def on_error(
        self, interaction: discord.Interaction[OpenAIBot], error: app_commands.AppCommandError
    ) -> None:
        command = interaction.command.qualified_name if interaction.command else "?"
        outcome = "refused" if is_expected(error) else "failed"
        interaction.client.services.metrics.command(command, outcome, interaction.guild_id)
        context = {"command": command, "guild": interaction.guild_id, "channel": interaction.channel_id}
        if is_expected(error):
            log.info(
                "/%s refused: %s (guild %s, channel %s)",
                command,
                # Admission's reason (rate, slots, budget, rule), never content; else the error's type.
                getattr(error, "reason", None) or type(getattr(error, "original", error)).__name__,
                interaction.guild_id,
                interaction.channel_id,
                extra=context,
            )
        else:
            log.error(
                "/%s failed (guild %s, channel %s)",
                command,
                interaction.guild_id,
                interaction.channel_id,
                exc_info=error,
                extra=context,
            )
        await send_failure(interaction, error)


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
            # Where Discord offers the commands: not in DMs while ALLOW_DMS is off (the check in code stays).
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=settings.allow_dms, private_channel=settings.allow_dms
            ),
            help_command=None,
            # No message cache: nothing reads it (a reply's message comes in its own payload; moderation keeps
            # a digest per message, bot/moderation/judged.py), and discord.py searched its 1,000 messages one
            # by one and copied the match on every MESSAGE_UPDATE, each edit of every streamed answer.
            max_messages=None,
            **client_options,
        )
        self.settings = settings
        # A backlog of gateway events must not hold up moderation replies and the heartbeat.
        self.http.ws_connect = taking_turns(self.http.ws_connect)  # type: ignore[method-assign,assignment]
        # Commands and replies in progress: close() lets them finish within SHUTDOWN_GRACE.
        self.in_flight = InFlight()
        # Every mod-log post (action embeds, outage and credit notices) goes out through this one poster.
        self.modlog = DiscordModlog(self)
        self.attachments = AttachmentReader(timeout=settings.attachment_timeout)
        self.ops: OpsServer | None = None  # METRICS_PORT's /metrics and /healthz, started in setup_hook

    def _schedule_event(  # type: ignore[override]  # discord.py's callers ignore the task
        self,
        coro: Callable[..., Coroutine[Any, Any, Any]],
        event_name: str,
        *args: Any,
        **kwargs: Any,
    ) -> asyncio.Task[Any] | None:
        test = getattr(coro, "wants_message", None)
        if test is not None and args and not test(getattr(coro, "__self__", None), args[0]):
            return None  # see wants_messages
        # Message handlers (mention replies, channel moderation) are work a shutdown lets finish.
        task = super()._schedule_event(coro, event_name, *args, **kwargs)
        if event_name in DRAINED_EVENTS:
            self.in_flight.add(task)
        return task

    @property
    def bot_user_id(self) -> int:
        return self.user.id if self.user else 0

    async def setup_hook(self) -> None:
        self.services = await build_services(
            self.settings, modlog_sink=self.modlog, bot_user_id=lambda: self.bot_user_id
        )
        await self.services.server_languages.load()
        gateway_state = watch_client(
            self, self.services.metrics, self.settings.held_shards, self.settings.shard_count
        )
        if self.settings.sharded:
            log.info("this process runs %s", gateway_state.describe())
        self.ops = await serve_ops(
            self, gateway_state, self.services.store, self.services.metrics, self.settings
        )
        for name in extension_names():
            # A cog that fails to load stops start-up: a half-working bot is worse than a clear error.
            await self.load_extension(name)
        server_only_contexts(self.tree)
        # Before any sync: every command, option and choice goes out with its en-US, en-GB and ko texts.
        await self.tree.set_translator(CatalogTranslator())
        # One process syncs: every process pushing the same commands at once would only race Discord's
        # rate limit on the commands endpoint (docs/sharding.md).
        if self.settings.syncs_commands:
            synced = await self.tree.sync()
            log.info("synced %d application commands", len(synced))
        elif self.settings.sync_commands is None:
            log.info("not syncing application commands: the process holding shard 0 does")

    @wants_messages(lambda bot, message: False)
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
            await self.attachments.close()
            if self.ops is not None:
                await self.ops.close()
            services: Services | None = getattr(self, "services", None)
            if services is not None:
                await services.close()


class ShardedOpenAIBot(OpenAIBot, commands.AutoShardedBot):
    """The same bot on discord.py's AutoShardedBot: one gateway session per shard it runs (SHARD_IDS, or
    every shard of SHARD_COUNT), sharing one set of services, cogs and in-flight work."""

    def __init__(self, settings: Settings, **client_options: Any) -> None:
        if settings.shard_count is None:
            raise ValueError("ShardedOpenAIBot needs SHARD_COUNT")
        super().__init__(
            settings,
            shard_count=settings.shard_count,
            shard_ids=list(settings.held_shards),
            **client_options,
        )


def create_bot(settings: Settings, **client_options: Any) -> OpenAIBot:
    """The bot for these settings: sharded when SHARD_COUNT is set, else exactly the unsharded bot."""
    if settings.sharded:
        return ShardedOpenAIBot(settings, **client_options)
    return OpenAIBot(settings, **client_options)


def server_only_contexts(tree: app_commands.CommandTree[Any]) -> None:
    """Server-only commands list only the guild context: Discord ignores dm_permission once `contexts` is set,
    and discord.py's guild_only leaves the DM contexts unset, to be filled from the tree's (DMs allowed)."""
    for command in tree.get_commands():
        if getattr(command, "guild_only", False):
            command.allowed_contexts = app_commands.AppCommandContext(
                guild=True, dm_channel=False, private_channel=False
            )


def extension_names() -> list[str]:
    """Every module or package in cogs/ whose name does not start with an underscore."""
    package = importlib.import_module("cogs")
    return sorted(
        f"cogs.{m.name}" for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")
    )

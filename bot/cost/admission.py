"""Admission: whether a request may run now (allowlist, /limits rules and roles, rate, budgets, breaker)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from bot import errors
from bot.cost.limits import Limits, plan_for_command
from bot.settings import Settings
from bot.storage.versions import CacheVersions

log = logging.getLogger(__name__)

# Commands no per-server rule can turn off: admins must never lock themselves out of /limits, and /help
# must always answer.
UNRULED_COMMANDS = frozenset({"limits", "help"})
# Message menus that follow the rule of the slash command they mirror (/limits speak off turns off both).
RULE_ALIASES = {"Read aloud": "speak"}


@dataclass(frozen=True)
class Requester:
    """Who is asking, as plain data read from the Discord edge."""

    guild_id: int | None
    user_id: int
    role_ids: frozenset[int] = frozenset()
    manages_server: bool = False
    # Names of the server's roles, so a refusal can name the role it needs.
    role_names: Mapping[int, str] = field(default_factory=dict)
    channel_id: int | None = None  # where it is asked: a channel may have its own chat model (/model)
    parent_channel_id: int | None = None  # a thread's channel, whose /model choice the thread inherits


def refusal_reason(error: errors.BotError) -> str:
    """Why admission refused, for the log: a few words, never the request's content."""
    if isinstance(error, errors.SlowDown):
        if error.kind == "slots":
            return "slots (the server's requests in progress)"
        return "rate (the user's limit)"
    if isinstance(error, errors.BudgetExceeded):
        return "budget (the user's daily)" if error.scope == "daily" else "budget (the server's monthly)"
    if isinstance(error, errors.CommandDisabled):
        return "rule (command turned off in this server)"
    if isinstance(error, errors.RoleRequired):
        return "rule (role required)"
    if isinstance(error, errors.GuildNotAllowed):
        return "server not allowed"
    if isinstance(error, errors.QuotaPaused):
        return "quota breaker open"
    return type(error).__name__


def guild_allowed(settings: Settings, guild_id: int | None) -> bool:
    return not settings.allowed_guild_ids or guild_id is None or guild_id in settings.allowed_guild_ids


class Admission:
    """One admission for every way in: slash commands, context menus, buttons and @mentions."""

    def __init__(
        self,
        settings: Settings,
        limits: Limits,
        *,
        chat_model: Callable[[int | None, int | None, int | None], Awaitable[str]] | None = None,
        versions: CacheVersions | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits
        # Read first: a /limits rule or budget another process changed applies to this very request.
        self.versions = versions
        # The chat model chosen for a server and channel (bot/chat/models.py), so a chat's estimate
        # prices the model that will answer.
        self._chat_model = chat_model

    def check_server(self, guild_id: int | None) -> None:
        if not guild_allowed(self.settings, guild_id):
            log.info("refused a request from server %s (not in ALLOWED_GUILD_IDS)", guild_id)
            raise errors.GuildNotAllowed()

    async def check_rule(self, command: str, requester: Requester) -> None:
        """The server's /limits rule for `command`: turned off, or reserved to a role."""
        if requester.guild_id is None or command in UNRULED_COMMANDS:
            return
        command = RULE_ALIASES.get(command, command)
        rule = await self.limits.store.rule(requester.guild_id, command)
        if not rule.enabled:
            raise errors.CommandDisabled(command)
        if rule.role_id is None or requester.manages_server or rule.role_id in requester.role_ids:
            return
        role = requester.role_names.get(rule.role_id)
        raise errors.RoleRequired(command, role or "(a deleted role: an admin must update /limits role)")

    async def admit(
        self, command: str, requester: Requester, options: Mapping[str, object], *, spend: bool = True
    ) -> None:
        """Raise a BotError unless `command` may run now. With `spend`, the rate token and budget check
        that its OpenAI calls would otherwise take are taken here, before anything is deferred or sent."""
        self.check_server(requester.guild_id)
        if self.versions is not None:
            await self.versions.refresh()
        await self.check_rule(command, requester)
        if not spend:
            return
        model = None
        if command == "ask" and self._chat_model is not None:
            model = await self._chat_model(
                requester.guild_id, requester.channel_id, requester.parent_channel_id
            )
        plan = plan_for_command(
            command, options, self.settings, requester.guild_id or 0, requester.user_id, chat_model=model
        )
        if plan is not None:
            await self.limits.admit_request(requester.guild_id or 0, requester.user_id, plan)

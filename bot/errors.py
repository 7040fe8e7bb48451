"""Domain errors raised by the core; each explains itself to a Discord user in one plain sentence.

Each error names a catalog message (`message_id`) and its parameters, so it is rendered in the reader's
language (bot/i18n). What only an admin can act on (a setting's name, an API code, OpenAI's own words) is
a separate `admin_message_id`, shown to admins and never to members.
"""

from __future__ import annotations

import math
from typing import ClassVar

from bot.i18n import discord_timestamp, format_span, translate

# The moderation categories by their API names, with readable catalog names ("Self-harm: intent").
CATEGORY_IDS: dict[str, str] = {
    name: "category." + name.replace("/", ".")
    for name in (
        "harassment",
        "harassment/threatening",
        "hate",
        "hate/threatening",
        "illicit",
        "illicit/violent",
        "self-harm",
        "self-harm/instructions",
        "self-harm/intent",
        "sexual",
        "sexual/minors",
        "violence",
        "violence/graphic",
    )
}

# What a moderated input was, as callers name it, to its catalog message.
_WHAT_IDS: dict[str, str] = {
    "Your message": "what.message",
    "Your prompt": "what.prompt",
    "Your image": "what.image",
    "Your picture": "what.picture",
    "Your query": "what.query",
    "Your text": "what.text",
    "That persona": "what.persona",
    "That message": "what.that_message",
}


def category_names(categories: list[str], locale: str | None) -> str:
    """Readable, localised category names joined: 'Self-harm: intent, Violence'."""
    if not categories:
        return translate("category.unspecified", locale)
    return ", ".join(translate(CATEGORY_IDS[c], locale) if c in CATEGORY_IDS else c for c in categories)


def _wait_text(seconds: float, locale: str | None) -> str:
    """How long until something resets, never shorter than it is: '42 s', '3 h 10 min', '3시간 10분'."""
    return format_span(max(1.0, seconds), locale, round_up=True)


def _seconds_text(seconds: float, locale: str | None) -> str:
    """A short wait in whole seconds, rounded up: '200 s', '200초'."""
    return translate("unit.s", locale, count=max(1, math.ceil(seconds)))


class BotError(Exception):
    """A failure a user can meet. `user_message` says what happened and what to do."""

    message_id: ClassVar[str] = "error.generic"
    # Detail only an admin can act on: ephemeral to an admin or in the mod-log, never shown to members.
    admin_message_id: ClassVar[str | None] = None

    def params(self, locale: str | None) -> dict[str, object]:
        return {}

    def user_message(self, locale: str | None = None) -> str:
        return translate(self.message_id, locale, **self.params(locale))

    def admin_message(self, locale: str | None = None) -> str | None:
        if self.admin_message_id is None:
            return None
        return translate(self.admin_message_id, locale, **self.params(locale))


class QuotaExhausted(BotError):
    message_id = "error.quota"
    admin_message_id = "error.quota.admin"


class RateLimited(BotError):
    message_id = "error.rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:.1f}s")
        self.retry_after = retry_after

    def params(self, locale: str | None) -> dict[str, object]:
        return {"wait": _seconds_text(self.retry_after, locale)}


class UpstreamTimeout(BotError):
    message_id = "error.upstream_timeout"


class UpstreamUnavailable(BotError):
    message_id = "error.upstream_unavailable"


class InvalidApiKey(BotError):
    message_id = "error.misconfigured"
    admin_message_id = "error.invalid_api_key.admin"


class UnknownModel(BotError):
    message_id = "error.misconfigured"
    admin_message_id = "error.unknown_model.admin"

    def __init__(self, model: str, setting: str) -> None:
        super().__init__(f"unknown model {model}")
        self.model = model
        self.setting = setting

    def params(self, locale: str | None) -> dict[str, object]:
        return {"model": self.model, "setting": self.setting}


class ContextTooLong(BotError):
    message_id = "error.context_too_long"


class IncompleteAnswer(BotError):
    message_id = "error.incomplete_answer"


class ContentRefused(BotError):
    """OpenAI refused the request on policy grounds (moderation_blocked / content_policy_violation)."""

    message_id = "error.content_refused"


class BadRequest(BotError):
    message_id = "error.bad_request"
    admin_message_id = "error.bad_request.admin"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def params(self, locale: str | None) -> dict[str, object]:
        return {"detail": self.detail}


class Flagged(BotError):
    """Moderation flagged what a user handed to a command."""

    message_id = "error.flagged"

    def __init__(self, categories: list[str], *, what: str = "Your message") -> None:
        super().__init__(", ".join(categories))
        self.categories = categories
        self.what = what

    def params(self, locale: str | None) -> dict[str, object]:
        what_id = _WHAT_IDS.get(self.what)
        return {
            "what": translate(what_id, locale) if what_id else self.what,
            "categories": category_names(self.categories, locale),
        }


class OutputFlagged(BotError):
    """Moderation flagged what the model produced; it is not posted."""

    message_id = "error.output_flagged"

    def __init__(self, categories: list[str]) -> None:
        super().__init__(", ".join(categories))
        self.categories = categories

    def params(self, locale: str | None) -> dict[str, object]:
        return {"categories": category_names(self.categories, locale)}


class ModerationUnavailable(BotError):
    message_id = "error.moderation_unavailable"


class InvalidInput(BotError):
    """Bad input from the user: an empty prompt, an unsupported attachment, a bad duration.

    Give a catalog `message_id` and its parameters; a plain `message` (not yet in the catalog) is shown as is.
    """

    def __init__(self, message: str = "", *, message_id: str | None = None, **params: object) -> None:
        self.message = message or (translate(message_id, None, **params) if message_id else "")
        super().__init__(self.message)
        self.catalog_id = message_id
        self.catalog_params = params

    def user_message(self, locale: str | None = None) -> str:
        if self.catalog_id is None:
            return self.message
        return translate(self.catalog_id, locale, **self.catalog_params)


class StorageUnavailable(BotError):
    message_id = "error.storage_unavailable"


class BudgetExceeded(BotError):
    """A request would take a user or a server over its cost budget; nothing was sent to OpenAI."""

    def __init__(
        self, scope: str, spent: float, cap: float, estimate: float, resets_at: float, resets_in: float
    ) -> None:
        super().__init__(f"{scope} budget {spent:.4f}/{cap:.2f}")
        self.scope = scope  # "daily" (per user) or "monthly" (per server)
        self.spent = spent
        self.cap = cap
        self.estimate = estimate
        self.resets_at = resets_at  # a Unix time, shown as a Discord timestamp
        self.resets_in = resets_in

    @property
    def message_id(self) -> str:  # type: ignore[override]
        return "error.budget.daily" if self.scope == "daily" else "error.budget.monthly"

    def params(self, locale: str | None) -> dict[str, object]:
        return {
            "estimate": f"{self.estimate:.4f}",
            "spent": f"{self.spent:.4f}",
            "cap": f"{self.cap:.2f}",
            "resets_at": discord_timestamp(self.resets_at, "f"),
            "resets_in": discord_timestamp(self.resets_at, "R"),
        }


class SlowDown(BotError):
    """A per-user rate limit or a full per-server queue refused the request before any call."""

    def __init__(self, retry_after: float, reason: str = "user") -> None:
        super().__init__(f"slow down {retry_after:.1f}s")
        self.retry_after = retry_after
        self.reason = reason  # "user" (too fast) or "server" (too many requests in progress)

    @property
    def kind(self) -> str:
        """For the refusal log: the member's own rate, or the server's requests in progress."""
        return "rate" if self.reason == "user" else "slots"

    @property
    def message_id(self) -> str:  # type: ignore[override]
        return "error.slow_down.server" if self.reason == "server" else "error.slow_down.user"

    def params(self, locale: str | None) -> dict[str, object]:
        return {"wait": _seconds_text(self.retry_after, locale)}


class QuotaPaused(QuotaExhausted):
    """The quota circuit breaker is open: no OpenAI calls until a probe succeeds after the cooldown."""

    message_id = "error.quota_paused"

    def __init__(self, retry_after: float, *, admins_told: bool = False) -> None:
        super().__init__(f"quota breaker open for {retry_after:.0f}s")
        self.retry_after = retry_after
        self.admins_told = admins_told

    def params(self, locale: str | None) -> dict[str, object]:
        told = translate("error.admins_told" if self.admins_told else "error.admins_not_told", locale)
        return {"wait": _wait_text(self.retry_after, locale), "told": told}


class CommandDisabled(BotError):
    message_id = "error.command_disabled"

    def __init__(self, command: str) -> None:
        super().__init__(command)
        self.command = command

    def params(self, locale: str | None) -> dict[str, object]:
        return {"command": self.command}


class RoleRequired(BotError):
    message_id = "error.role_required"

    def __init__(self, command: str, role_name: str) -> None:
        super().__init__(command)
        self.command = command
        self.role_name = role_name

    def params(self, locale: str | None) -> dict[str, object]:
        return {"command": self.command, "role": self.role_name}


class GuildNotAllowed(BotError):
    message_id = "error.guild_not_allowed"


class NothingToSummarise(BotError):
    """/tldr found no messages from people to summarise."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def message_id(self) -> str:  # type: ignore[override]
        return "error.nothing_to_summarise.detail" if self.detail else "error.nothing_to_summarise"

    def params(self, locale: str | None) -> dict[str, object]:
        return {"detail": self.detail}


class ShuttingDown(BotError):
    """The bot is restarting: a command was stopped (or refused) by the graceful shutdown."""

    message_id = "error.shutting_down"

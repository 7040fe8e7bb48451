"""Domain errors raised by the core; each explains itself to a Discord user in one plain sentence."""

from __future__ import annotations

import math

from bot.spans import format_seconds


class BotError(Exception):
    """A failure a user can meet. `user_message` says what happened and what to do."""

    def user_message(self) -> str:
        return "Something went wrong on my side. Please try again in a moment."


class QuotaExhausted(BotError):
    def user_message(self) -> str:
        return (
            "The bot's OpenAI account has no credit left (insufficient_quota). "
            "An admin must add credit in the OpenAI billing settings; retrying will not help until then."
        )


class RateLimited(BotError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:.1f}s")
        self.retry_after = retry_after

    def user_message(self) -> str:
        return f"OpenAI is busy right now. Please try again in {max(1, math.ceil(self.retry_after))} s."


class UpstreamTimeout(BotError):
    def user_message(self) -> str:
        return "OpenAI took too long to answer. Please try again; a shorter request may help."


class UpstreamUnavailable(BotError):
    def user_message(self) -> str:
        return "OpenAI is having trouble right now (server error). Please try again in a minute."


class InvalidApiKey(BotError):
    def user_message(self) -> str:
        return (
            "The bot's OpenAI API key was rejected. An admin must set a valid OPENAI_API_KEY "
            "(`python -m bot check` tells what is wrong)."
        )


class UnknownModel(BotError):
    def __init__(self, model: str, setting: str) -> None:
        super().__init__(f"unknown model {model}")
        self.model = model
        self.setting = setting

    def user_message(self) -> str:
        return (
            f"The model `{self.model}` does not exist for the bot's OpenAI key. "
            f"An admin must change the {self.setting} setting."
        )


class ContextTooLong(BotError):
    def user_message(self) -> str:
        return "That request is too long for the model, even after trimming history. Please shorten it."


class IncompleteAnswer(BotError):
    def user_message(self) -> str:
        return "OpenAI's answer was cut off before it finished. Nothing was saved; please ask again."


class ContentRefused(BotError):
    """OpenAI refused the request on policy grounds (moderation_blocked / content_policy_violation)."""

    def user_message(self) -> str:
        return (
            "OpenAI's safety system refused this request. Try rephrasing it without content that "
            "breaks OpenAI's usage policies."
        )


class BadRequest(BotError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def user_message(self) -> str:
        return f"OpenAI could not process that request: {self.detail}"


class Flagged(BotError):
    """Moderation flagged what a user handed to a command."""

    def __init__(self, categories: list[str], *, what: str = "Your message") -> None:
        super().__init__(", ".join(categories))
        self.categories = categories
        self.what = what

    def user_message(self) -> str:
        names = ", ".join(self.categories) or "unspecified"
        return f"{self.what} was flagged by moderation ({names}), so I did not process it."


class OutputFlagged(BotError):
    """Moderation flagged what the model produced; it is not posted."""

    def __init__(self, categories: list[str]) -> None:
        super().__init__(", ".join(categories))
        self.categories = categories

    def user_message(self) -> str:
        names = ", ".join(self.categories) or "unspecified"
        return f"The answer was flagged by moderation ({names}), so I did not post it. Try rephrasing."


class ModerationUnavailable(BotError):
    def user_message(self) -> str:
        return (
            "Moderation is unavailable right now, so I can't process this safely. Please try again shortly."
        )


class InvalidInput(BotError):
    """Bad input from the user: an empty prompt, an unsupported attachment, a bad duration."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def user_message(self) -> str:
        return self.message


class StorageUnavailable(BotError):
    def user_message(self) -> str:
        return (
            "The bot's database cannot be written right now (disk full or read-only). "
            "An admin has to fix the storage; your request was not saved."
        )


def _wait_text(seconds: float) -> str:
    """'in 42 s', 'in 5 min', 'in 3 h 10 min': how long until something resets, never shorter than it is."""
    return "in " + format_seconds(max(1.0, seconds), measured=False, round_up=True)


class BudgetExceeded(BotError):
    """A request would take a user or a server over its cost budget; nothing was sent to OpenAI."""

    def __init__(
        self, scope: str, spent: float, cap: float, estimate: float, resets_at: str, resets_in: float
    ) -> None:
        super().__init__(f"{scope} budget {spent:.4f}/{cap:.2f}")
        self.scope = scope  # "daily" (per user) or "monthly" (per server)
        self.spent = spent
        self.cap = cap
        self.estimate = estimate
        self.resets_at = resets_at
        self.resets_in = resets_in

    def user_message(self) -> str:
        whose = (
            "your daily budget in this server" if self.scope == "daily" else "this server's monthly budget"
        )
        return (
            f"This request could cost up to ${self.estimate:.4f}, which would go over {whose} "
            f"(${self.spent:.4f} of ${self.cap:.2f} used). Nothing was sent to OpenAI. "
            f"The budget resets at {self.resets_at} ({_wait_text(self.resets_in)})."
        )


class SlowDown(BotError):
    """A per-user rate limit or a full per-server queue refused the request before any call."""

    def __init__(
        self, retry_after: float, reason: str = "you are sending requests too fast", *, kind: str = "rate"
    ) -> None:
        super().__init__(f"slow down {retry_after:.1f}s")
        self.retry_after = retry_after
        self.reason = reason
        self.kind = kind  # "rate" (the user's rate limit) or "slots" (the server's requests in progress)

    def user_message(self) -> str:
        return f"Slow down: {self.reason}. Try again in {max(1, math.ceil(self.retry_after))} s."


class QuotaPaused(QuotaExhausted):
    """The quota circuit breaker is open: no OpenAI calls until a probe succeeds after the cooldown."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"quota breaker open for {retry_after:.0f}s")
        self.retry_after = retry_after

    def user_message(self) -> str:
        return (
            "The bot's OpenAI account has no credit left (insufficient_quota), so I've paused OpenAI "
            "requests. The admins have been told: an admin must add credit in the OpenAI billing settings. "
            f"Please try again later ({_wait_text(self.retry_after)} at the earliest)."
        )


class CommandDisabled(BotError):
    def __init__(self, command: str) -> None:
        super().__init__(command)
        self.command = command

    def user_message(self) -> str:
        return f"`/{self.command}` is turned off in this server by its admins."


class RoleRequired(BotError):
    def __init__(self, command: str, role_name: str) -> None:
        super().__init__(command)
        self.command = command
        self.role_name = role_name

    def user_message(self) -> str:
        return f"`/{self.command}` needs the **{self.role_name}** role in this server."


class GuildNotAllowed(BotError):
    def user_message(self) -> str:
        return "This bot is not enabled for this server."


class NothingToSummarise(BotError):
    """/tldr found no messages from people to summarise."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail

    def user_message(self) -> str:
        return f"Nothing to summarise: {self.detail or 'there are no messages from people here.'}"


class ShuttingDown(BotError):
    """The bot is restarting: a command was stopped (or refused) by the graceful shutdown."""

    def user_message(self) -> str:
        return "The bot is restarting and could not finish this request. Please try again in a minute."

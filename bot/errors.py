"""Domain errors raised by the core; each explains itself to a Discord user in one plain sentence."""

from __future__ import annotations

import math


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

"""How OpenAI calls are retried, and which domain error (bot.errors) each API, SDK or transport error becomes."""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from bot import errors
from bot.openai_api.http import ApiStatusError, retry_after_seconds

log = logging.getLogger(__name__)
T = TypeVar("T")

_POLICY_CODES = {"moderation_blocked", "content_policy_violation"}

# The errors a later attempt may cure; everything else is final.
_RETRYABLE = (errors.RateLimited, errors.UpstreamUnavailable, errors.UpstreamTimeout)


@dataclass
class RetryPolicy:
    """How calls are retried: rate limits honour Retry-After, 5xx and timeouts back off; never quota."""

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)

    def backoff(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2**attempt) * (0.75 + random.random() / 2)  # noqa: S311

    async def run(
        self,
        make_call: Callable[[], Awaitable[T]],
        translate: Callable[[Exception], errors.BotError],
        *,
        model: str,
        deadline: float | None = None,
    ) -> T:
        """Run `make_call`, retrying what `translate` calls retryable, within `deadline` seconds from now."""
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return await make_call()
            except call_failures() as exc:
                error = translate(exc)
                log.info(
                    "OpenAI call failed: %s (model %s, request %s)",
                    type(error).__name__,
                    model,
                    getattr(exc, "request_id", None),
                )
                if not isinstance(error, _RETRYABLE) or attempt >= self.max_retries:
                    raise error from exc
                wait = error.retry_after if isinstance(error, errors.RateLimited) else self.backoff(attempt)
                if deadline is not None and time.monotonic() - started + wait > deadline:
                    raise error from exc
                attempt += 1
                await self.sleep(wait)


def _sdk() -> tuple[Any, Any]:
    """The SDK's and its HTTP client's modules, or None for one not imported: then none of its errors exist.

    The SDK is loaded only by the endpoints that need it (bot/openai_api/gateway.py), so its 24 MiB are not
    spent by a bot that only moderates and chats.
    """
    return sys.modules.get("openai"), sys.modules.get("httpx2")


def call_failures() -> tuple[type[Exception], ...]:
    """The exceptions a failed call may raise: the API's answers, the transport's errors, broken bodies."""
    openai, httpx2 = _sdk()
    failures: tuple[type[Exception], ...] = (
        ApiStatusError,
        aiohttp.ClientError,
        TimeoutError,
        ValueError,
    )
    if openai is not None:
        failures += (openai.OpenAIError,)
    if httpx2 is not None:
        failures += (httpx2.HTTPError,)
    return failures


def _connection_failure(exc: BaseException) -> bool:
    """Whether a "timeout" is really a refused or dropped connection.

    The SDK's aiohttp transport maps every aiohttp.ClientConnectionError (refused, reset, server
    disconnected) to ConnectTimeout; the cause chain tells which it was, so users hear "unavailable"
    rather than "took too long".
    """
    cause = exc.__cause__ or exc.__context__
    for _ in range(8):
        if cause is None:
            return False
        if isinstance(cause, TimeoutError):  # aiohttp's timeouts subclass it too
            return False
        if isinstance(cause, aiohttp.ClientConnectionError | ConnectionError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _from_status(
    status: int,
    code: str | None,
    kind: str | None,
    message: str,
    retry_after: float | None,
    model: str,
    setting_for_model: Callable[[str], str],
) -> errors.BotError | None:
    if status == 429:
        if code == "insufficient_quota" or kind == "insufficient_quota":
            return errors.QuotaExhausted()
        return errors.RateLimited(retry_after or 1.0)
    if status in (401, 403):
        return errors.InvalidApiKey()
    if status == 404 and (code == "model_not_found" or "model" in message):
        return errors.UnknownModel(model, setting_for_model(model))
    if status == 400:
        if code == "context_length_exceeded":
            return errors.ContextTooLong()
        if code in _POLICY_CODES:
            return errors.ContentRefused()
        return errors.BadRequest(message.split("\n")[0][:300])
    if status >= 500:
        return errors.UpstreamUnavailable()
    return None


def translate_error(
    exc: BaseException, model: str, setting_for_model: Callable[[str], str]
) -> errors.BotError:
    """Map an API, SDK or transport exception to the domain error a user is shown.

    `setting_for_model` names the setting that chose `model`, so an unknown model's message says what to fix.
    """
    request_id = getattr(exc, "request_id", None)
    openai, httpx2 = _sdk()
    translated: errors.BotError | None = None
    if isinstance(exc, ApiStatusError):
        translated = _from_status(
            exc.status, exc.code, exc.type, exc.message, exc.retry_after, model, setting_for_model
        )
    elif openai is not None and isinstance(exc, openai.APIStatusError):
        translated = _from_status(
            exc.status_code,
            exc.code,
            exc.type,
            exc.message,
            retry_after_seconds(exc.response.headers),
            model,
            setting_for_model,
        )
    elif isinstance(exc, TimeoutError):  # aiohttp's timeouts subclass it
        return errors.UpstreamTimeout()
    elif isinstance(exc, aiohttp.ClientError):
        return errors.UpstreamUnavailable()
    elif (
        openai is not None
        and isinstance(exc, openai.APITimeoutError)
        or (httpx2 is not None and isinstance(exc, httpx2.TimeoutException))
    ):
        return errors.UpstreamUnavailable() if _connection_failure(exc) else errors.UpstreamTimeout()
    elif (
        openai is not None
        and isinstance(exc, openai.APIConnectionError)
        or (httpx2 is not None and isinstance(exc, httpx2.TransportError))
    ):
        return errors.UpstreamUnavailable()
    elif isinstance(exc, ValueError) or (
        openai is not None and isinstance(exc, openai.APIResponseValidationError)
    ):
        return errors.UpstreamUnavailable()
    if translated is not None:
        return translated
    log.warning("unexpected OpenAI error %s (request %s)", type(exc).__name__, request_id)
    return errors.UpstreamUnavailable()

"""How OpenAI calls are retried, and which domain error (bot.errors) each SDK or transport error becomes."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
import httpx2
import openai

from bot import errors

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
            except (openai.OpenAIError, httpx2.HTTPError, ValueError) as exc:
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


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                return max(0.0, float(raw) / divisor)
            except ValueError:
                continue
    return None


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


def translate_error(exc: Exception, model: str, setting_for_model: Callable[[str], str]) -> errors.BotError:
    """Map an SDK or transport exception to the domain error a user is shown.

    `setting_for_model` names the setting that chose `model`, so an unknown model's message says what to fix.
    """
    request_id = getattr(exc, "request_id", None)
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException) and not _connection_failure(exc):
        return errors.UpstreamTimeout()
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return errors.UpstreamUnavailable()
    if isinstance(exc, openai.RateLimitError):
        if exc.code == "insufficient_quota" or exc.type == "insufficient_quota":
            return errors.QuotaExhausted()
        return errors.RateLimited(_retry_after(exc) or 1.0)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return errors.InvalidApiKey()
    if isinstance(exc, openai.NotFoundError) and (exc.code == "model_not_found" or "model" in exc.message):
        return errors.UnknownModel(model, setting_for_model(model))
    if isinstance(exc, openai.BadRequestError):
        if exc.code == "context_length_exceeded":
            return errors.ContextTooLong()
        if exc.code in _POLICY_CODES:
            return errors.ContentRefused()
        return errors.BadRequest(exc.message.split("\n")[0][:300])
    if isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
        return errors.UpstreamUnavailable()
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        return errors.UpstreamUnavailable()
    log.warning("unexpected OpenAI error %s (request %s)", type(exc).__name__, request_id)
    return errors.UpstreamUnavailable()

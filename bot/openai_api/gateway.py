"""The one AsyncOpenAI client: every call, our own retry policy, SDK errors mapped to domain errors, metering."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp
import httpx2
import openai
from openai import AsyncOpenAI

from bot import errors
from bot.openai_api.chat_stream import chat_events
from bot.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

_POLICY_CODES = {"moderation_blocked", "content_policy_violation"}


@dataclass(frozen=True)
class CallContext:
    """Who asked for a call: used for the usage ledger and budgets, never for logging content."""

    guild_id: int | None = None
    channel_id: int | None = None
    user_id: int | None = None
    command: str = "unknown"
    # True when admission already took this request's rate token (a command, a button, a mention): its
    # calls are then not rate-limited a second time. Background work (auto-transcription) leaves it False.
    admitted: bool = False


@dataclass(frozen=True)
class UsageEvent:
    """One metered OpenAI call, as plain data."""

    context: CallContext
    kind: str  # chat | moderation | image | transcription | speech | embedding
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    image_size: str | None = None
    image_quality: str | None = None
    audio_seconds: float = 0.0
    # False: the caller does not wait for the row's commit, because a write it awaits next (the /ask's
    # history) is queued after it and so commits it first.
    wait_for_commit: bool = True


UsageSink = Callable[[UsageEvent], Awaitable[None]]


@dataclass(frozen=True)
class PlannedCall:
    """A call about to be made, as plain data, so a guard can admit or refuse it before anything is sent."""

    context: CallContext
    kind: str  # as UsageEvent.kind
    model: str
    max_output_tokens: int = 0
    messages: Sequence[dict[str, Any]] = ()
    text: str = ""
    images: int = 0
    image_size: str | None = None
    image_quality: str | None = None
    audio_seconds: float = 0.0
    audio_bytes: int = 0
    # The messages' token count when the caller already knows it (stored turns carry theirs), so the
    # guard's estimate need not re-tokenise a whole history on every call.
    prompt_tokens: int | None = None


class CallGuard(Protocol):
    """Admission for every call (budgets, rate limits, quota breaker); held for the call's whole duration."""

    def admit(self, call: PlannedCall) -> AbstractAsyncContextManager[None]: ...


@dataclass
class ChatResult:
    text: str
    finish_reason: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass(frozen=True)
class ModerationResult:
    flagged: bool
    categories: dict[str, bool]
    scores: dict[str, float]

    @property
    def flagged_categories(self) -> list[str]:
        return sorted(name for name, hit in self.categories.items() if hit)


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    output_format: str
    revised_prompt: str | None


@dataclass(frozen=True)
class Transcript:
    text: str
    seconds: float | None = None


@dataclass
class RetryPolicy:
    """How calls are retried: rate limits honour Retry-After, 5xx and timeouts back off; never quota."""

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)

    def backoff(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2**attempt) * (0.75 + random.random() / 2)  # noqa: S311


def is_reasoning_model(model: str) -> bool:
    """OpenAI's o-series and gpt-5 family (not the non-reasoning chat-latest aliases)."""
    return model.startswith(("o1", "o3", "o4", "gpt-5")) and "chat-latest" not in model


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


def parse_moderation(payload: Any) -> list[ModerationResult]:
    """The `results` of a moderation answer; ValueError when it is not one (retried as a bad answer)."""
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list):
        raise ValueError("moderation answer without results")
    parsed = []
    for result in results:
        if not isinstance(result, dict):
            raise ValueError("malformed moderation result")
        categories = result.get("categories") or {}
        scores = result.get("category_scores") or {}
        parsed.append(
            ModerationResult(
                flagged=bool(result.get("flagged")),
                categories={str(k): bool(v) for k, v in categories.items() if v is not None},
                scores={str(k): float(v) for k, v in scores.items() if v is not None},
            )
        )
    return parsed


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


class OpenAIGateway:
    """Wraps the single AsyncOpenAI client. Returns plain data; raises only `bot.errors.BotError`s."""

    def __init__(
        self,
        client: AsyncOpenAI,
        settings: Settings,
        *,
        retry: RetryPolicy | None = None,
        usage_sink: UsageSink | None = None,
        guard: CallGuard | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.retry = retry or RetryPolicy(max_retries=settings.openai_max_retries)
        self.usage_sink = usage_sink
        self.guard = guard

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> OpenAIGateway:
        # max_retries=0: the SDK would retry insufficient_quota like any 429; our policy decides instead.
        client = AsyncOpenAI(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            timeout=settings.openai_timeout,
            max_retries=0,
            # aiohttp (already here for discord.py) instead of httpcore: its pool and chunk reads cost a
            # fraction of the CPU under hundreds of concurrent streams (README, "Performance").
            http_client=openai.DefaultAioHttpClient(timeout=settings.openai_timeout),
        )
        return cls(client, settings, **kwargs)

    async def close(self) -> None:
        await self.client.close()

    # -- error handling -------------------------------------------------------------------------

    def translate(self, exc: Exception, model: str) -> errors.BotError:
        """Map an SDK or transport exception to the domain error a user is shown."""
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
        if isinstance(exc, openai.NotFoundError) and (
            exc.code == "model_not_found" or "model" in exc.message
        ):
            return errors.UnknownModel(model, self.settings.setting_for_model(model))
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

    async def call(
        self, make_call: Callable[[], Awaitable[T]], *, model: str, deadline: float | None = None
    ) -> T:
        """Run `make_call` with the retry policy, within `deadline` seconds from now when given."""
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return await make_call()
            except (openai.OpenAIError, httpx2.HTTPError, ValueError) as exc:
                error = self.translate(exc, model)
                log.info(
                    "OpenAI call failed: %s (model %s, request %s)",
                    type(error).__name__,
                    model,
                    getattr(exc, "request_id", None),
                )
                if not isinstance(
                    error, errors.RateLimited | errors.UpstreamUnavailable | errors.UpstreamTimeout
                ):
                    raise error from exc
                if attempt >= self.retry.max_retries:
                    raise error from exc
                wait = (
                    error.retry_after
                    if isinstance(error, errors.RateLimited)
                    else self.retry.backoff(attempt)
                )
                if deadline is not None and time.monotonic() - started + wait > deadline:
                    raise error from exc
                attempt += 1
                await self.retry.sleep(wait)

    def _admit(self, call: PlannedCall) -> AbstractAsyncContextManager[Any]:
        # The guard may refuse (a domain error) before anything is sent; moderation is only observed.
        return self.guard.admit(call) if self.guard is not None else nullcontext()

    async def _meter(self, event: UsageEvent) -> None:
        if self.usage_sink is None:
            return
        try:
            await self.usage_sink(event)
        except errors.StorageUnavailable:
            # A full or read-only disk: the store already warned; one line per lost event is enough.
            log.warning("recording usage failed: the database cannot be written")
        except Exception:
            # Metering must never turn a delivered answer into a failure.
            log.exception("recording usage failed")

    # -- chat -----------------------------------------------------------------------------------

    def _chat_kwargs(self, model: str, max_tokens: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": model, self.settings.max_tokens_parameter: max_tokens}
        # A reasoning model spends its completion budget on hidden reasoning first; at its default effort a
        # short answer budget can come back empty. Other models refuse the parameter.
        if self.settings.reasoning_effort != "off" and is_reasoning_model(model):
            kwargs["reasoning_effort"] = self.settings.reasoning_effort
        return kwargs

    async def stream_chat(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        context: CallContext,
        on_text: Callable[[str], Awaitable[None]] | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        deadline: float | None = None,
        prompt_tokens: int | None = None,
        wait_for_usage_commit: bool = True,
    ) -> ChatResult:
        """Stream a chat answer, calling `on_text` with the text so far; a cut stream is an error.

        `prompt_tokens`, when given, is the messages' token count as `Limits.estimate` would count it.
        `wait_for_usage_commit`: see `UsageEvent.wait_for_commit`.
        """
        model = model or self.settings.chat_model
        kwargs = self._chat_kwargs(model, max_tokens or self.settings.max_answer_tokens)
        planned = PlannedCall(
            context,
            "chat",
            model,
            kwargs[self.settings.max_tokens_parameter],
            messages=messages,
            prompt_tokens=prompt_tokens,
        )
        async with self._admit(planned):
            stream = await self.call(
                lambda: self.client.chat.completions.create(
                    # The SDK walks every message through its typed transform, which took half the CPU
                    # of a busy bot with long histories; plain dicts need none, so they go as extra_body
                    # (which replaces the body's `messages`) untouched (README, "Performance").
                    messages=[],
                    extra_body={"messages": list(messages)},
                    stream=True,
                    stream_options={"include_usage": True},
                    **kwargs,
                ),
                model=model,
                deadline=deadline,
            )
            parts: list[str] = []
            finish_reason: str | None = None
            prompt_tokens = completion_tokens = 0
            try:
                # Plain dicts, not the SDK's typed chunks: see bot/chat_stream.py.
                async for chunk in chat_events(stream):
                    if usage := chunk.get("usage"):
                        prompt_tokens = int(usage.get("prompt_tokens") or 0)
                        completion_tokens = int(usage.get("completion_tokens") or 0)
                    for choice in chunk.get("choices") or ():
                        if content := (choice.get("delta") or {}).get("content"):
                            parts.append(content)
                            if on_text is not None:
                                await on_text("".join(parts))
                        if choice.get("finish_reason") is not None:
                            finish_reason = choice["finish_reason"]
            except (openai.OpenAIError, httpx2.HTTPError, ValueError) as exc:
                # ValueError: a malformed SSE data line (JSONDecodeError) is a broken stream, not a bot bug.
                log.info("chat stream broke: %s", type(exc).__name__)
                raise errors.IncompleteAnswer() from exc
            finally:
                await stream.close()
            await self._meter(
                UsageEvent(
                    context,
                    "chat",
                    model,
                    prompt_tokens,
                    completion_tokens,
                    wait_for_commit=wait_for_usage_commit,
                )
            )
            if finish_reason is None:
                raise errors.IncompleteAnswer()
            if finish_reason == "content_filter":
                raise errors.ContentRefused()
            return ChatResult("".join(parts), finish_reason, model, prompt_tokens, completion_tokens)

    async def complete_chat(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        context: CallContext,
        model: str | None = None,
        max_tokens: int | None = None,
        deadline: float | None = None,
    ) -> ChatResult:
        model = model or self.settings.chat_model
        kwargs = self._chat_kwargs(model, max_tokens or self.settings.max_answer_tokens)
        async with self._admit(
            PlannedCall(context, "chat", model, kwargs[self.settings.max_tokens_parameter], messages=messages)
        ):
            response = await self.call(
                lambda: self.client.chat.completions.create(messages=list(messages), **kwargs),  # type: ignore[arg-type]
                model=model,
                deadline=deadline,
            )
            usage = response.usage
            prompt_tokens = usage.prompt_tokens if usage else 0
            completion_tokens = usage.completion_tokens if usage else 0
            await self._meter(UsageEvent(context, "chat", model, prompt_tokens, completion_tokens))
            if not response.choices:
                raise errors.IncompleteAnswer()
            choice = response.choices[0]
            if choice.finish_reason == "content_filter":
                raise errors.ContentRefused()
            return ChatResult(
                choice.message.content or "",
                choice.finish_reason or "stop",
                model,
                prompt_tokens,
                completion_tokens,
            )

    # -- moderation -----------------------------------------------------------------------------

    async def moderate(
        self,
        inputs: str | list[str] | list[dict[str, Any]],
        *,
        context: CallContext,
        deadline: float | None = 20.0,
    ) -> list[ModerationResult]:
        """One result per string, or one result for a multimodal parts list (at most one image)."""
        model = self.settings.moderation_model
        async with self._admit(PlannedCall(context, "moderation", model)):

            async def fetch() -> list[ModerationResult]:
                # Plain JSON in and out, not the SDK's typed path: its input transform and pydantic
                # results cost ~1 ms per input on the event loop, ~70 ms for a batch of 64 messages.
                # Errors still come out of the SDK's request machinery as its usual exceptions.
                response = await self.client.post(
                    "/moderations", body={"model": model, "input": inputs}, cast_to=httpx2.Response
                )
                return parse_moderation(json.loads(response.content))

            try:
                results = await self.call(fetch, model=model, deadline=deadline)
            except (errors.UpstreamUnavailable, errors.UpstreamTimeout, errors.RateLimited) as exc:
                raise errors.ModerationUnavailable() from exc
        await self._meter(UsageEvent(context, "moderation", model))
        return results

    # -- images, audio, embeddings, models ------------------------------------------------------

    async def generate_image(
        self,
        prompt: str,
        *,
        context: CallContext,
        size: str = "auto",
        quality: str = "auto",
        output_format: str = "png",
        deadline: float | None = 240.0,
    ) -> GeneratedImage:
        model = self.settings.image_model
        async with self._admit(
            PlannedCall(
                context, "image", model, text=prompt, images=1, image_size=size, image_quality=quality
            )
        ):
            response = await self.call(
                lambda: self.client.images.generate(  # type: ignore[call-overload]
                    model=model,
                    prompt=prompt,
                    n=1,
                    size=size,
                    quality=quality,
                    output_format=output_format,
                ),
                model=model,
                deadline=deadline,
            )
            # "auto" is priced by what was actually made: the answer says which size and quality.
            made_size = getattr(response, "size", None) or size
            made_quality = getattr(response, "quality", None) or quality
            await self._meter(
                UsageEvent(
                    context, "image", model, images=1, image_size=made_size, image_quality=made_quality
                )
            )
            if not response.data or not response.data[0].b64_json:
                raise errors.UpstreamUnavailable()
            item = response.data[0]
            return GeneratedImage(base64.b64decode(item.b64_json or ""), output_format, item.revised_prompt)

    async def transcribe(
        self,
        filename: str,
        data: bytes,
        *,
        context: CallContext,
        language: str | None = None,
        translate: bool = False,
        duration_hint: float | None = None,
        deadline: float | None = 600.0,
        prompt: str | None = None,
    ) -> Transcript:
        """Speech to text (or to English with `translate`); the file name's extension picks the format."""
        model = "whisper-1" if translate else self.settings.transcription_model
        extra: dict[str, Any] = {}
        if language and not translate:
            extra["language"] = language
        if prompt:
            extra["prompt"] = prompt  # the previous part's tail, so a split file reads on across parts
        if translate:
            make = lambda: self.client.audio.translations.create(  # noqa: E731
                model=model, file=(filename, data), **extra
            )
        else:
            make = lambda: self.client.audio.transcriptions.create(  # noqa: E731
                model=model, file=(filename, data), **extra
            )
        planned = PlannedCall(
            context, "transcription", model, audio_seconds=duration_hint or 0.0, audio_bytes=len(data)
        )
        async with self._admit(planned):
            response = await self.call(make, model=model, deadline=deadline)
            seconds = duration_hint
            usage = getattr(response, "usage", None)
            if usage is not None and getattr(usage, "seconds", None) is not None:
                seconds = float(usage.seconds)
            await self._meter(UsageEvent(context, "transcription", model, audio_seconds=seconds or 0.0))
            return Transcript(str(getattr(response, "text", response)), seconds)

    async def embed(
        self,
        texts: list[str],
        *,
        context: CallContext,
        model: str = "text-embedding-3-small",
        dimensions: int | None = None,
        deadline: float | None = 60.0,
    ) -> list[list[float]]:
        """One vector per text, in order; many texts go in one request (up to 2,048 inputs).

        `dimensions` shortens text-embedding-3 vectors (0 or None: the model's own size).
        """
        extra: dict[str, Any] = {"dimensions": dimensions} if dimensions else {}
        # About 4 characters a token: the budget estimate need not tokenise a whole batch exactly.
        estimate = sum(len(text) for text in texts) // 4 + len(texts)
        async with self._admit(PlannedCall(context, "embedding", model, prompt_tokens=estimate)):
            response = await self.call(
                lambda: self.client.embeddings.create(model=model, input=texts, **extra),
                model=model,
                deadline=deadline,
            )
            await self._meter(
                UsageEvent(context, "embedding", model, prompt_tokens=response.usage.prompt_tokens)
            )
            if len(response.data) != len(texts):
                raise errors.UpstreamUnavailable()
            ordered = sorted(response.data, key=lambda item: item.index)
            return [list(item.embedding) for item in ordered]

    async def list_models(self) -> set[str]:
        async def fetch() -> set[str]:
            return {model.id async for model in self.client.models.list()}

        return await self.call(fetch, model="", deadline=30.0)

"""The OpenAI API's one gateway: every call through the retry policy, plain data out, metering."""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from bot import errors
from bot.openai_api.calls import (
    CallContext,
    CallGuard,
    ChatResult,
    GeneratedImage,
    MediaTokens,
    ModerationResult,
    PlannedCall,
    Transcript,
    UsageEvent,
    UsageSink,
)
from bot.openai_api.chat_stream import StreamErrorEvent, chat_events
from bot.openai_api.http import OpenAIHTTP
from bot.openai_api.retry import RetryPolicy, translate_error
from bot.settings import Settings
from bot.util.metrics import Metrics

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)
T = TypeVar("T")

# The speech endpoint's `pcm` format: 24 kHz, signed 16-bit little-endian, mono.
PCM_RATE = 24_000
PCM_BYTES_PER_SECOND = PCM_RATE * 2
# Speech runs at roughly 15 characters a second; a slow style can halve that. Budgets assume the slower.
SPEECH_CHARS_PER_SECOND_WORST = 8.0


def expected_speech_seconds(characters: int) -> float:
    """The longest the speech of `characters` is likely to last (for budget estimates)."""
    return characters / SPEECH_CHARS_PER_SECOND_WORST


def is_reasoning_model(model: str) -> bool:
    """OpenAI's o-series and gpt-5 family (not the non-reasoning chat-latest aliases)."""
    return model.startswith(("o1", "o3", "o4", "gpt-5")) and "chat-latest" not in model


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
        if not isinstance(categories, dict) or not isinstance(scores, dict):
            raise ValueError("malformed moderation result")
        # A well-formed answer (every value a bool, every score a float) is used as decoded: a channel
        # message's verdict is on the hot path. Anything else is coerced, a null dropped.
        if not set(map(type, categories.values())) <= _BOOL:
            categories = {str(k): bool(v) for k, v in categories.items() if v is not None}
        if not set(map(type, scores.values())) <= _FLOAT:
            scores = {str(k): float(v) for k, v in scores.items() if v is not None}
        parsed.append(ModerationResult(bool(result.get("flagged")), categories, scores))
    return parsed


_BOOL = frozenset({bool})
_FLOAT = frozenset({float})


def _field(obj: Any, name: str) -> Any:
    """A field of an SDK model or of a plain dict (streamed chunks are dicts); None when absent."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _count(obj: Any, *path: str) -> int:
    for name in path:
        obj = _field(obj, name)
    try:
        return int(obj or 0)
    except (TypeError, ValueError):
        return 0


def chat_usage(usage: Any) -> tuple[int, int, int, int]:
    """(prompt, completion, cached, reasoning) tokens of a chat usage block (or a Responses API one)."""
    prompt = _count(usage, "prompt_tokens") or _count(usage, "input_tokens")
    completion = _count(usage, "completion_tokens") or _count(usage, "output_tokens")
    cached = _count(usage, "prompt_tokens_details", "cached_tokens") or _count(
        usage, "input_tokens_details", "cached_tokens"
    )
    reasoning = _count(usage, "completion_tokens_details", "reasoning_tokens") or _count(
        usage, "output_tokens_details", "reasoning_tokens"
    )
    return prompt, completion, min(cached, prompt), min(reasoning, completion)


def image_usage(usage: Any) -> MediaTokens | None:
    """The tokens an image answer reports (GPT image models), or None when it carries no usage."""
    if usage is None or _field(usage, "input_tokens") is None:
        return None
    details = _field(usage, "input_tokens_details")
    text_in, image_in = _count(details, "text_tokens"), _count(details, "image_tokens")
    if details is None:
        text_in = _count(usage, "input_tokens")
    out_details = _field(usage, "output_tokens_details")
    image_out = (
        _count(out_details, "image_tokens") if out_details is not None else _count(usage, "output_tokens")
    )
    return MediaTokens(
        text_input=text_in,
        image_input=image_in,
        text_output=_count(out_details, "text_tokens"),
        image_output=image_out,
    )


def transcription_usage(usage: Any) -> MediaTokens | None:
    """The tokens a gpt-4o-*-transcribe answer reports; None for whisper's duration usage or none at all."""
    if usage is None or _field(usage, "type") != "tokens":
        return None
    details = _field(usage, "input_token_details") or _field(usage, "input_tokens_details")
    audio_in = _count(details, "audio_tokens")
    text_in = _count(details, "text_tokens") if details is not None else 0
    if details is None:
        audio_in = _count(usage, "input_tokens")
    return MediaTokens(text_input=text_in, audio_input=audio_in, text_output=_count(usage, "output_tokens"))


class OpenAIGateway:
    """The API's one way in. Returns plain data; raises only `bot.errors.BotError`s.

    Moderation and chat, the calls every message and /ask makes, go as plain JSON over `http`
    (bot/openai_api/http.py). Images, audio, embeddings and model lists go through the SDK's one
    AsyncOpenAI client, made (and the SDK imported) when the first of them is called.
    """

    def __init__(
        self,
        http: OpenAIHTTP,
        settings: Settings,
        *,
        retry: RetryPolicy | None = None,
        usage_sink: UsageSink | None = None,
        guard: CallGuard | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.http = http
        self.metrics = metrics
        self.settings = settings
        self.retry = retry or RetryPolicy(max_retries=settings.openai_max_retries)
        self.usage_sink = usage_sink
        self.guard = guard
        self._client: AsyncOpenAI | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> OpenAIGateway:
        http = OpenAIHTTP(settings.openai_api_key, settings.openai_base_url, settings.openai_timeout)
        return cls(http, settings, **kwargs)

    @property
    def client(self) -> AsyncOpenAI:
        """The SDK's client, for the typed endpoints; it shares the plain client's base URL."""
        if self._client is None:
            import openai  # noqa: PLC0415 - 24 MiB that only the typed endpoints need

            # max_retries=0: the SDK would retry insufficient_quota like any 429; our policy decides instead.
            self._client = openai.AsyncOpenAI(
                api_key=self.settings.openai_api_key,
                base_url=self.http.base_url,
                timeout=self.settings.openai_timeout,
                max_retries=0,
                # aiohttp (already here for discord.py) instead of httpcore: its pool and chunk reads cost a
                # fraction of the CPU under hundreds of concurrent streams (docs/performance.md).
                http_client=openai.DefaultAioHttpClient(timeout=self.settings.openai_timeout),
            )
        return self._client

    async def close(self) -> None:
        await self.http.close()
        if self._client is not None:
            await self._client.close()

    async def call(
        self,
        make_call: Callable[[], Awaitable[T]],
        *,
        model: str,
        deadline: float | None = None,
        endpoint: str = "other",
    ) -> T:
        """Run `make_call` with the retry policy, within `deadline` seconds from now when given."""
        result = await self.retry.run(
            make_call,
            # Every failed attempt is counted by its error kind, retried or not.
            lambda exc: self._counted(
                endpoint, model, translate_error(exc, model, self.settings.setting_for_model)
            ),
            model=model,
            deadline=deadline,
        )
        self._count(endpoint, model, "none")
        return result

    def _counted(self, endpoint: str, model: str, error: errors.BotError) -> errors.BotError:
        self._count(endpoint, model, type(error).__name__)
        return error

    def _count(self, endpoint: str, model: str, error: str) -> None:
        if self.metrics is not None:
            self.metrics.openai_call(endpoint, model, error)

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
        cache_key: str | None = None,
    ) -> ChatResult:
        """Stream a chat answer, calling `on_text` with the text so far; a cut stream is an error.

        `prompt_tokens`, when given, is the messages' token count as `Limits.estimate` would count it.
        `wait_for_usage_commit`: see `UsageEvent.wait_for_commit`.
        `cache_key`: sent as `prompt_cache_key`, so one conversation's requests reach the same prompt cache.
        """
        model = model or self.settings.chat_model
        kwargs = self._chat_kwargs(model, max_tokens or self.settings.max_answer_tokens)
        body: dict[str, Any] = {
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if cache_key:
            body["prompt_cache_key"] = cache_key
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
                lambda: self.http.open_stream("/chat/completions", {**kwargs, **body}),
                model=model,
                deadline=deadline,
                endpoint="chat",
            )
            parts: list[str] = []
            finish_reason: str | None = None
            prompt_tokens = completion_tokens = cached_tokens = reasoning_tokens = 0
            try:
                async for chunk in chat_events(stream.content):
                    if usage := chunk.get("usage"):
                        prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens = chat_usage(usage)
                    for choice in chunk.get("choices") or ():
                        if content := (choice.get("delta") or {}).get("content"):
                            parts.append(content)
                            if on_text is not None:
                                await on_text("".join(parts))
                        if choice.get("finish_reason") is not None:
                            finish_reason = choice["finish_reason"]
            except (StreamErrorEvent, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                # A cut connection, a read timeout, an error event or a malformed data line (ValueError):
                # a broken stream, not a bot bug.
                log.info("chat stream broke: %s", type(exc).__name__)
                raise errors.IncompleteAnswer() from exc
            finally:
                stream.release()
            await self._meter(
                UsageEvent(
                    context,
                    "chat",
                    model,
                    prompt_tokens,
                    completion_tokens,
                    cached_tokens=cached_tokens,
                    reasoning_tokens=reasoning_tokens,
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
        cache_key: str | None = None,
    ) -> ChatResult:
        model = model or self.settings.chat_model
        kwargs = self._chat_kwargs(model, max_tokens or self.settings.max_answer_tokens)
        if cache_key:
            kwargs["prompt_cache_key"] = cache_key
        async with self._admit(
            PlannedCall(context, "chat", model, kwargs[self.settings.max_tokens_parameter], messages=messages)
        ):
            response = await self.call(
                lambda: self.http.post_json("/chat/completions", {**kwargs, "messages": list(messages)}),
                model=model,
                deadline=deadline,
                endpoint="chat",
            )
            prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens = chat_usage(
                response.get("usage") if isinstance(response, dict) else None
            )
            await self._meter(
                UsageEvent(
                    context,
                    "chat",
                    model,
                    prompt_tokens,
                    completion_tokens,
                    cached_tokens=cached_tokens,
                    reasoning_tokens=reasoning_tokens,
                )
            )
            choices = response.get("choices") if isinstance(response, dict) else None
            if not choices or not isinstance(choices[0], dict):
                raise errors.IncompleteAnswer()
            choice = choices[0]
            finish_reason = choice.get("finish_reason")
            if finish_reason == "content_filter":
                raise errors.ContentRefused()
            return ChatResult(
                str((choice.get("message") or {}).get("content") or ""),
                finish_reason or "stop",
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
                # Plain JSON in and out: the SDK's typed input transform and pydantic results would block
                # the event loop for every input of a batch.
                return parse_moderation(
                    await self.http.post_json("/moderations", {"model": model, "input": inputs})
                )

            try:
                results = await self.call(fetch, model=model, deadline=deadline, endpoint="moderation")
            except (errors.UpstreamUnavailable, errors.UpstreamTimeout, errors.RateLimited) as exc:
                raise errors.ModerationUnavailable() from exc
        await self._meter(UsageEvent(context, "moderation", model))
        return results

    # -- images, audio, models ------------------------------------------------------------------

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
                endpoint="image",
            )
            return await self._image_made(response, context, model, size, quality, output_format)

    async def _image_made(
        self, response: Any, context: CallContext, model: str, size: str, quality: str, output_format: str
    ) -> GeneratedImage:
        """Meter a generated or edited image and return it. "auto" is priced by what was actually made:
        the answer says which size and quality."""
        await self._meter(
            UsageEvent(
                context,
                "image",
                model,
                images=1,
                image_size=getattr(response, "size", None) or size,
                image_quality=getattr(response, "quality", None) or quality,
                media_tokens=image_usage(getattr(response, "usage", None)),
            )
        )
        if not response.data or not response.data[0].b64_json:
            raise errors.UpstreamUnavailable()
        item = response.data[0]
        return GeneratedImage(base64.b64decode(item.b64_json or ""), output_format, item.revised_prompt)

    async def edit_image(
        self,
        prompt: str,
        image: tuple[str, bytes, str],
        *,
        context: CallContext,
        mask: tuple[str, bytes, str] | None = None,
        size: str = "auto",
        quality: str = "auto",
        output_format: str = "png",
        deadline: float | None = 240.0,
    ) -> GeneratedImage:
        """An edit of `image` (name, bytes, MIME type), optionally only where `mask` is transparent."""
        model = self.settings.image_model
        extra: dict[str, Any] = {}
        if mask is not None:
            extra["mask"] = mask
        async with self._admit(
            PlannedCall(
                context, "image", model, text=prompt, images=1, image_size=size, image_quality=quality
            )
        ):
            response = await self.call(
                lambda: self.client.images.edit(  # type: ignore[call-overload]
                    model=model,
                    # A list goes up as `image[]`, the field GPT image models read.
                    image=[image],
                    prompt=prompt,
                    n=1,
                    size=size,
                    quality=quality,
                    output_format=output_format,
                    **extra,
                ),
                model=model,
                deadline=deadline,
                endpoint="image",
            )
            return await self._image_made(response, context, model, size, quality, output_format)

    async def speak(
        self,
        text: str,
        *,
        context: CallContext,
        voice: str,
        instructions: str | None = None,
        response_format: str = "pcm",
        expected_seconds: float = 0.0,
        deadline: float | None = 180.0,
    ) -> bytes:
        """Text to speech; `instructions` only reach models that take them (gpt-4o-mini-tts)."""
        model = self.settings.speech_model
        extra: dict[str, Any] = {}
        if instructions and model.startswith("gpt-"):
            extra["instructions"] = instructions
        planned = PlannedCall(
            context,
            "speech",
            model,
            text=text,
            characters=len(text),
            audio_seconds=expected_seconds,
        )
        async with self._admit(planned):

            async def fetch() -> bytes:
                response = await self.client.audio.speech.create(
                    model=model,
                    input=text,
                    voice=voice,
                    response_format=response_format,  # type: ignore[arg-type]
                    **extra,
                )
                return response.content

            audio = await self.call(fetch, model=model, deadline=deadline)
            # The answer is audio alone (no usage block, unlike the SSE stream format): priced by the
            # per-minute estimate of what was made, 24 kHz 16-bit mono for pcm.
            seconds = len(audio) / PCM_BYTES_PER_SECOND if response_format == "pcm" else expected_seconds
            await self._meter(
                UsageEvent(context, "speech", model, audio_seconds=seconds, characters=len(text))
            )
            return audio

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
            response = await self.call(make, model=model, deadline=deadline, endpoint="transcription")
            seconds = duration_hint
            usage = getattr(response, "usage", None)
            if usage is not None and getattr(usage, "seconds", None) is not None:
                seconds = float(usage.seconds)
            await self._meter(
                UsageEvent(
                    context,
                    "transcription",
                    model,
                    audio_seconds=seconds or 0.0,
                    media_tokens=transcription_usage(usage),
                )
            )
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
                endpoint="embedding",
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
            listing = await self.http.get_json("/models")
            data = listing.get("data") if isinstance(listing, dict) else None
            if not isinstance(data, list):
                raise ValueError("the model list is not a list")
            return {str(item["id"]) for item in data if isinstance(item, dict) and "id" in item}

        return await self.call(fetch, model="", deadline=30.0, endpoint="models")

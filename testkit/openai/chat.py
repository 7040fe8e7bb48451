"""Chat completions for the fake OpenAI server: replies, usage, limits and SSE streaming."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .common import (
    ApiError,
    FakeBase,
    Injection,
    RecordedRequest,
    estimate_tokens,
    missing_param,
    model_kind,
    new_id,
    sse,
)

IMAGE_PART_TOKENS = 85  # what one image part adds to prompt_tokens (low-detail cost)
# OpenAI's prompt caching: prompts of 1024 tokens or more; hits cover the longest previously seen prefix,
# counted in 128-token steps beyond the first 1024; requests are routed to a cache by a hash of the
# prompt's first ~256 tokens combined with `prompt_cache_key` when one is sent.
CACHE_MIN_TOKENS = 1024
CACHE_STEP_TOKENS = 128
CACHE_ROUTING_CHARS = 256 * 4
CACHE_PROMPTS_KEPT = 32


def is_reasoning_model(model: str) -> bool:
    """o-series and gpt-5 family: `max_tokens` is refused (use `max_completion_tokens`)."""
    return model.startswith(("o1", "o3", "o4", "gpt-5")) and "chat-latest" not in model


def fixed_temperature_model(model: str) -> bool:
    """Models that accept only the default temperature (1)."""
    base = model.split("-20")[0]
    return base in {"gpt-5", "gpt-5-mini", "gpt-5-nano"} or model.startswith(("o1", "o3", "o4"))


def message_text(content: Any) -> str:
    """The text of a message's content given as a string or as a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return " ".join(texts)
    return ""


def count_images(content: Any) -> int:
    """How many image parts a message content holds."""
    if not isinstance(content, list):
        return 0
    return sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")


def prompt_tokens_of(messages: list[Any]) -> int:
    """Deterministic prompt token estimate: all message characters // 4 + 1, plus 85 per image."""
    chars = 0
    images = 0
    for m in messages:
        if isinstance(m, dict):
            chars += len(message_text(m.get("content")))
            images += count_images(m.get("content"))
    return chars // 4 + 1 + IMAGE_PART_TOKENS * images


def prompt_text(messages: list[Any]) -> str:
    """The prompt as the cache sees it: every message's role, name and text, in order."""
    parts = []
    for m in messages:
        if isinstance(m, dict):
            parts.append(f"{m.get('role')}\x00{m.get('name') or ''}\x00{message_text(m.get('content'))}\x01")
    return "".join(parts)


def cached_tokens_for(matched_chars: int, prompt_tokens: int) -> int:
    """Tokens billed as cached for a prefix of `matched_chars` already seen (4 characters a token)."""
    matched = min(matched_chars // 4, prompt_tokens)
    if prompt_tokens < CACHE_MIN_TOKENS or matched < CACHE_MIN_TOKENS:
        return 0
    return CACHE_MIN_TOKENS + (matched - CACHE_MIN_TOKENS) // CACHE_STEP_TOKENS * CACHE_STEP_TOKENS


def common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n
    while lo < hi:  # binary search on equal prefixes: long histories stay cheap to compare
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def default_reply(body: dict[str, Any]) -> str:
    """`Echo: <last user text>`."""
    for m in reversed(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            return "Echo: " + message_text(m.get("content"))
    return "Echo: "


class ChatMixin(FakeBase):
    """POST /v1/chat/completions."""

    chat_reply: Callable[[dict[str, Any]], str] | str | None
    chat_latency: float
    stream_chunk_delay: float
    stream_chunk_chars: int
    context_window: int | None
    reasoning_tokens: int
    strict_params: bool
    cancelled_streams: int
    prompt_caching: bool
    _prompt_cache: dict[tuple[str, str, str], deque[str]]
    _chat_queue: deque[str]
    _closing: bool

    def _init_chat(self) -> None:
        self.chat_reply = None
        self.chat_latency = 0.0
        self.stream_chunk_delay = 0.0
        self.stream_chunk_chars = 8
        self.context_window = None
        self.reasoning_tokens = 0
        self.strict_params = True
        self.cancelled_streams = 0
        self.prompt_caching = True
        self._prompt_cache = {}
        self._chat_queue = deque()

    def queue_chat_replies(self, *texts: str) -> None:
        """Answers used first, in order, before `chat_reply`."""
        self._chat_queue.extend(texts)

    def _chat_answer(self, body: dict[str, Any]) -> str:
        if self._chat_queue:
            return self._chat_queue.popleft()
        reply = self.chat_reply
        if reply is None:
            return default_reply(body)
        if isinstance(reply, str):
            return reply
        return str(reply(body))

    def _validate_chat(self, body: dict[str, Any]) -> tuple[str, list[Any]]:
        model = self._require_model(body.get("model"))
        if model_kind(model) != "chat":
            raise ApiError(
                404,
                "This is not a chat model and thus not supported in the v1/chat/completions endpoint. "
                "Did you mean to use v1/completions?",
                param="model",
            )
        messages = body.get("messages")
        if messages is None:
            raise missing_param("messages")
        if not isinstance(messages, list):
            raise ApiError(400, "Invalid type for 'messages': expected an array.", param="messages")
        if not messages:
            raise ApiError(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                param="messages",
                code="empty_array",
            )
        if self.strict_params:
            if is_reasoning_model(model) and body.get("max_tokens") is not None:
                raise ApiError(
                    400,
                    "Unsupported parameter: 'max_tokens' is not supported with this model. "
                    "Use 'max_completion_tokens' instead.",
                    param="max_tokens",
                    code="unsupported_parameter",
                )
            if not is_reasoning_model(model) and body.get("reasoning_effort") is not None:
                raise ApiError(
                    400,
                    "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                    param="reasoning_effort",
                    code="unsupported_parameter",
                )
            temperature = body.get("temperature")
            if fixed_temperature_model(model) and temperature is not None and temperature != 1:
                raise ApiError(
                    400,
                    f"Unsupported value: 'temperature' does not support {temperature} with this model. "
                    "Only the default (1) value is supported.",
                    param="temperature",
                    code="unsupported_value",
                )
        if body.get("stream_options") is not None and not body.get("stream"):
            raise ApiError(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        return model, messages

    def _completion(self, body: dict[str, Any], model: str) -> tuple[str, str, int]:
        """(content, finish_reason, completion_tokens) honouring max tokens and reasoning tokens."""
        answer = self._chat_answer(body)
        limit = body.get("max_completion_tokens")
        if limit is None:
            limit = body.get("max_tokens")
        reasoning = self.reasoning_tokens if is_reasoning_model(model) else 0
        if isinstance(limit, int):
            visible = limit - reasoning
            if visible <= 0:
                return "", "length", limit
            if estimate_tokens(answer) > visible:
                return answer[: visible * 4], "length", limit
        return answer, "stop", estimate_tokens(answer) + reasoning

    def _cached_tokens(self, body: dict[str, Any], model: str, messages: list[Any], prompt: int) -> int:
        """What OpenAI's prompt cache would serve of this prompt; the prompt is then cached itself."""
        if not self.prompt_caching:
            return 0
        text = prompt_text(messages)
        key = body.get("prompt_cache_key")
        route = (model, str(key) if isinstance(key, str) else "", text[:CACHE_ROUTING_CHARS])
        seen = self._prompt_cache.setdefault(route, deque(maxlen=CACHE_PROMPTS_KEPT))
        matched = max((common_prefix(text, old) for old in seen), default=0)
        seen.append(text)
        return cached_tokens_for(matched, prompt)

    def forget_prompt_cache(self) -> None:
        """Every cached prefix evicted, as after OpenAI's idle expiry."""
        self._prompt_cache.clear()

    def _usage(self, prompt: int, completion: int, model: str, cached: int = 0) -> dict[str, Any]:
        reasoning = min(completion, self.reasoning_tokens) if is_reasoning_model(model) else 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    async def _handle_chat(
        self, request: web.Request, rec: RecordedRequest, cut: Injection | None
    ) -> web.StreamResponse:
        body = rec.json if isinstance(rec.json, dict) else {}
        model, messages = self._validate_chat(body)
        prompt = prompt_tokens_of(messages)
        if self.context_window is not None and prompt > self.context_window:
            raise ApiError(
                400,
                f"This model's maximum context length is {self.context_window} tokens. However, your "
                f"messages resulted in {prompt} tokens. Please reduce the length of the messages.",
                param="messages",
                code="context_length_exceeded",
            )
        n = body.get("n") or 1
        if not isinstance(n, int) or not 1 <= n <= 128:
            raise ApiError(400, f"Invalid 'n': expected an integer between 1 and 128, got {n}.", param="n")
        content, finish, completion = self._completion(body, model)
        if self.chat_latency:
            await asyncio.sleep(self.chat_latency)
        cid = new_id("chatcmpl-")
        created = int(time.time())
        usage = self._usage(prompt, completion * n, model, self._cached_tokens(body, model, messages, prompt))
        if body.get("stream"):
            return await self._stream_chat(
                request, rec, body, cid, created, model, content, finish, usage, n, cut
            )
        payload = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for i in range(n)
            ],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        return self._json(rec, payload)

    async def _stream_chat(
        self,
        request: web.Request,
        rec: RecordedRequest,
        body: dict[str, Any],
        cid: str,
        created: int,
        model: str,
        content: str,
        finish: str,
        usage: dict[str, Any],
        n: int,
        cut: Injection | None,
    ) -> web.StreamResponse:
        options = body.get("stream_options") or {}
        include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        if cut is not None:
            content = content[: cut.after_chars]

        def chunk(choices: list[dict[str, Any]], with_usage: dict[str, Any] | None = None) -> bytes:
            payload: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": choices,
            }
            if include_usage:
                payload["usage"] = with_usage
            return sse(payload)

        def choice(i: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        size = max(1, self.stream_chunk_chars)
        pieces = [content[k : k + size] for k in range(0, len(content), size)]
        events = [chunk([choice(i, {"role": "assistant", "content": "", "refusal": None})]) for i in range(n)]
        events += [chunk([choice(i, {"content": p})]) for p in pieces for i in range(n)]
        if cut is None:
            events += [chunk([choice(i, {}, finish)]) for i in range(n)]
            if include_usage:
                events.append(chunk([], usage))
                rec.stream_usage = usage
            events.append(b"data: [DONE]\n\n")

        rec.stream = True
        rec.status = 200
        headers = self._headers(rec)
        headers.update({"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
        resp = web.StreamResponse(status=200, headers=headers)
        try:
            await resp.prepare(request)
            for k, event in enumerate(events):
                if k and self.stream_chunk_delay:
                    await asyncio.sleep(self.stream_chunk_delay)
                await resp.write(event)
            if cut is not None and cut.cut_mode == "reset" and request.transport is not None:
                # Drop the connection without the chunked terminator: the client sees a broken body.
                request.transport.abort()
                return resp
            await resp.write_eof()
        except ConnectionResetError:
            self._stream_abandoned(rec)
        except asyncio.CancelledError:
            self._stream_abandoned(rec)
            raise
        return resp

    def _stream_abandoned(self, rec: RecordedRequest) -> None:
        if not self._closing:
            rec.cancelled = True
            self.cancelled_streams += 1

"""A fake OpenAI API on 127.0.0.1 that the real `openai.AsyncOpenAI` client can talk to, with fault injection."""

from __future__ import annotations

import asyncio
import base64
import json as jsonlib
import logging
import math
import re
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Literal

from aiohttp import BodyPartReader, web

from .audio import AudioMixin
from .chat import ChatMixin
from .common import (
    DEFAULT_MODELS,
    MODELS_CREATED,
    ApiError,
    Injection,
    RecordedRequest,
    estimate_tokens,
    new_id,
    unit_hash,
)
from .images import ImagesMixin
from .moderation import ModerationMixin

__all__ = ["ApiError", "FakeOpenAI", "Injection", "RecordedRequest"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request, RecordedRequest], Awaitable[web.StreamResponse]]

DEFAULT_MESSAGES: dict[int, str] = {
    400: "Invalid request.",
    401: "Incorrect API key provided.",
    403: "You are not allowed to sample from this model.",
    404: "Not found.",
    408: "Request timed out.",
    409: "The request conflicted with another request.",
    422: "Unprocessable entity.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The server is overloaded or not ready yet.",
    504: "Gateway timeout.",
}
QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more information "
    "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
)
NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
    "you're accessing the API from your browser and are prompted for a username and password. You can "
    "obtain an API key from https://platform.openai.com/account/api-keys."
)
BAD_JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. "
    "If you have trouble figuring out how to fix this, please contact us through our help center at "
    "help.openai.com.)"
)


def mask_key(key: str) -> str:
    """The API's way of echoing a wrong key: `sk-wr***` (long keys also show their last 4)."""
    return key[:5] + "*" * max(3, len(key) - 9) + key[-4:] if len(key) > 12 else key[:5] + "***"


class FakeOpenAI(ChatMixin, ModerationMixin, ImagesMixin, AudioMixin):
    """Fake OpenAI API server on 127.0.0.1.

    `await fake.start()` (or `async with FakeOpenAI() as fake`), then
    `AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key)`; `await fake.close()` at the end.
    Every request is recorded in `requests` (see `calls()`). Injections stack: for each request the most
    recently added injection whose path suffix matches is used (and consumed); `down` beats them all.
    Error answers are always `{"error": {"message", "type", "param", "code"}}` with an `x-request-id`.
    """

    def __init__(self, *, api_key: str = "sk-test", models: Iterable[str] | None = None) -> None:
        self.api_key = api_key
        self.models = set(DEFAULT_MODELS if models is None else models)
        self.requests = []
        self.handler_errors: list[BaseException] = []  # bugs in the fake (or in a chat_reply callable)
        self._recent_times = deque()
        self.port = 0
        self.base_url = ""
        self.down = False
        self.embedding_dim = 8
        # Added to default (non-custom-header) 429 and 5xx answers so SDK retries are fast; None: omit.
        self.retry_after_ms: int | None = 10
        self._injections: list[Injection] = []
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._init_chat()
        self._init_moderation()
        self._init_images()
        self._init_audio()
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/moderations"): self._handle_moderation,
            ("POST", "/v1/images/generations"): self._handle_images,
            ("POST", "/v1/images/edits"): self._handle_image_edits,
            ("POST", "/v1/audio/transcriptions"): self._handle_transcription,
            ("POST", "/v1/audio/translations"): self._handle_translation,
            ("POST", "/v1/audio/speech"): self._handle_speech,
            ("POST", "/v1/embeddings"): self._handle_embeddings,
            ("GET", "/v1/models"): self._handle_models,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port; sets `port` and `base_url`."""
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._closing = False
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    async def close(self) -> None:
        """Stop the server, cutting any request still in progress."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ inspection

    def calls(self, path_suffix: str) -> list[RecordedRequest]:
        """Recorded requests whose path ends with `path_suffix`, e.g. `calls("/chat/completions")`."""
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    # ------------------------------------------------------------------ injection

    def inject(
        self,
        path_suffix: str,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        body: str | bytes | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `times` requests whose path ends with `path_suffix` with this error.

        times=-1: until clear_injections(). `body` replaces the JSON error body verbatim (content type
        guessed: JSON, HTML or text). Without `headers`, 429 and 5xx answers carry
        `retry-after-ms: <retry_after_ms>` so SDK retries stay fast; with `headers`, exactly those.
        """
        self._injections.append(
            Injection(
                "error",
                path_suffix,
                times,
                status=status,
                code=code,
                message=message,
                type=type,
                headers=headers,
                body=body,
                delay=delay,
            )
        )

    def inject_insufficient_quota(self, path_suffix: str = "", times: int = -1) -> None:
        """429 insufficient_quota (no credit left): the SDK still retries it like any 429."""
        self.inject(
            path_suffix,
            429,
            code="insufficient_quota",
            type="insufficient_quota",
            message=QUOTA_MESSAGE,
            times=times,
        )

    def inject_rate_limit(self, path_suffix: str, *, retry_after: float = 0.05, times: int = 1) -> None:
        """429 rate_limit_exceeded with retry-after(-ms) and x-ratelimit-* headers."""
        ms = max(1, int(retry_after * 1000))
        headers = {
            "retry-after-ms": str(ms),
            "retry-after": str(max(1, math.ceil(retry_after))),
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{ms}ms",
            "x-ratelimit-limit-tokens": "200000",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": f"{ms}ms",
        }
        self.inject(
            path_suffix, 429, code="rate_limit_exceeded", type="requests", headers=headers, times=times
        )

    def inject_stream_cut(
        self, *, after_chars: int = 10, times: int = 1, mode: Literal["end", "reset"] = "end"
    ) -> None:
        """The next chat streams stop after `after_chars` characters: no finish_reason, no [DONE].

        mode "end" ends the HTTP body cleanly (the SDK's iteration just stops); "reset" drops the
        connection mid-body (the SDK raises APIConnectionError).
        """
        self._injections.append(
            Injection("stream_cut", "/chat/completions", times, after_chars=after_chars, cut_mode=mode)
        )

    def inject_malformed_json(self, path_suffix: str, times: int = 1) -> None:
        """200 with content-type application/json and a truncated body (SSE: a broken data line)."""
        self._injections.append(Injection("malformed", path_suffix, times))

    def inject_hang(self, path_suffix: str, seconds: float, times: int = 1) -> None:
        """Wait `seconds` before answering normally (read-timeout tests)."""
        self._injections.append(Injection("hang", path_suffix, times, delay=seconds))

    def clear_injections(self) -> None:
        """Forget every pending injection."""
        self._injections.clear()

    def _take_injection(self, rec: RecordedRequest) -> Injection | None:
        streaming = isinstance(rec.json, dict) and bool(rec.json.get("stream"))
        for inj in reversed(self._injections):  # the newest matching injection wins
            if not rec.path.endswith(inj.path_suffix):
                continue
            if inj.kind == "stream_cut" and not streaming:
                continue
            if inj.remaining > 0:
                inj.remaining -= 1
                if inj.remaining == 0:
                    self._injections.remove(inj)
            return inj
        return None

    def _retry_headers(self) -> dict[str, str]:
        return {} if self.retry_after_ms is None else {"retry-after-ms": str(self.retry_after_ms)}

    def _injected_error(self, inj: Injection, rec: RecordedRequest) -> web.Response:
        status = inj.status
        headers = self._retry_headers() if inj.headers is None and (status == 429 or status >= 500) else {}
        headers.update(inj.headers or {})
        if inj.body is not None:
            raw = inj.body.encode() if isinstance(inj.body, str) else inj.body
            stripped = raw.lstrip()
            content_type = (
                "application/json"
                if stripped.startswith((b"{", b"["))
                else "text/html"
                if stripped.startswith(b"<")
                else "text/plain"
            )
            rec.status = status
            all_headers = self._headers(rec)
            all_headers.update(headers)
            return web.Response(status=status, body=raw, content_type=content_type, headers=all_headers)
        message = inj.message
        if message is None and status == 429:
            ms = headers.get("retry-after-ms", "20")
            message = (
                f"Rate limit reached for {rec.model or 'the model'} in organization org-fake on requests per min "
                f"(RPM): Limit 500, Used 500, Requested 1. Please try again in {ms}ms. "
                "Visit https://platform.openai.com/account/rate-limits to learn more."
            )
        error = ApiError(
            status,
            message or DEFAULT_MESSAGES.get(status, f"Error {status}."),
            type=inj.type
            or (
                "server_error" if status >= 500 else "requests" if status == 429 else "invalid_request_error"
            ),
            code=inj.code if inj.code is not None else ("rate_limit_exceeded" if status == 429 else None),
        )
        return self._json(rec, error.body(), status=status, headers=headers)

    def _malformed(self, rec: RecordedRequest) -> web.Response:
        rec.status = 200
        if isinstance(rec.json, dict) and rec.json.get("stream"):
            body = b'data: {"id": "chatcmpl-broken", "object": "chat.completion.chunk", "choices": [\n\n'
            content_type = "text/event-stream"
        else:
            body = b'{"id": "broken", "object": "chat.completion", "choices": [{"index": 0, "mess'
            content_type = "application/json"
        return web.Response(body=body, content_type=content_type, headers=self._headers(rec))

    # ------------------------------------------------------------------ dispatch

    async def _read_body(self, request: web.Request, rec: RecordedRequest) -> ApiError | None:
        if request.content_type.startswith("multipart/"):
            total = 0
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                chunks = bytearray()
                while chunk := await part.read_chunk(1 << 16):
                    chunks.extend(chunk)
                total += len(chunks)
                if part.filename is not None:
                    content_type = part.headers.get("Content-Type", "application/octet-stream")
                    rec.files.append((part.name, part.filename, bytes(chunks), content_type))
                else:
                    rec.form[part.name] = chunks.decode("utf-8", "replace")
            rec.body_size = request.content_length or total
            return None
        raw = await request.read()
        rec.body_size = len(raw)
        if not raw:
            return None
        try:
            rec.json = jsonlib.loads(raw)
        except ValueError:
            return ApiError(400, BAD_JSON_MESSAGE)
        return None

    def _check_auth(self, rec: RecordedRequest) -> None:
        auth = rec.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise ApiError(401, NO_KEY_MESSAGE)
        key = auth[7:].strip()
        if key != self.api_key:
            raise ApiError(
                401,
                f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        headers = {k.lower(): v for k, v in request.headers.items()}
        retry = headers.get("x-stainless-retry-count")
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            headers=headers,
            query=dict(request.query),
            time=time.monotonic(),
            request_id=new_id("req_"),
            retry_count=int(retry) if retry is not None and retry.isdigit() else None,
        )
        self.requests.append(rec)
        self._recent_times.append(rec.time)
        try:
            return await self._respond(request, rec)
        except ApiError as err:
            return self._json(rec, err.body(), status=err.status, headers=err.headers)
        except (asyncio.CancelledError, ConnectionResetError):
            if not self._closing:
                rec.cancelled = True
            raise
        except Exception as exc:  # a bug in the fake or in a test's callable: answer 500, keep it visible
            self.handler_errors.append(exc)
            log.exception("fake OpenAI failed on %s %s", request.method, request.path)
            error = ApiError(500, f"Fake OpenAI error: {exc!r}", type="server_error")
            return self._json(rec, error.body(), status=500)
        finally:
            rec.end_time = time.monotonic()
            if task is not None:
                self._tasks.discard(task)

    async def _respond(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        body_error = await self._read_body(request, rec)
        if self.down:
            rec.injected = "down"
            raise ApiError(
                503,
                "The engine is currently overloaded, please try again later.",
                type="server_error",
                headers=self._retry_headers(),
            )
        inj = self._take_injection(rec)
        cut: Injection | None = None
        if inj is not None:
            rec.injected = inj.kind
            if inj.kind in ("error", "malformed", "hang") and inj.delay:
                await asyncio.sleep(inj.delay)
            if inj.kind == "error":
                return self._injected_error(inj, rec)
            if inj.kind == "malformed":
                return self._malformed(rec)
            if inj.kind == "stream_cut":
                cut = inj
        self._check_auth(rec)
        if body_error is not None:
            raise body_error
        if request.method == "POST" and request.path == "/v1/chat/completions":
            return await self._handle_chat(request, rec, cut)
        handler = self._routes.get((request.method, request.path))
        if handler is None and request.method == "GET" and request.path.startswith("/v1/models/"):
            handler = self._handle_model
        if handler is None:
            raise ApiError(404, f"Invalid URL ({request.method} {request.path})")
        return await handler(request, rec)

    # ------------------------------------------------------------------ embeddings and models

    def _vector(self, text: str, dim: int) -> list[float]:
        """A hashed bag of words, unit length: texts sharing words point the same way, as real
        embeddings of similar texts do; deterministic, so tests can predict which text matches best."""
        raw = [0.0] * dim
        for word in re.findall(r"\w+", text.lower()):
            slot = int(unit_hash("word", word) * dim)
            raw[slot] += 1.0 if unit_hash("sign", word) < 0.5 else -1.0
        if not any(raw):  # no words (punctuation only), or words that cancelled out
            raw = [unit_hash(text, k) * 2 - 1 for k in range(dim)]
        norm = math.sqrt(sum(v * v for v in raw)) or 1.0
        return [v / norm for v in raw]

    async def _handle_embeddings(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        body = rec.json if isinstance(rec.json, dict) else {}
        model = self._require_model(body.get("model"))
        value = body.get("input")
        if value is None:
            raise ApiError(
                400, "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
            )
        inputs: list[Any] = (
            [value]
            if isinstance(value, str)
            or (isinstance(value, list) and value and all(isinstance(v, int) for v in value))
            else value
        )
        if not isinstance(inputs, list) or not inputs or any(v == "" or v == [] for v in inputs):
            raise ApiError(
                400,
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
                param="input",
            )
        if len(inputs) > 2048:
            raise ApiError(
                400,
                f"Invalid 'input': array too long. Expected at most 2048, got {len(inputs)}.",
                param="input",
            )
        dim = body.get("dimensions") or self.embedding_dim
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise ApiError(
                400,
                f"Invalid value: '{fmt}'. Supported values are: 'float' and 'base64'.",
                param="encoding_format",
                code="invalid_value",
            )
        data: list[dict[str, Any]] = []
        tokens = 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += estimate_tokens(text) if isinstance(item, str) else len(item)
            vec = self._vector(text, int(dim))
            emb: Any = (
                base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if fmt == "base64" else vec
            )
            data.append({"object": "embedding", "index": i, "embedding": emb})
        payload = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return self._json(rec, payload)

    def _model_object(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": MODELS_CREATED, "owned_by": "system"}

    async def _handle_models(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        return self._json(
            rec, {"object": "list", "data": [self._model_object(m) for m in sorted(self.models)]}
        )

    async def _handle_model(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        model = request.path.removeprefix("/v1/models/")
        if model not in self.models:
            raise ApiError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")
        return self._json(rec, self._model_object(model))

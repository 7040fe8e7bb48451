"""Shared pieces of the fake OpenAI server: recorded requests, injections, API errors and the base class."""

from __future__ import annotations

import hashlib
import json as jsonlib
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web

DEFAULT_MODELS: tuple[str, ...] = (
    # chat
    "gpt-5.5",
    "gpt-5.4",
    "gpt-5.4-mini",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-4o",
    "gpt-4o-mini",
    # moderation
    "omni-moderation-latest",
    "omni-moderation-2024-09-26",
    # images
    "gpt-image-2",
    "gpt-image-1.5",
    "gpt-image-1-mini",
    # audio
    "gpt-4o-mini-transcribe",
    "gpt-4o-transcribe",
    "whisper-1",
    "gpt-4o-mini-tts",
    "tts-1",
    "tts-1-hd",
    # embeddings
    "text-embedding-3-small",
    "text-embedding-3-large",
)

MODELS_CREATED = 1_735_689_600  # fixed "created" timestamp for GET /v1/models


@dataclass
class RecordedRequest:
    """One HTTP request the fake received, and how it was answered."""

    method: str
    path: str
    headers: dict[str, str]  # header names lower-cased
    query: dict[str, str]
    time: float  # time.monotonic() when the request arrived
    request_id: str  # the x-request-id the response carries
    retry_count: int | None = None  # x-stainless-retry-count, if sent
    json: Any = None  # decoded JSON body (None for multipart / empty bodies)
    form: dict[str, str] = field(default_factory=dict)  # multipart text fields
    files: list[tuple[str, str, bytes, str]] = field(default_factory=list)  # (field, filename, data, type)
    body_size: int = 0
    end_time: float | None = None  # time.monotonic() when the answer was finished (or abandoned)
    status: int | None = None
    response_json: Any = None  # the JSON answered, when the answer was JSON
    stream: bool = False  # answered as an SSE stream
    stream_usage: Any = None  # the usage chunk a stream sent (stream_options.include_usage)
    cancelled: bool = False  # the client went away before the answer was complete
    injected: str | None = None  # "error", "malformed", "hang", "stream_cut" or "down"

    @property
    def model(self) -> str | None:
        """The `model` the request named (JSON body or multipart field)."""
        if isinstance(self.json, dict) and isinstance(self.json.get("model"), str):
            return str(self.json["model"])
        return self.form.get("model")

    @property
    def duration(self) -> float | None:
        """Seconds between arrival and the end of the answer."""
        return None if self.end_time is None else self.end_time - self.time


@dataclass
class Injection:
    """A scripted misbehaviour for the next requests whose path ends with `path_suffix`."""

    kind: Literal["error", "malformed", "hang", "stream_cut"]
    path_suffix: str
    remaining: int  # -1: until clear_injections()
    status: int = 500
    code: str | None = None
    message: str | None = None
    type: str | None = None
    headers: dict[str, str] | None = None
    body: str | bytes | None = None
    delay: float = 0.0
    after_chars: int = 10
    cut_mode: Literal["end", "reset"] = "end"


class ApiError(Exception):
    """Raised by handlers; turned into an OpenAI-style error response by the dispatcher."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers) if headers is not None else None
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        """The `{"error": {...}}` payload."""
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        error.update(self.extra)
        return {"error": error}


def missing_param(name: str) -> ApiError:
    """400 for a required parameter that was not sent."""
    return ApiError(
        400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
    )


def invalid_value(param: str, value: object, supported: list[str]) -> ApiError:
    """400 invalid_value in the API's wording."""
    quoted = [f"'{s}'" for s in supported]
    listed = ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else "".join(quoted)
    return ApiError(
        400,
        f"Invalid value: '{value}'. Supported values are: {listed}.",
        param=param,
        code="invalid_value",
    )


def too_long(param: str, limit: int, got: int) -> ApiError:
    """400 string_above_max_length in the API's wording."""
    return ApiError(
        400,
        f"Invalid '{param}': string too long. Expected a string with maximum length {limit}, "
        f"but got a string with length {got} instead.",
        param=param,
        code="string_above_max_length",
    )


def estimate_tokens(text: str) -> int:
    """Deterministic token estimate: characters // 4 + 1."""
    return len(text) // 4 + 1


def new_id(prefix: str) -> str:
    """A random id in the API's style, e.g. `chatcmpl-...`, `req_...`."""
    return prefix + secrets.token_hex(12)


def unit_hash(*parts: object) -> float:
    """A deterministic number in [0, 1) derived from `parts`."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def model_kind(model: str) -> str:
    """Guess what a model is for: chat, image, transcription, speech, embedding or moderation."""
    m = model.lower()
    if m.startswith(("gpt-image", "chatgpt-image", "dall-e")):
        return "image"
    if "moderation" in m:
        return "moderation"
    if "embedding" in m:
        return "embedding"
    if "tts" in m:
        return "speech"
    if "whisper" in m or "transcribe" in m:
        return "transcription"
    return "chat"


class FakeBase:
    """State and helpers shared by the endpoint mixins."""

    api_key: str
    models: set[str]
    requests: list[RecordedRequest]
    _recent_times: deque[float]  # arrival times of the requests of the last minute

    def _require_model(self, model: object) -> str:
        """The requested model, or the API's error for a missing / unknown one."""
        if model is None or model == "":
            raise ApiError(400, "you must provide a model parameter")
        if not isinstance(model, str):
            raise ApiError(
                400, f"Invalid type for 'model': expected a string, but got {type(model).__name__}."
            )
        if model not in self.models:
            raise ApiError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        return model

    def _headers(self, rec: RecordedRequest) -> dict[str, str]:
        """Headers every answer carries (request id, rate-limit state, processing time)."""
        now = time.monotonic()
        while self._recent_times and self._recent_times[0] < now - 60:
            self._recent_times.popleft()
        recent = len(self._recent_times)
        return {
            "x-request-id": rec.request_id,
            "openai-version": "2020-10-01",
            "openai-organization": "org-fake",
            "openai-processing-ms": str(int((now - rec.time) * 1000)),
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": str(max(0, 10000 - recent)),
            "x-ratelimit-reset-requests": "6ms",
            "x-ratelimit-limit-tokens": "10000000",
            "x-ratelimit-remaining-tokens": "9999000",
            "x-ratelimit-reset-tokens": "0s",
        }

    def _json(
        self,
        rec: RecordedRequest,
        payload: Any,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        """A JSON answer with content type exactly `application/json`, recorded on `rec`."""
        rec.status = status
        rec.response_json = payload
        all_headers = self._headers(rec)
        all_headers.update(headers or {})
        try:
            # orjson first: a moderation answer of 128 results took 4 ms to encode with json, in the process
            # that shares the capacity bench's cores with the bot.
            body = orjson.dumps(payload)
        except TypeError:  # what only json encodes (a dict with int keys)
            body = jsonlib.dumps(payload).encode()
        return web.Response(
            status=status,
            body=body,
            content_type="application/json",
            headers=all_headers,
        )


def sse(payload: Any) -> bytes:
    """One server-sent event carrying `payload` as JSON."""
    return b"data: " + jsonlib.dumps(payload).encode() + b"\n\n"

"""Plain JSON requests to the OpenAI API on one aiohttp session: the hot endpoints, without the SDK.

Moderation and chat run for every message and every /ask. The SDK spends about 0.8 ms of CPU building
each request (typed options, header normalisation, URL parsing, its httpx-to-aiohttp bridge) before a byte
is sent, and importing it costs 24 MiB; these two endpoints take plain JSON and need none of it
(docs/performance.md, "The hot calls without the SDK"). Errors keep the API's own status, code and type,
so `bot.openai_api.retry` maps them exactly as it maps the SDK's.
"""

from __future__ import annotations

import os
import urllib.request
from typing import Any

import aiohttp
import orjson
import yarl

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# As many connections as the SDK's pool allows, so hundreds of concurrent streams never queue for one.
MAX_CONNECTIONS = 1000


class ApiStatusError(Exception):
    """An error answer from the API: its HTTP status, and the `error` object's code, type and message."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        type: str | None = None,  # noqa: A002 - the API's own field name
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.code = code
        self.type = type
        self.retry_after = retry_after
        self.request_id = request_id


def retry_after_seconds(headers: Any) -> float | None:
    """The wait an error answer asks for: `retry-after-ms` first, then `retry-after` in seconds."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                return max(0.0, float(raw) / divisor)
            except ValueError:
                continue
    return None


def _status_error(status: int, body: bytes, headers: Any) -> ApiStatusError:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    error = payload.get("error", payload) if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        error = {}
    message = error.get("message")
    code, kind = error.get("code"), error.get("type")
    return ApiStatusError(
        status,
        str(message) if message else f"Error code: {status}",
        code=str(code) if code is not None else None,
        type=str(kind) if kind is not None else None,
        retry_after=retry_after_seconds(headers),
        request_id=headers.get("x-request-id"),
    )


async def _json(response: aiohttp.ClientResponse) -> Any:
    """The decoded JSON answer; an error status raises `ApiStatusError`."""
    raw = await response.read()
    if response.status >= 400:
        raise _status_error(response.status, raw, response.headers)
    return orjson.loads(raw)


def proxy_for(url: str) -> str | None:
    """The proxy the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) names for `url`, if any."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
    if not host or urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme.lower())


class OpenAIHTTP:
    """One aiohttp session for the API's JSON endpoints; made in the running loop on first use."""

    def __init__(
        self,
        api_key: str,
        base_url: str | None,
        timeout: float,
        *,
        organization: str | None = None,
        project: str | None = None,
    ) -> None:
        self._base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        # Per connect and per read, as the SDK applies its timeout: a long stream lives while bytes arrive.
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
        )
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        # The SDK reads these from the environment; an account that relies on them keeps them.
        if organization := organization or os.environ.get("OPENAI_ORG_ID"):
            self.headers["OpenAI-Organization"] = organization
        if project := project or os.environ.get("OPENAI_PROJECT_ID"):
            self.headers["OpenAI-Project"] = project
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None
        # Parsed once per endpoint: aiohttp takes a URL as it is, where a string is parsed and normalised
        # again on every request (about 3% of a busy /ask's CPU).
        self._urls: dict[str, yarl.URL] = {}

    @property
    def base_url(self) -> str:
        return self._base_url

    @base_url.setter
    def base_url(self, value: str) -> None:
        self._base_url = value.rstrip("/")
        self._urls.clear()

    def _url(self, path: str) -> yarl.URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = yarl.URL(self.base_url + path)
        return url

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                headers=self.headers,
                timeout=self.timeout,
                # Not trust_env: it reads ~/.netrc and the proxy variables in a thread on every request,
                # a tenth of an /ask's CPU. The proxy is looked up once instead, as the SDK honours it.
                trust_env=False,
            )
            self._proxy = proxy_for(self.base_url)
        return self._session

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._open().post(self._url(path), data=orjson.dumps(body), proxy=self._proxy)

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        """POST `body`, return the decoded JSON answer; an error status raises `ApiStatusError`."""
        async with self._post(path, body) as response:
            return await _json(response)

    async def get_json(self, path: str) -> Any:
        async with self._open().get(self._url(path), proxy=self._proxy) as response:
            return await _json(response)

    async def open_stream(self, path: str, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """POST `body` and return the answer once its headers arrived, to read its body as it comes.

        The caller releases it; one released before its end closes the connection, which tells the
        server to stop generating. An error status raises `ApiStatusError` before any byte is read.
        """
        response = await self._post(path, body)
        if response.status >= 400:
            try:
                raise _status_error(response.status, await response.read(), response.headers)
            finally:
                response.release()
        return response

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

"""REST plumbing of the fake Discord: recording, failure injection, auth and routing to the components' handlers."""

from __future__ import annotations

import json
import re
import time
import traceback
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from .model import JSON, RestError, UploadedFile
from .world import DiscordWorld


@dataclass
class RecordedRequest:
    """One REST request the bot made (path is without /api/v10)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[UploadedFile]
    time: float
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0


@dataclass
class FailRule:
    """An injected failure (see FakeDiscord.fail_next)."""

    method: str
    pattern: re.Pattern[str]
    status: int
    body: JSON
    headers: dict[str, str]
    times: int


Handler = Callable[[RecordedRequest, "re.Match[str]"], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response whose Content-Type is exactly application/json (discord.py needs that)."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, content_type="application/json", headers=headers
    )


def no_content() -> web.Response:
    """204."""
    return web.Response(status=204)


async def no_content_route(rec: RecordedRequest, m: re.Match[str]) -> web.Response:
    """A route Discord answers with 204 and nothing else."""
    return no_content()


class RestRouter:
    """The REST entry: records every request, applies injected failures, checks auth and routes to handlers."""

    def __init__(self, world: DiscordWorld) -> None:
        self.world = world
        self.requests: list[RecordedRequest] = []
        self.unknown_routes: list[RecordedRequest] = []
        self.fake_errors: list[str] = []  # exceptions inside the fake's own handlers (a bug or odd payload)
        self.cdn_requests: list[str] = []
        self.fail_rules: list[FailRule] = []
        self._route_table: list[tuple[str, re.Pattern[str], Handler]] = []

    def add_routes(self, routes: list[tuple[str, str, Handler]]) -> None:
        """Handlers for (method, path regex) pairs; the first registered match wins."""
        for method, pattern, handler in routes:
            self._route_table.append((method, re.compile(pattern), handler))

    @staticmethod
    def _is_token_route(path: str) -> bool:
        return path.startswith("/webhooks/") or path.startswith("/interactions/")

    async def _read_body(self, request: web.Request) -> tuple[Any, list[UploadedFile]]:
        files: list[UploadedFile] = []
        if request.content_type.startswith("multipart/"):
            body: Any = {}
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "payload_json":
                    body = json.loads(await part.text())
                elif part.filename is not None:
                    data = bytes(await part.read(decode=False))
                    files.append(UploadedFile(part.filename, data, part.headers.get("Content-Type")))
                elif part.name:
                    body[part.name] = await part.text()
            return body, files
        if not request.body_exists:
            return None, files
        text = await request.text()
        if not text:
            return None, files
        try:
            return json.loads(text), files
        except ValueError:
            return text, files

    def _injected(self, method: str, path: str) -> web.Response | None:
        for rule in self.fail_rules:
            if rule.times > 0 and rule.method in (method, "*") and rule.pattern.search(path):
                rule.times -= 1
                return json_response(rule.body, rule.status, rule.headers)
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every /api/v10 request."""
        path = "/" + urllib.parse.unquote(request.match_info["tail"])
        body, files = await self._read_body(request)
        rec = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            json=body,
            files=files,
            time=time.monotonic(),
            headers=dict(request.headers),
        )
        self.requests.append(rec)
        response: web.StreamResponse | None = self._injected(rec.method, path)
        if response is None:
            try:
                response = await self._route(request, rec)
            except RestError as exc:
                response = json_response(exc.body, exc.status)
            except Exception as exc:
                # A bug in the fake (or a payload it cannot handle): fail fast with a 400, never a retried 5xx.
                self.fake_errors.append(f"{rec.method} {path}: {traceback.format_exc()}")
                response = json_response({"message": f"fake Discord internal error: {exc!r}", "code": 0}, 400)
        rec.status = response.status
        return response

    async def _route(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        if (
            not self._is_token_route(rec.path)
            and request.headers.get("Authorization") != f"Bot {self.world.token}"
        ):
            raise RestError(401, 0, "401: Unauthorized")
        for method, pattern, handler in self._route_table:
            if method != rec.method:
                continue
            match = pattern.fullmatch(rec.path)
            if match is not None:
                return await handler(rec, match)
        self.unknown_routes.append(rec)
        return json_response({"message": "Unknown route (fake)", "code": 0}, 404)

    async def handle_cdn(self, request: web.Request) -> web.StreamResponse:
        """Attachment downloads."""
        self.cdn_requests.append(str(request.rel_url))
        stored = self.world.files.get(int(request.match_info["att_id"]))
        if stored is None or stored.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=stored.data, content_type=stored.content_type or "application/octet-stream")

    async def _no_content_route(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return no_content()

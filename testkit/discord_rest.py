"""REST plumbing of the fake Discord: recording, failure injection, auth, routing; user, app and command routes."""

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

from .discord_gateway import GatewayMixin
from .discord_model import JSON, RestError, UploadedFile, form_error

COMMAND_NAME = re.compile(r"[-_\w]{1,32}")


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


class RestMixin(GatewayMixin):
    """Request plumbing plus user, application and command routes."""

    def __init__(
        self, *, message_content_intent: bool, bot_user_id: int, application_id: int, token: str
    ) -> None:
        super().__init__(
            message_content_intent=message_content_intent,
            bot_user_id=bot_user_id,
            application_id=application_id,
            token=token,
        )
        self.requests: list[RecordedRequest] = []
        self.unknown_routes: list[RecordedRequest] = []
        self.fake_errors: list[str] = []  # exceptions inside the fake's own handlers (a bug or odd payload)
        self.cdn_requests: list[str] = []
        self.synced_commands: JSON = {"global": [], "guilds": {}}
        self.sync_count = 0
        self._command_ids: dict[tuple[int | None, str, int], int] = {}
        self._fail_rules: list[FailRule] = []
        self._route_table: list[tuple[str, re.Pattern[str], Handler]] = []
        for method, pattern, handler in self._routes():
            self._route_table.append((method, re.compile(pattern), handler))

    def _routes(self) -> list[tuple[str, str, Handler]]:
        app = r"/applications/(?P<app>\d+)"
        return [
            ("GET", r"/users/@me", self._get_me),
            ("GET", r"/users/(?P<uid>\d+)", self._get_user),
            ("POST", r"/users/@me/channels", self._create_dm),
            ("GET", r"/users/@me/guilds", self._my_guilds),
            ("GET", r"/oauth2/applications/@me", self._app_info),
            ("GET", r"/applications/@me", self._app_info),
            ("GET", r"/gateway", self._get_gateway),
            ("GET", r"/gateway/bot", self._get_gateway),
            ("GET", app + r"/commands", self._get_commands),
            ("PUT", app + r"/commands", self._put_commands),
            ("POST", app + r"/commands", self._post_command),
            ("GET", app + r"/guilds/(?P<gid>\d+)/commands", self._get_commands),
            ("PUT", app + r"/guilds/(?P<gid>\d+)/commands", self._put_commands),
            ("POST", app + r"/guilds/(?P<gid>\d+)/commands", self._post_command),
        ]

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
        for rule in self._fail_rules:
            if rule.times > 0 and rule.method in (method, "*") and rule.pattern.search(path):
                rule.times -= 1
                return json_response(rule.body, rule.status, rule.headers)
        return None

    async def _rest_entry(self, request: web.Request) -> web.StreamResponse:
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
        if not self._is_token_route(rec.path) and request.headers.get("Authorization") != f"Bot {self.token}":
            raise RestError(401, 0, "401: Unauthorized")
        for method, pattern, handler in self._route_table:
            if method != rec.method:
                continue
            match = pattern.fullmatch(rec.path)
            if match is not None:
                return await handler(rec, match)
        self.unknown_routes.append(rec)
        return json_response({"message": "Unknown route (fake)", "code": 0}, 404)

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        self.cdn_requests.append(str(request.rel_url))
        stored = self.files.get(int(request.match_info["att_id"]))
        if stored is None or stored.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=stored.data, content_type=stored.content_type or "application/octet-stream")

    async def _no_content_route(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return no_content()

    async def _get_me(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        me = self.user_payload(self.bot_user_id)
        me.update(verified=True, mfa_enabled=False, email=None, locale="en-US", premium_type=0)
        return json_response(me)

    async def _get_user(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        uid = int(m["uid"])
        if uid not in self.users:
            raise RestError(404, 10013, "Unknown User")
        return json_response(self.user_payload(uid))

    async def _create_dm(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        uid = int((rec.json or {}).get("recipient_id", 0))
        if uid not in self.users or uid == self.bot_user_id:
            raise RestError(400, 50033, "Invalid Recipient(s)")
        return json_response(self.channel_payload(self.dm_channel(uid)))

    async def _my_guilds(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        out = []
        for g in self.guilds.values():
            if g.bot_joined:
                perms = str(self.member_permissions(g.id, self.bot_user_id))
                out.append(
                    {"id": str(g.id), "name": g.name, "icon": None, "owner": False, "permissions": perms}
                )
        return json_response(out)

    def app_info_payload(self) -> JSON:
        """GET /oauth2/applications/@me."""
        return {
            "id": str(self.application_id),
            "name": self.users[self.bot_user_id]["username"],
            "icon": None,
            "description": "fake application",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": self.user_payload(self.app_owner_id),
            "team": None,
            "flags": self._application_flags(),
            "bot": self.user_payload(self.bot_user_id),
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "approximate_guild_count": sum(1 for g in self.guilds.values() if g.bot_joined),
            "tags": [],
            "integration_types_config": {"0": {}},
        }

    async def _app_info(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return json_response(self.app_info_payload())

    async def _get_gateway(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return json_response(
            {"url": f"ws://127.0.0.1:{self.port}/gateway", "shards": 1, "session_start_limit": limit}
        )

    def _check_app(self, m: re.Match[str]) -> int | None:
        if int(m["app"]) != self.application_id:
            raise RestError(404, 10002, "Unknown Application")
        gid = m.groupdict().get("gid")
        if gid is not None and int(gid) not in self.guilds:
            raise RestError(404, 10004, "Unknown Guild")
        return int(gid) if gid is not None else None

    def _validate_options(self, options: list[JSON], where: str) -> None:
        if len(options) > 25:
            raise form_error(f"{where}.options", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        seen_optional = False
        names: set[str] = set()
        for i, opt in enumerate(options):
            name = str(opt.get("name", ""))
            if not COMMAND_NAME.fullmatch(name) or name != name.lower() or name in names:
                raise form_error(
                    f"{where}.options.{i}.name", "APPLICATION_COMMAND_INVALID_NAME", f"Bad name {name!r}"
                )
            names.add(name)
            if not 1 <= len(str(opt.get("description", ""))) <= 100:
                raise form_error(
                    f"{where}.options.{i}.description", "BASE_TYPE_BAD_LENGTH", "Must be 1-100 long."
                )
            if len(opt.get("choices") or []) > 25:
                raise form_error(
                    f"{where}.options.{i}.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer."
                )
            if opt.get("type") in (1, 2):
                self._validate_options(opt.get("options") or [], f"{where}.options.{i}")
                continue
            if opt.get("required"):
                if seen_optional:
                    raise form_error(
                        f"{where}.options.{i}",
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required after optional",
                    )
            else:
                seen_optional = True

    def _normalise_command(self, cmd: JSON, guild_id: int | None, index: int) -> JSON:
        ctype = int(cmd.get("type", 1))
        name = str(cmd.get("name", ""))
        if ctype == 1:
            if not COMMAND_NAME.fullmatch(name) or name != name.lower():
                raise form_error(
                    f"{index}.name", "APPLICATION_COMMAND_INVALID_NAME", f"Bad command name {name!r}"
                )
            if not 1 <= len(str(cmd.get("description", ""))) <= 100:
                raise form_error(
                    f"{index}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
                )
            self._validate_options(cmd.get("options") or [], str(index))
        elif not 1 <= len(name) <= 32:
            raise form_error(f"{index}.name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
        key = (guild_id, name, ctype)
        if key not in self._command_ids:
            self._command_ids[key] = self.snowflakes.next()
        out: JSON = {
            "id": str(self._command_ids[key]),
            "application_id": str(self.application_id),
            "version": str(self.snowflakes.next()),
            "type": ctype,
            "name": name,
            "description": cmd.get("description") or "",
            "options": cmd.get("options") or [],
            "default_member_permissions": cmd.get("default_member_permissions"),
            "dm_permission": cmd.get("dm_permission", True),
            "nsfw": bool(cmd.get("nsfw", False)),
            "contexts": cmd.get("contexts"),
            "integration_types": cmd.get("integration_types") or [0],
            "name_localizations": cmd.get("name_localizations"),
            "description_localizations": cmd.get("description_localizations"),
        }
        if guild_id is not None:
            out["guild_id"] = str(guild_id)
        return out

    def _commands_for(self, guild_id: int | None) -> list[JSON]:
        if guild_id is None:
            commands: list[JSON] = self.synced_commands["global"]
            return commands
        guild_commands: list[JSON] = self.synced_commands["guilds"].setdefault(guild_id, [])
        return guild_commands

    async def _get_commands(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return json_response(self._commands_for(self._check_app(m)))

    async def _put_commands(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        guild_id = self._check_app(m)
        payload = rec.json or []
        out = [self._normalise_command(c, guild_id, i) for i, c in enumerate(payload)]
        seen: set[tuple[str, int]] = set()
        for c in out:
            if (c["name"], c["type"]) in seen:
                raise form_error(
                    "_errors", "APPLICATION_COMMANDS_DUPLICATE_NAME", f"Duplicate name {c['name']}"
                )
            seen.add((c["name"], c["type"]))
        if sum(1 for c in out if c["type"] == 1) > 100 or any(
            sum(1 for c in out if c["type"] == t) > 5 for t in (2, 3)
        ):
            raise form_error("_errors", "BASE_TYPE_MAX_LENGTH", "Too many application commands")
        if guild_id is None:
            self.synced_commands["global"] = out
        else:
            self.synced_commands["guilds"][guild_id] = out
        self.sync_count += 1
        return json_response(out)

    async def _post_command(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        guild_id = self._check_app(m)
        cmd = self._normalise_command(rec.json or {}, guild_id, 0)
        commands = [
            c for c in self._commands_for(guild_id) if (c["name"], c["type"]) != (cmd["name"], cmd["type"])
        ]
        commands.append(cmd)
        if guild_id is None:
            self.synced_commands["global"] = commands
        else:
            self.synced_commands["guilds"][guild_id] = commands
        return json_response(cmd, 201)

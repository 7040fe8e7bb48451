"""Users, the application and its slash commands in the fake Discord (REST routes)."""

from __future__ import annotations

import re

from aiohttp import web

from .model import JSON, RestError, form_error
from .rest import Handler, RecordedRequest, json_response
from .world import DiscordWorld

COMMAND_NAME = re.compile(r"[-_\w]{1,32}")
# The locales Discord accepts as keys of name_localizations / description_localizations.
DISCORD_LOCALES = frozenset(
    "id da de en-GB en-US es-ES es-419 fr hr it lt hu nl no pl pt-BR ro fi sv-SE vi tr cs el bg ru uk hi th "
    "zh-CN ja zh-TW ko".split()
)


def validate_localizations(item: JSON, where: str, *, slash_name: bool, name_max: int = 32) -> None:
    """Discord's rules for localised names (like the name: lowercase for slash commands, 1-100 for a choice)
    and descriptions (1-100)."""
    for field, low, high in (("name_localizations", 1, name_max), ("description_localizations", 1, 100)):
        for locale, text in (item.get(field) or {}).items():
            if locale not in DISCORD_LOCALES:
                raise form_error(f"{where}.{field}", "LOCALE_INVALID", f"Invalid locale {locale!r}")
            text = str(text)
            bad_name = (
                field == "name_localizations"
                and slash_name
                and (not COMMAND_NAME.fullmatch(text) or text != text.lower())
            )
            if bad_name or not low <= len(text) <= high:
                raise form_error(
                    f"{where}.{field}.{locale}", "APPLICATION_COMMAND_INVALID_NAME", f"Bad text {text!r}"
                )


class Application:
    """GET users/@me, the application info, the gateway URL and the application's commands (synced schema)."""

    def __init__(self, world: DiscordWorld) -> None:
        self.world = world
        self.synced_commands: JSON = {"global": [], "guilds": {}}
        self.sync_count = 0
        self._command_ids: dict[tuple[int | None, str, int], int] = {}

    def routes(self) -> list[tuple[str, str, Handler]]:
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

    async def _get_me(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        me = self.world.user_payload(self.world.bot_user_id)
        me.update(verified=True, mfa_enabled=False, email=None, locale="en-US", premium_type=0)
        return json_response(me)

    async def _get_user(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        uid = int(m["uid"])
        if uid not in self.world.users:
            raise RestError(404, 10013, "Unknown User")
        return json_response(self.world.user_payload(uid))

    async def _create_dm(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        uid = int((rec.json or {}).get("recipient_id", 0))
        if uid not in self.world.users or uid == self.world.bot_user_id:
            raise RestError(400, 50033, "Invalid Recipient(s)")
        return json_response(self.world.channel_payload(self.world.dm_channel(uid)))

    async def _my_guilds(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        out = []
        for g in self.world.guilds.values():
            if g.bot_joined:
                perms = str(self.world.member_permissions(g.id, self.world.bot_user_id))
                out.append(
                    {"id": str(g.id), "name": g.name, "icon": None, "owner": False, "permissions": perms}
                )
        return json_response(out)

    def app_info_payload(self) -> JSON:
        """GET /oauth2/applications/@me."""
        return {
            "id": str(self.world.application_id),
            "name": self.world.users[self.world.bot_user_id]["username"],
            "icon": None,
            "description": "fake application",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": self.world.user_payload(self.world.app_owner_id),
            "team": None,
            "flags": self.world.application_flags(),
            "bot": self.world.user_payload(self.world.bot_user_id),
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "approximate_guild_count": sum(1 for g in self.world.guilds.values() if g.bot_joined),
            "tags": [],
            "integration_types_config": {"0": {}},
        }

    async def _app_info(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return json_response(self.app_info_payload())

    async def _get_gateway(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return json_response(
            {
                "url": f"ws://127.0.0.1:{self.world.port}/gateway",
                "shards": self.world.shard_count,
                "session_start_limit": limit,
            }
        )

    def _check_app(self, m: re.Match[str]) -> int | None:
        if int(m["app"]) != self.world.application_id:
            raise RestError(404, 10002, "Unknown Application")
        gid = m.groupdict().get("gid")
        if gid is not None and int(gid) not in self.world.guilds:
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
            validate_localizations(opt, f"{where}.options.{i}", slash_name=True)
            for j, choice in enumerate(opt.get("choices") or []):
                validate_localizations(
                    choice, f"{where}.options.{i}.choices.{j}", slash_name=False, name_max=100
                )
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
        validate_localizations(cmd, str(index), slash_name=ctype == 1)
        if ctype != 1 and not 1 <= len(name) <= 32:
            raise form_error(f"{index}.name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
        key = (guild_id, name, ctype)
        if key not in self._command_ids:
            self._command_ids[key] = self.world.snowflakes.next()
        out: JSON = {
            "id": str(self._command_ids[key]),
            "application_id": str(self.world.application_id),
            "version": str(self.world.snowflakes.next()),
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

"""Interactions in the fake Discord: FakeInteraction, building INTERACTION_CREATE from the synced schema, callbacks."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .application import Application
from .gateway import Gateway
from .model import FLAG_EPHEMERAL, FLAG_LOADING, JSON, THREAD_TYPES, UploadedFile
from .world import DiscordWorld

OPTION_TYPE_NAMES = {
    1: "SUB_COMMAND",
    2: "SUB_COMMAND_GROUP",
    3: "STRING",
    4: "INTEGER",
    5: "BOOLEAN",
    6: "USER",
    7: "CHANNEL",
    8: "ROLE",
    9: "MENTIONABLE",
    10: "NUMBER",
    11: "ATTACHMENT",
}
SELECT_TYPES = frozenset({3, 5, 6, 7, 8})
# Callback types allowed per interaction type (1 ping, 2 command, 3 component, 4 autocomplete, 5 modal submit).
ALLOWED_CALLBACKS = {1: {1}, 2: {4, 5, 9, 12}, 3: {4, 5, 6, 7, 9, 12}, 4: {8}, 5: {4, 5, 6, 7}}


def message_text(msg: JSON) -> str:
    """Content + embed texts + components-v2 text displays of a message."""
    parts = [str(msg.get("content") or "")]
    for embed in msg.get("embeds") or []:
        parts += [embed.get("title") or "", embed.get("description") or ""]
        for f in embed.get("fields") or []:
            parts += [f.get("name") or "", f.get("value") or ""]
        parts.append((embed.get("footer") or {}).get("text") or "")
    for comp in walk_components(msg.get("components") or []):
        if comp.get("type") == 10:
            parts.append(str(comp.get("content") or ""))
    return "\n".join(p for p in parts if p)


def walk_components(components: list[JSON]) -> Iterator[JSON]:
    """Every component, depth first (rows, containers, sections, accessories, labels)."""
    for comp in components:
        yield comp
        yield from walk_components(comp.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(comp.get(key), dict):
                yield from walk_components([comp[key]])


@dataclass(eq=False)
class FakeInteraction:
    """One interaction sent to the bot and everything the bot answered to it."""

    id: int
    token: str
    type: int
    name: str
    guild_id: int | None
    channel_id: int
    user_id: int
    payload: JSON
    created: float
    responses: list[JSON] = field(default_factory=list)
    original: JSON | None = None
    followups: list[JSON] = field(default_factory=list)
    callback_type: int | None = None
    modal: JSON | None = None
    autocomplete_choices: list[JSON] | None = None
    source_message_id: int | None = None
    diagnostics: Callable[[], str] = field(default=lambda: "", repr=False)
    _last_activity: float = 0.0

    def record(self, kind: str, body: Any, files: list[UploadedFile], **extra: Any) -> None:
        """Append a response entry."""
        now = time.monotonic()
        self._last_activity = now
        self.responses.append({"kind": kind, "json": body, "files": files, "time": now, **extra})

    @property
    def acknowledged(self) -> bool:
        """An initial callback was accepted."""
        return self.callback_type is not None

    @property
    def deferred(self) -> bool:
        """The initial callback was a defer (type 5 or 6)."""
        return self.callback_type in (5, 6)

    @property
    def ephemeral(self) -> bool:
        """The initial callback carried flags 64."""
        for r in self.responses:
            if r["kind"] == "callback":
                data = (r["json"] or {}).get("data") or {}
                return bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)
        return False

    @property
    def loading(self) -> bool:
        """Deferred with a 'thinking...' message that was not edited yet."""
        return self.original is not None and bool(int(self.original.get("flags", 0)) & FLAG_LOADING)

    def all_text(self) -> str:
        """Final original text + followup texts (contents, embeds, v2 text displays)."""
        parts = [message_text(self.original)] if self.original is not None else []
        parts += [message_text(f) for f in self.followups]
        return "\n".join(p for p in parts if p)

    def edits(self) -> list[JSON]:
        """The edit_original entries (json body, files, time), in order."""
        return [r for r in self.responses if r["kind"] == "edit_original"]

    def describe(self) -> str:
        """Human-readable state for assertion messages."""
        kinds = [(r["kind"], r.get("type")) for r in self.responses]
        return (
            f"interaction {self.name!r} (type {self.type}, id {self.id}): callback={self.callback_type} "
            f"loading={self.loading} responses={kinds} text={self.all_text()[:300]!r}{self.diagnostics()}"
        )

    async def wait_for(
        self,
        predicate: Callable[[FakeInteraction], bool],
        timeout: float = 10,  # noqa: ASYNC109
    ) -> FakeInteraction:
        """Poll until ``predicate(self)``; AssertionError on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting on {self.describe()}")
            await asyncio.sleep(0.005)
        return self

    @property
    def between_messages(self) -> bool:
        """Deferred with 'thinking...', whose thinking message was deleted with nothing sent yet: what a bot
        shows just before a private followup (a refusal only its user sees) replaces the public message."""
        return self.callback_type == 5 and self.original is None and not self.followups

    async def wait_done(self, timeout: float = 10, *, settle: float = 0.05) -> FakeInteraction:  # noqa: ASYNC109
        """Until acknowledged, not 'thinking' any more, not between a deleted thinking message and its
        followup, and quiet for ``settle`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            quiet = time.monotonic() - self._last_activity >= settle
            if self.acknowledged and not self.loading and not self.between_messages and quiet:
                return self
            if loop.time() > deadline:
                raise AssertionError(f"not done after {timeout}s: {self.describe()}")
            await asyncio.sleep(min(0.01, max(settle / 2, 0.001)))


class InteractionSender:
    """Interactions sent to the bot: slash commands, context menus, components, modals, autocomplete."""

    def __init__(
        self,
        world: DiscordWorld,
        gateway: Gateway,
        application: Application,
        *,
        diagnostics: Callable[[], str],
    ) -> None:
        self.world = world
        self.gateway = gateway
        self.application = application
        self.diagnostics = diagnostics
        self.interactions: dict[int, FakeInteraction] = {}
        self.by_token: dict[str, FakeInteraction] = {}
        self.interaction_deadline = 3.0
        self.token_lifetime = 900.0

    def _new_interaction(
        self,
        itype: int,
        name: str,
        data: JSON,
        *,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
        permissions: int | None,
        locale: str = "en-US",
        message: JSON | None = None,
    ) -> FakeInteraction:
        if not self.gateway.sessions_for("INTERACTION_CREATE", {"guild_id": guild_id}):
            raise AssertionError(
                "the bot has not connected to the fake gateway yet"
                + (f" (no session of guild {guild_id}'s shard)" if self.gateway.sessions else "")
            )
        channel = self.world.channel(channel_id)
        if channel.guild_id != guild_id:
            raise AssertionError(f"channel {channel_id} is not in guild {guild_id}")
        iid = self.world.snowflakes.next()
        token = f"aW50ZXJhY3Rpb24.{iid}.{secrets.token_urlsafe(32)}"
        payload: JSON = {
            "id": str(iid),
            "application_id": str(self.world.application_id),
            "type": itype,
            "token": token,
            "version": 1,
            "data": data,
            "channel_id": str(channel_id),
            "app_permissions": str(self.world.bot_permissions_in(channel_id)),
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": self.world.upload_limit,
        }
        if guild_id is not None:
            perms = (
                permissions if permissions is not None else self.world.member_permissions(guild_id, user_id)
            )
            member = self.world.member_payload(guild_id, user_id)
            member["permissions"] = str(perms)
            guild = self.world.guild(guild_id)
            payload.update(
                guild_id=str(guild_id),
                guild_locale=guild.locale,
                guild={"id": str(guild_id), "locale": guild.locale, "features": []},
                member=member,
                authorizing_integration_owners={"0": str(guild_id)},
                context=0,
                channel={**self.world.channel_payload(channel_id), "permissions": str(perms)},
            )
        else:
            payload.update(
                user=self.world.user_payload(user_id),
                authorizing_integration_owners={"0": str(user_id)},
                context=1,
                channel=self.world.channel_payload(channel_id),
            )
        if message is not None:
            payload["message"] = message
        fi = FakeInteraction(
            id=iid,
            token=token,
            type=itype,
            name=name,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            payload=payload,
            created=time.monotonic(),
            diagnostics=self.diagnostics,
        )
        if message is not None:
            fi.source_message_id = int(message["id"])
        self.interactions[iid] = fi
        self.by_token[token] = fi
        return fi

    def _find_command(self, name: str, guild_id: int | None, ctype: int) -> tuple[JSON, bool]:
        local = self.application.synced_commands["guilds"].get(guild_id, []) if guild_id is not None else []
        for cmd in local:
            if cmd["name"] == name and int(cmd.get("type", 1)) == ctype:
                return cmd, True
        for cmd in self.application.synced_commands["global"]:
            if cmd["name"] == name and int(cmd.get("type", 1)) == ctype:
                return cmd, False
        known = sorted(
            {
                c["name"]
                for c in [*local, *self.application.synced_commands["global"]]
                if int(c.get("type", 1)) == ctype
            }
        )
        raise AssertionError(
            f"no synced command {name!r} of type {ctype} (synced: {known}); did the bot sync its tree?"
        )

    def _resolve_value(
        self, opt: JSON, value: object, path: str, guild_id: int | None, resolved: JSON
    ) -> object:
        otype = int(opt["type"])
        where = f"option {opt['name']!r} of /{path} ({OPTION_TYPE_NAMES.get(otype, otype)})"
        if otype == 3:
            if not isinstance(value, str):
                raise AssertionError(f"{where} needs a str, got {value!r}")
            if not int(opt.get("min_length", 0)) <= len(value) <= int(opt.get("max_length", 6000)):
                raise AssertionError(f"{where}: length {len(value)} outside min_length/max_length")
        elif otype == 4:
            if not isinstance(value, int) or isinstance(value, bool):
                raise AssertionError(f"{where} needs an int, got {value!r}")
        elif otype == 5:
            if not isinstance(value, bool):
                raise AssertionError(f"{where} needs a bool, got {value!r}")
        elif otype == 10:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise AssertionError(f"{where} needs a number, got {value!r}")
            value = float(value)
        elif otype == 11:
            if not isinstance(value, dict) or "id" not in value or "url" not in value:
                raise AssertionError(f"{where} needs an attachment dict from add_attachment(), got {value!r}")
            resolved.setdefault("attachments", {})[str(value["id"])] = value
            return str(value["id"])
        elif otype in (6, 7, 8, 9):
            if not isinstance(value, int) or isinstance(value, bool):
                raise AssertionError(f"{where} needs an int id, got {value!r}")
            self._resolve_id(otype, value, where, guild_id, resolved, opt)
            return str(value)
        else:
            raise AssertionError(f"{where}: unsupported option type")
        if otype in (4, 10):
            low, high = opt.get("min_value"), opt.get("max_value")
            if (low is not None and value < low) or (high is not None and value > high):
                raise AssertionError(f"{where}: {value!r} outside [{low}, {high}]")
        choices = opt.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise AssertionError(
                f"{where}: {value!r} is not one of the choices {[c['value'] for c in choices]}"
            )
        return value

    def _resolve_id(
        self, otype: int, value: int, where: str, guild_id: int | None, resolved: JSON, opt: JSON
    ) -> None:
        guild = self.world.guilds.get(guild_id) if guild_id is not None else None
        if otype in (6, 9) and value in self.world.users:
            resolved.setdefault("users", {})[str(value)] = self.world.user_payload(value)
            if guild is not None and value in guild.members:
                member = self.world.member_payload(guild.id, value, with_user=False)
                member["permissions"] = str(self.world.member_permissions(guild.id, value))
                resolved.setdefault("members", {})[str(value)] = member
            return
        if otype in (8, 9) and guild is not None and value in guild.roles:
            resolved.setdefault("roles", {})[str(value)] = dict(guild.roles[value])
            return
        if otype == 7 and value in self.world.channels:
            channel = self.world.channels[value]
            types = opt.get("channel_types")
            if types and channel.type not in types:
                raise AssertionError(f"{where}: channel type {channel.type} not in channel_types {types}")
            payload = self.world.channel_payload(value)
            perms = (
                self.world.member_permissions(guild.id, self.world.bot_user_id) if guild is not None else 0
            )
            payload["permissions"] = str(perms)
            if channel.type not in THREAD_TYPES:
                payload.pop("thread_metadata", None)
            resolved.setdefault("channels", {})[str(value)] = payload
            return
        raise AssertionError(f"{where}: unknown id {value}")

    def _build_options(
        self,
        schema: list[JSON],
        given: Mapping[str, object],
        path: str,
        guild_id: int | None,
        resolved: JSON,
        focused: str | None,
    ) -> list[JSON]:
        by_name = {o["name"]: o for o in schema}
        for key in given:
            if key not in by_name:
                raise AssertionError(f"/{path} has no option {key!r}; options are {sorted(by_name)}")
        out: list[JSON] = []
        for opt in schema:
            name = opt["name"]
            if name not in given:
                if opt.get("required") and focused is None:
                    raise AssertionError(f"/{path}: required option {name!r} missing")
                continue
            if name == focused:
                out.append({"name": name, "type": opt["type"], "value": given[name], "focused": True})
                continue
            value = self._resolve_value(opt, given[name], path, guild_id, resolved)
            out.append({"name": name, "type": opt["type"], "value": value})
        return out

    def _command_data(
        self,
        name: str,
        options: Mapping[str, object] | None,
        guild_id: int | None,
        subcommand: str | None,
        group: str | None,
        focused: str | None,
    ) -> tuple[JSON, str]:
        parts = name.split()
        if group is not None:
            parts.append(group)
        if subcommand is not None:
            parts.append(subcommand)
        cmd, is_guild = self._find_command(parts[0], guild_id, 1)
        schema: list[JSON] = cmd.get("options") or []
        chain: list[JSON] = []
        for seg in parts[1:]:
            node = next((o for o in schema if o["name"] == seg and o["type"] in (1, 2)), None)
            if node is None:
                subs = [o["name"] for o in schema if o["type"] in (1, 2)]
                raise AssertionError(f"/{' '.join(parts)}: no subcommand or group {seg!r}; available: {subs}")
            chain.append(node)
            schema = node.get("options") or []
        if any(o["type"] in (1, 2) for o in schema):
            subs = [o["name"] for o in schema if o["type"] in (1, 2)]
            raise AssertionError(f"/{' '.join(parts)} needs a subcommand: one of {subs}")
        path = " ".join(parts)
        resolved: JSON = {}
        leaf = self._build_options(schema, dict(options or {}), path, guild_id, resolved, focused)
        for node in reversed(chain):
            leaf = [{"name": node["name"], "type": node["type"], "options": leaf}]
        data: JSON = {"id": cmd["id"], "name": cmd["name"], "type": 1, "options": leaf}
        if resolved:
            data["resolved"] = resolved
        if is_guild:
            data["guild_id"] = str(guild_id)
        return data, path

    async def _send(self, fi: FakeInteraction) -> FakeInteraction:
        await self.gateway.dispatch("INTERACTION_CREATE", fi.payload)
        return fi

    async def invoke(
        self,
        name: str,
        options: Mapping[str, object] | None = None,
        *,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
        subcommand: str | None = None,
        group: str | None = None,
        permissions: int | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """A slash command (type 2) built from the synced schema; ``name`` may be "cmd sub" / "cmd group sub"."""
        data, path = self._command_data(name, options, guild_id, subcommand, group, None)
        fi = self._new_interaction(
            2,
            path,
            data,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            permissions=permissions,
            locale=locale,
        )
        return await self._send(fi)

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, object],
        *,
        focused: str,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
        subcommand: str | None = None,
        group: str | None = None,
    ) -> FakeInteraction:
        """An autocomplete interaction (type 4); the choices land in ``autocomplete_choices``."""
        data, path = self._command_data(name, options, guild_id, subcommand, group, focused)
        fi = self._new_interaction(
            4, path, data, guild_id=guild_id, channel_id=channel_id, user_id=user_id, permissions=None
        )
        return await self._send(fi)

    async def invoke_context_menu(
        self,
        name: str,
        *,
        target_message_id: int,
        guild_id: int | None = None,
        channel_id: int | None = None,
        user_id: int,
        permissions: int | None = None,
    ) -> FakeInteraction:
        """A message context-menu command (type 3) on a stored message (full content, as Discord does)."""
        target = self.world.message_index.get(target_message_id)
        if target is None:
            raise AssertionError(f"unknown target message {target_message_id}")
        channel_id = channel_id if channel_id is not None else int(target["channel_id"])
        guild_id = guild_id if guild_id is not None else self.world.channel(channel_id).guild_id
        cmd, is_guild = self._find_command(name, guild_id, 3)
        data: JSON = {
            "id": cmd["id"],
            "name": cmd["name"],
            "type": 3,
            "target_id": str(target_message_id),
            "resolved": {"messages": {str(target_message_id): target}},
        }
        if is_guild:
            data["guild_id"] = str(guild_id)
        fi = self._new_interaction(
            2, name, data, guild_id=guild_id, channel_id=channel_id, user_id=user_id, permissions=permissions
        )
        return await self._send(fi)

    async def invoke_user_context_menu(
        self, name: str, *, target_user_id: int, guild_id: int | None, channel_id: int, user_id: int
    ) -> FakeInteraction:
        """A user context-menu command (type 2 command)."""
        cmd, is_guild = self._find_command(name, guild_id, 2)
        resolved: JSON = {}
        self._resolve_id(6, target_user_id, f"target of {name!r}", guild_id, resolved, {})
        data: JSON = {
            "id": cmd["id"],
            "name": cmd["name"],
            "type": 2,
            "target_id": str(target_user_id),
            "resolved": resolved,
        }
        if is_guild:
            data["guild_id"] = str(guild_id)
        fi = self._new_interaction(
            2, name, data, guild_id=guild_id, channel_id=channel_id, user_id=user_id, permissions=None
        )
        return await self._send(fi)

    async def click(
        self,
        message_id: int,
        custom_id: int | str,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        user_id: int,
        permissions: int | None = None,
        values: list[str] | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """A component interaction (type 3) from a client in ``locale``; ``custom_id`` may be an int index
        among interactive components."""
        msg = self.world.message_index.get(message_id)
        if msg is None:
            raise AssertionError(f"unknown message {message_id}")
        interactive = [
            c
            for c in walk_components(msg.get("components") or [])
            if c.get("custom_id") and (c["type"] in SELECT_TYPES or c["type"] == 2)
        ]
        if isinstance(custom_id, int):
            if not 0 <= custom_id < len(interactive):
                raise AssertionError(f"message {message_id} has {len(interactive)} interactive components")
            comp = interactive[custom_id]
        else:
            found = next((c for c in interactive if c["custom_id"] == custom_id), None)
            if found is None:
                raise AssertionError(
                    f"no component {custom_id!r} on message {message_id}: {[c['custom_id'] for c in interactive]}"
                )
            comp = found
        if comp.get("disabled"):
            raise AssertionError(f"component {comp['custom_id']!r} is disabled")
        channel_id = channel_id if channel_id is not None else int(msg["channel_id"])
        guild_id = guild_id if guild_id is not None else self.world.channel(channel_id).guild_id
        data: JSON = {"custom_id": comp["custom_id"], "component_type": comp["type"]}
        if comp["type"] in SELECT_TYPES:
            data["values"] = self._select_values(comp, values or [], guild_id, data)
        elif values is not None:
            raise AssertionError("values= is only for select menus")
        fi = self._new_interaction(
            3,
            str(comp["custom_id"]),
            data,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            permissions=permissions,
            locale=locale,
            message=msg,
        )
        return await self._send(fi)

    def _select_values(self, comp: JSON, values: list[str], guild_id: int | None, data: JSON) -> list[str]:
        low, high = int(comp.get("min_values", 1)), int(comp.get("max_values", 1))
        if not low <= len(values) <= high:
            raise AssertionError(f"select {comp['custom_id']!r} takes {low}..{high} values, got {values!r}")
        if comp["type"] == 3:
            allowed = [o["value"] for o in comp.get("options") or []]
            bad = [v for v in values if v not in allowed]
            if bad:
                raise AssertionError(f"select {comp['custom_id']!r}: {bad} not among options {allowed}")
            return values
        resolved: JSON = {}
        kind = {5: 6, 6: 8, 7: 7, 8: 9}[comp["type"]]
        for v in values:
            self._resolve_id(kind, int(v), f"select {comp['custom_id']!r}", guild_id, resolved, comp)
        data["resolved"] = resolved
        return [str(v) for v in values]

    async def submit_modal(
        self, interaction: FakeInteraction, values: dict[str, Any], *, user_id: int | None = None
    ) -> FakeInteraction:
        """Submit the modal the bot opened on ``interaction`` (type 5); ``values`` by the inputs' custom_id."""
        modal = interaction.modal
        if modal is None:
            raise AssertionError(f"the bot opened no modal on {interaction.describe()}")
        used: set[str] = set()

        def build(components: list[JSON]) -> list[JSON]:
            out: list[JSON] = []
            for c in components:
                if c["type"] == 1:
                    out.append({"type": 1, "components": build(c.get("components") or [])})
                elif c["type"] == 18:
                    out.append({"type": 18, "id": c.get("id"), "component": build([c["component"]])[0]})
                elif c["type"] == 4:
                    cid = c["custom_id"]
                    used.add(cid)
                    value = str(values.get(cid, c.get("value") or ""))
                    if c.get("required", True) and not value:
                        raise AssertionError(f"modal input {cid!r} is required")
                    if not int(c.get("min_length", 0)) <= len(value) <= int(c.get("max_length", 4000)):
                        raise AssertionError(f"modal input {cid!r}: length {len(value)} out of bounds")
                    out.append({"type": 4, "custom_id": cid, "value": value})
                elif c["type"] in SELECT_TYPES:
                    used.add(c["custom_id"])
                    out.append(
                        {
                            "type": c["type"],
                            "custom_id": c["custom_id"],
                            "values": list(values.get(c["custom_id"], [])),
                        }
                    )
                else:
                    out.append({"type": c["type"], "id": c.get("id")})
            return out

        components = build(modal.get("components") or [])
        unknown = set(values) - used
        if unknown:
            raise AssertionError(f"modal {modal.get('custom_id')!r} has no inputs {sorted(unknown)}")
        source = self.world.message_index.get(interaction.source_message_id or 0)
        fi = self._new_interaction(
            5,
            str(modal.get("custom_id")),
            {"custom_id": modal.get("custom_id"), "components": components},
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=user_id if user_id is not None else interaction.user_id,
            permissions=None,
            message=source,
        )
        return await self._send(fi)

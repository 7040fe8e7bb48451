"""A fake Discord (REST v10 + gateway + CDN on 127.0.0.1) that the real discord.py 2.7 talks to, and helpers.

Usage::

    fake = FakeDiscord()
    await fake.start()
    guild = fake.add_guild()
    channel = fake.add_channel(guild)
    user = fake.add_member(guild, name="alice")
    bot = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.05)  # small timeout!
    async with running_bot(fake, bot):
        fi = await fake.invoke("ask", {"prompt": "hi"}, guild_id=guild, channel_id=channel, user_id=user)
        await fi.wait_done()
        assert "hello" in fi.all_text()
    await fake.close()

Create the bot with a small ``guild_ready_timeout`` (e.g. 0.05): discord.py waits that long after the last
GUILD_CREATE before ``on_ready``. Ids are time-based snowflakes (``Message.created_at`` and
``history(after=datetime)`` work). One gateway session per shard: an unsharded bot has one; a sharded bot
(or several processes, each with some shards) has one per shard, and each guild's events go only to the
session of its shard, ``(guild_id >> 22) % count``; DMs go to shard 0. ``FakeDiscord(shard_count=2)`` makes
GET /gateway/bot recommend 2 shards and ``add_guild(shard=1)`` place a guild on shard 1;
``required_shard_count`` makes IDENTIFY with another count close with 4011 (an invalid shard: 4010).

Inspection: ``requests`` / ``requests_to()`` (every REST call, with status), ``unknown_routes``, ``fake_errors``
(bugs inside the fake), ``bot_errors`` (ERROR logs of discord.py while ``running_bot`` runs), ``messages_in()``,
``sent_messages()``, ``dms``, ``deleted_message_ids`` (deleted by the bot), ``timeouts``/``kicks``/``bans``,
``typing``, ``left_guilds``, ``synced_commands`` (``{"global": [...], "guilds": {guild_id: [...]}}``),
``interactions``, ``identify_count``/``resume_count``/``gateway_connections``, ``sessions`` (by shard id),
``connected_shards``.

Behaviour worth knowing: events the bot's intents exclude are not sent (GUILD_MESSAGES, DIRECT_MESSAGES, ...);
without the message-content intent, content/embeds/attachments/components arrive empty except in DMs, messages
mentioning the bot and the bot's own; after a deferred reply (type 5) the first followup replaces the
"thinking" message like on Discord; an injected 5xx makes discord.py sleep >= 1 s before retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import re
import traceback
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar

import discord
import yarl
from aiohttp import web
from discord.gateway import DiscordWebSocket
from discord.http import Route

from .application import Application
from .gateway import Gateway, GatewaySession
from .interactions import FakeInteraction, InteractionSender, message_text, walk_components
from .messages import Messages, SentRecord
from .model import (
    INTENT_GUILD_MEMBERS,
    INTENT_GUILDS,
    JSON,
    ChannelRecord,
    GuildRecord,
    MemberRecord,
    SnowflakeFactory,
    StoredFile,
    UploadedFile,
    iso,
    utcnow,
)
from .responses import Responses
from .rest import FailRule, RecordedRequest, RestRouter
from .world import DiscordWorld

T = TypeVar("T")

__all__ = [
    "FakeDiscord",
    "FakeInteraction",
    "GatewaySession",
    "RecordedRequest",
    "UploadedFile",
    "message_text",
    "patched_discord_py",
    "running_bot",
    "walk_components",
]

_DEFAULT_FAIL_BODIES: dict[int, JSON] = {
    401: {"message": "401: Unauthorized", "code": 0},
    403: {"message": "Missing Permissions", "code": 50013},
    404: {"message": "Unknown Message", "code": 10008},
}


class Forwarded(Generic[T]):
    """A FakeDiscord attribute that lives on one of its parts (read and write go to the part)."""

    def __init__(self, part: str) -> None:
        self.part = part
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> T:
        value: T = getattr(getattr(obj, self.part), self.name)
        return value

    def __set__(self, obj: object, value: T) -> None:
        setattr(getattr(obj, self.part), self.name, value)


class FakeDiscord:
    """Fake Discord server; see the module docstring. Public attributes are plain data for assertions.

    Composed of parts that share one ``DiscordWorld``: the gateway, the REST router, and the route
    groups (application, messages, interaction responses) plus the interaction sender. The attributes
    below forward to them so tests read ``fake.requests`` rather than ``fake.rest.requests``.
    """

    DEFAULT_TOKEN = "fake-discord-token"

    # world
    app_owner_id = Forwarded[int]("world")
    application_id = Forwarded[int]("world")
    base_url = Forwarded[str]("world")
    blocked_dm_users = Forwarded[set[int]]("world")
    bot_user_id = Forwarded[int]("world")
    channels = Forwarded[dict[int, ChannelRecord]]("world")
    deleted_message_ids = Forwarded[set[int]]("world")
    dm_channel_of = Forwarded[dict[int, int]]("world")
    files = Forwarded[dict[int, StoredFile]]("world")
    guilds = Forwarded[dict[int, GuildRecord]]("world")
    message_content_intent = Forwarded[bool]("world")
    message_index = Forwarded[dict[int, JSON]]("world")
    port = Forwarded[int]("world")
    shard_count = Forwarded[int]("world")
    snowflakes = Forwarded[SnowflakeFactory]("world")
    token = Forwarded[str]("world")
    upload_limit = Forwarded[int]("world")
    users = Forwarded[dict[int, JSON]]("world")
    # gateway
    connected = Forwarded[bool]("gateway")
    connected_shards = Forwarded[list[int]]("gateway")
    gateway_connections = Forwarded[list[str]]("gateway")
    gateway_received = Forwarded[list[JSON]]("gateway")
    heartbeat_interval_ms = Forwarded[int]("gateway")
    heartbeat_times = Forwarded[list[float]]("gateway")
    identify_count = Forwarded[int]("gateway")
    members_intent = Forwarded[bool]("gateway")
    presences_intent = Forwarded[bool]("gateway")
    resume_count = Forwarded[int]("gateway")
    resume_gate = Forwarded[asyncio.Event | None]("gateway")
    required_shard_count = Forwarded[int | None]("gateway")
    session = Forwarded[GatewaySession | None]("gateway")
    sessions = Forwarded[dict[int, GatewaySession]]("gateway")
    undelivered_events = Forwarded[list[JSON]]("gateway")
    # rest
    cdn_requests = Forwarded[list[str]]("rest")
    fake_errors = Forwarded[list[str]]("rest")
    requests = Forwarded[list[RecordedRequest]]("rest")
    unknown_routes = Forwarded[list[RecordedRequest]]("rest")
    # application
    sync_count = Forwarded[int]("application")
    synced_commands = Forwarded[JSON]("application")
    # messages
    bans = Forwarded[list[JSON]]("messages")
    kicks = Forwarded[list[JSON]]("messages")
    left_guilds = Forwarded[list[int]]("messages")
    sent = Forwarded[list[SentRecord]]("messages")
    timeouts = Forwarded[list[JSON]]("messages")
    typing = Forwarded[list[int]]("messages")
    # sender
    interaction_deadline = Forwarded[float]("sender")
    replay_missed_events = Forwarded[bool]("gateway")
    lost_events = Forwarded[list[JSON]]("gateway")
    interactions = Forwarded[dict[int, FakeInteraction]]("sender")
    token_lifetime = Forwarded[float]("sender")

    def __init__(
        self,
        *,
        message_content_intent: bool = True,
        bot_user_id: int = 1000,
        application_id: int = 1000,
        token: str = DEFAULT_TOKEN,
        interaction_deadline: float | None = None,
        token_lifetime: float = 900.0,
        shard_count: int = 1,
        required_shard_count: int | None = None,
    ) -> None:
        if interaction_deadline is None:
            # Discord's 3 s. A developer machine saturated by other work may stretch it for a local run
            # (TESTKIT_INTERACTION_DEADLINE=30); CI never sets it, so the suite is judged at Discord's value.
            interaction_deadline = float(os.environ.get("TESTKIT_INTERACTION_DEADLINE", "3.0"))
        self.world = DiscordWorld(
            message_content_intent=message_content_intent,
            bot_user_id=bot_user_id,
            application_id=application_id,
            token=token,
        )
        self.world.shard_count = shard_count
        self.gateway = Gateway(self.world)
        self.gateway.required_shard_count = required_shard_count
        self.rest = RestRouter(self.world)
        self.application = Application(self.world)
        self.messages = Messages(self.world, self.gateway)
        self.sender = InteractionSender(
            self.world, self.gateway, self.application, diagnostics=self._diagnostics
        )
        self.responses = Responses(self.world, self.gateway, self.sender, self.messages)
        self.rest.add_routes(self.application.routes())
        self.rest.add_routes(self.messages.routes())
        self.rest.add_routes(self.responses.routes())
        self.sender.interaction_deadline = interaction_deadline
        self.sender.token_lifetime = token_lifetime
        self.add_user = self.world.add_user
        self.guild = self.world.guild
        self.channel = self.world.channel
        self.dm_channel = self.world.dm_channel
        self.member_permissions = self.world.member_permissions
        self.bot_permissions_in = self.world.bot_permissions_in
        self.dispatch = self.gateway.dispatch
        self.queue_event = self.gateway.queue_event
        self.dispatch_message = self.gateway.dispatch_message
        self.wait_ready = self.gateway.wait_ready
        self.wait_until = self.gateway.wait_until
        self.close_gateway = self.gateway.close_gateway
        self.invalidate_session = self.gateway.invalidate_session
        self.request_reconnect = self.gateway.request_reconnect
        self.shard_connected = self.gateway.shard_connected
        self.session_for = self.gateway.session_for
        self.app_info_payload = self.application.app_info_payload
        self.invoke = self.sender.invoke
        self.autocomplete = self.sender.autocomplete
        self.invoke_context_menu = self.sender.invoke_context_menu
        self.invoke_user_context_menu = self.sender.invoke_user_context_menu
        self.click = self.sender.click
        self.submit_modal = self.sender.submit_modal
        self.bot_errors: list[str] = []  # ERROR log records of the ``discord`` logger while running_bot runs
        self._runner: web.AppRunner | None = None

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and serve."""
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_route("*", "/api/v10/{tail:.*}", self.rest.handle)
        app.router.add_get("/gateway", self.gateway.handle_websocket)
        app.router.add_get("/resume-gateway", self.gateway.handle_websocket)
        app.router.add_get("/attachments/{channel}/{att_id:\\d+}/{filename}", self.rest.handle_cdn)
        app.router.add_get("/media/attachments/{channel}/{att_id:\\d+}/{filename}", self.rest.handle_cdn)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.world.port = int(self._runner.addresses[0][1])
        self.world.base_url = f"http://127.0.0.1:{self.world.port}"

    async def close(self) -> None:
        """Close websockets and stop the server."""
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.contextmanager
    def patch_discord_py(self) -> Iterator[None]:
        """Point discord.py's ``Route.BASE`` and ``DEFAULT_GATEWAY`` at this fake; restores them on exit."""
        if not self.world.port:
            raise AssertionError("FakeDiscord.start() first")
        old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        Route.BASE = f"{self.world.base_url}/api/v10"
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{self.world.port}/gateway")
        try:
            yield
        finally:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway

    def _diagnostics(self) -> str:
        out = ""
        if self.rest.fake_errors:
            out += "\nfake Discord internal errors:\n" + "\n".join(self.rest.fake_errors[-2:])
        if self.rest.unknown_routes:
            out += "\nunknown routes: " + ", ".join(f"{r.method} {r.path}" for r in self.rest.unknown_routes)
        if self.bot_errors:
            out += "\nbot errors (discord logger):\n" + "\n".join(self.bot_errors[-3:])
        return out

    # ----------------------------------------------------------------- world building

    def add_guild(
        self, name: str = "Test Guild", *, owner_id: int | None = None, shard: int | None = None
    ) -> int:
        """A guild with @everyone (id == guild id) and the bot as member (managed role with its permissions);
        with ``shard``, its id lands on that shard of ``shard_count``."""
        guild = self.world.build_guild(name, owner_id, shard=shard)
        if owner_id is not None:
            self.world.add_user(owner_id, "owner")
            guild.members[owner_id] = MemberRecord(owner_id, [], iso(utcnow()))
        else:
            self.world.add_user(guild.owner_id, "guild-owner")
        self.gateway.queue_event(
            "GUILD_CREATE", self.world.guild_create_payload(guild.id), intent=INTENT_GUILDS
        )
        return guild.id

    async def join_guild(
        self,
        name: str = "New Server",
        *,
        locale: str = "en-US",
        system_channel: bool = True,
        shard: int | None = None,
    ) -> tuple[int, int]:
        """The bot is added to a new server while connected: Discord sends GUILD_CREATE without `unavailable`
        (discord.py dispatches on_guild_join; `unavailable: false` would mean an outage ended). The server has
        one text channel, `general`, which is its system channel unless `system_channel` is False.
        Returns (guild id, channel id). With ``shard``, the guild lands on that shard of ``shard_count``."""
        guild = self.world.build_guild(name, None, shard=shard)
        self.world.add_user(guild.owner_id, "guild-owner")
        guild.locale = locale
        channel = self.world.build_channel(guild.id, "general", 0, None)
        if system_channel:
            guild.system_channel_id = channel.id
        payload = self.world.guild_create_payload(guild.id)
        payload.pop("unavailable", None)
        await self.gateway.dispatch("GUILD_CREATE", payload, intent=INTENT_GUILDS)
        return guild.id, channel.id

    def add_channel(
        self, guild_id: int, name: str = "general", *, type: int = 0, parent_id: int | None = None
    ) -> int:
        """A channel: 0 text, 2 voice, 4 category, 5 news, 11/12 thread (needs parent_id), 15 forum."""
        channel = self.world.build_channel(guild_id, name, type, parent_id)
        event = "THREAD_CREATE" if type in (10, 11, 12) else "CHANNEL_CREATE"
        self.gateway.queue_event(event, self.world.channel_payload(channel.id), intent=INTENT_GUILDS)
        return channel.id

    async def delete_channel(self, channel_id: int) -> None:
        """Someone deletes a channel or thread. A channel: CHANNEL_DELETE with the full channel object (its
        threads go with it, with no event of their own); a thread: THREAD_DELETE with only id, guild_id,
        parent_id and type."""
        payload = self.world.channel_payload(channel_id)
        channel = self.world.remove_channel(channel_id)
        if channel.type in (10, 11, 12):
            event = "THREAD_DELETE"
            payload = {k: payload[k] for k in ("id", "guild_id", "parent_id", "type")}
        else:
            event = "CHANNEL_DELETE"
        await self.gateway.dispatch(event, payload, intent=INTENT_GUILDS)

    def add_role(self, guild_id: int, name: str, *, permissions: int = 0, mentionable: bool = False) -> int:
        """A role; returns its id."""
        guild = self.world.guild(guild_id)
        role_id = self.world.snowflakes.next()
        role = self.world.role_payload(role_id, name, permissions, len(guild.roles))
        role["mentionable"] = mentionable
        guild.roles[role_id] = role
        self.gateway.queue_event(
            "GUILD_ROLE_CREATE", {"guild_id": str(guild_id), "role": role}, intent=INTENT_GUILDS
        )
        return role_id

    def add_member(
        self,
        guild_id: int,
        user_id: int | None = None,
        *,
        name: str = "user",
        roles: list[int] | None = None,
        bot: bool = False,
    ) -> int:
        """A guild member (the user is created if new); returns the user id."""
        guild = self.world.guild(guild_id)
        uid = self.world.add_user(user_id, name, bot=bot)
        for role_id in roles or []:
            if role_id not in guild.roles:
                raise AssertionError(f"unknown role {role_id} in guild {guild_id}")
        if uid not in guild.members:
            guild.members[uid] = MemberRecord(uid, list(roles or []), iso(utcnow()))
            event = {**self.world.member_payload(guild_id, uid), "guild_id": str(guild_id)}
            self.gateway.queue_event("GUILD_MEMBER_ADD", event, intent=INTENT_GUILD_MEMBERS)
        elif roles is not None:
            guild.members[uid].roles = list(roles)
        return uid

    def set_bot_permissions(self, guild_id: int, permissions: int) -> None:
        """Exactly the permissions the bot has in the guild (app_permissions, and 403s on REST)."""
        guild = self.world.guild(guild_id)
        guild.bot_permissions = permissions
        role = guild.roles[guild.bot_role_id]
        role["permissions"] = str(permissions)
        self.gateway.queue_event(
            "GUILD_ROLE_UPDATE", {"guild_id": str(guild_id), "role": role}, intent=INTENT_GUILDS
        )

    def add_attachment(
        self,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        flags: int = 0,
        duration_secs: float | None = None,
        waveform: str | None = None,
    ) -> dict[str, Any]:
        """Bytes on the fake CDN; returns the attachment payload (content_type guessed from the name if None)."""
        if not self.world.port:
            raise AssertionError("FakeDiscord.start() before add_attachment() (urls need the port)")
        return self.world.attachment_payload(
            filename, data, content_type, flags=flags, duration_secs=duration_secs, waveform=waveform
        )

    def block_dms_from(self, user_id: int) -> None:
        """Messages from the bot into this user's DM channel answer 403 50007."""
        self.world.blocked_dm_users.add(user_id)

    # ----------------------------------------------------------------- user events

    async def post_message(
        self,
        channel_id: int,
        author_id: int,
        content: str = "",
        *,
        attachments: list[dict[str, Any]] | None = None,
        embeds: list[dict[str, Any]] | None = None,
        sticker_items: list[dict[str, Any]] | None = None,
        mentions_bot: bool = False,
        reference_message_id: int | None = None,
        flags: int = 0,
        webhook_id: int | None = None,
        poll: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A user (or webhook) message: stored and sent as MESSAGE_CREATE; returns the full stored payload.
        `poll` is the request form (`{"question": {"text"}, "answers": [{"poll_media": {"text"}}]}`)."""
        channel = self.world.channel(channel_id)
        if (
            channel.guild_id is not None
            and webhook_id is None
            and author_id not in self.world.guild(channel.guild_id).members
        ):
            raise AssertionError(
                f"user {author_id} is not a member of guild {channel.guild_id}; add_member() first"
            )
        if reference_message_id is not None and reference_message_id not in self.world.message_index:
            raise AssertionError(f"unknown reference_message_id {reference_message_id}")
        mention = f"<@{self.world.bot_user_id}>"
        if mentions_bot and mention not in content and f"<@!{self.world.bot_user_id}>" not in content:
            content = f"{mention} {content}" if content else mention
        msg = self.world.build_message(
            channel_id,
            author_id,
            content,
            embeds=[dict(e) for e in embeds or []],
            attachments=[dict(a) for a in attachments or []],
            sticker_items=sticker_items,
            flags=flags,
            reference_message_id=reference_message_id,
            webhook_id=webhook_id,
        )
        if poll is not None:
            msg["poll"] = poll_payload(poll)
        self.world.store_message(msg)
        await self.gateway.dispatch_message("MESSAGE_CREATE", msg)
        return msg

    async def add_link_preview(self, channel_id: int, message_id: int, embeds: list[dict[str, Any]]) -> None:
        """Discord resolves a link in a stored message: the embeds arrive later in a MESSAGE_UPDATE that
        carries no `edited_timestamp` (the author edited nothing)."""
        msg = self.world.find_message(channel_id, message_id)
        msg["embeds"] = [*msg.get("embeds", []), *(dict(e) for e in embeds)]
        await self.gateway.dispatch_message("MESSAGE_UPDATE", msg)

    async def member_creates_thread(
        self, parent_id: int, owner_id: int, name: str, *, starter: str | None = None
    ) -> int:
        """A member starts a thread (type 11) in `parent_id`, or a post in a forum channel (its first
        message `starter`): THREAD_CREATE with `newly_created`, then the post's MESSAGE_CREATE."""
        parent = self.world.channel(parent_id)
        if parent.guild_id is None or owner_id not in self.world.guild(parent.guild_id).members:
            raise AssertionError(f"user {owner_id} is not a member of the parent's guild")
        thread = ChannelRecord(
            id=self.world.snowflakes.next(),
            type=11,
            name=name,
            guild_id=parent.guild_id,
            parent_id=parent_id,
            owner_id=owner_id,
        )
        self.world.channels[thread.id] = thread
        self.world.guild(parent.guild_id).channel_ids.append(thread.id)
        payload = self.world.channel_payload(thread.id)
        await self.gateway.dispatch("THREAD_CREATE", {**payload, "newly_created": True}, intent=INTENT_GUILDS)
        if starter is not None:
            await self.post_message(thread.id, owner_id, starter)
        return thread.id

    async def rename_thread(self, thread_id: int, name: str) -> None:
        """The thread's owner renames it: THREAD_UPDATE."""
        self.world.channel(thread_id).name = name
        await self.gateway.dispatch(
            "THREAD_UPDATE", self.world.channel_payload(thread_id), intent=INTENT_GUILDS
        )

    def seed_history(self, channel_id: int, messages: list[dict[str, Any]]) -> None:
        """Store messages without dispatching. Each: author_id, content, optional timestamp (datetime),
        attachments, embeds, flags. Without timestamps they are spaced 1 s apart, ending now."""
        self.world.channel(channel_id)
        base = utcnow() - dt.timedelta(seconds=len(messages))
        for index, spec in enumerate(messages):
            when = spec.get("timestamp") or base + dt.timedelta(seconds=index)
            msg = self.world.build_message(
                channel_id,
                int(spec["author_id"]),
                str(spec.get("content", "")),
                embeds=spec.get("embeds"),
                attachments=spec.get("attachments"),
                flags=int(spec.get("flags", 0)),
                when=when,
            )
            self.world.store_message(msg)

    async def edit_message(self, channel_id: int, message_id: int, content: str) -> None:
        """A user edits a stored message: MESSAGE_UPDATE."""
        msg = self.world.message_index.get(message_id)
        if msg is None or int(msg["channel_id"]) != channel_id:
            raise AssertionError(f"unknown message {message_id} in channel {channel_id}")
        author_id = int(msg["author"]["id"])
        guild_id = self.world.channel(channel_id).guild_id
        perms = self.world.member_permissions(guild_id, author_id) if guild_id is not None else 0
        users, roles, everyone = self.world.compute_mentions(
            content, guild_id, None, author_permissions=perms, replied_author_id=None, author_id=author_id
        )
        msg.update(
            content=content,
            edited_timestamp=iso(utcnow()),
            mentions=self.world.mention_payloads(guild_id, users),
            mention_roles=[str(r) for r in roles],
            mention_everyone=everyone,
        )
        await self.gateway.dispatch_message("MESSAGE_UPDATE", msg)

    async def delete_message_event(self, channel_id: int, message_id: int) -> None:
        """A user (or mod) deletes a message: removed from storage, MESSAGE_DELETE sent."""
        msg = self.world.message_index.get(message_id)
        if msg is None or int(msg["channel_id"]) != channel_id:
            raise AssertionError(f"unknown message {message_id} in channel {channel_id}")
        self.world.unstore_message(message_id)
        event = {"id": str(message_id), "channel_id": str(channel_id)}
        if "guild_id" in msg:
            event["guild_id"] = msg["guild_id"]
        await self.gateway.dispatch("MESSAGE_DELETE", event, intent=self.gateway.message_intent(msg))

    # ----------------------------------------------------------------- inspection

    def messages_in(self, channel_id: int) -> list[dict[str, Any]]:
        """Messages stored in a channel now (bot-sent included, ephemeral excluded), oldest first."""
        return list(self.world.channel(channel_id).messages)

    @staticmethod
    def _sent_view(record: SentRecord) -> dict[str, Any]:
        return {
            **record.message,
            "kind": record.kind,
            "allowed_mentions": record.allowed_mentions,
            "files": list(record.files),
            "interaction_id": record.interaction_id,
            "deleted": record.deleted,
        }

    def sent_messages(self) -> list[dict[str, Any]]:
        """Every message the bot created, in order, current state + kind/allowed_mentions/files/deleted."""
        return [self._sent_view(r) for r in self.messages.sent]

    @property
    def dms(self) -> list[dict[str, Any]]:
        """Messages the bot sent into DM channels (with ``recipient_id``)."""
        out = []
        for record in self.messages.sent:
            if record.kind == "dm":
                channel = self.world.channels[int(record.message["channel_id"])]
                out.append({**self._sent_view(record), "recipient_id": channel.recipient_id})
        return out

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` requests whose method matches (or "*") and whose path (without /api/v10)
        matches the regex (re.search) get this answer. 429s default to retry_after 0.05 with Retry-After,
        X-RateLimit-Scope: user and Via (discord.py treats a 429 without Via as a Cloudflare ban)."""
        hdrs = dict(headers or {})
        if status == 429:
            payload = (
                body
                if body is not None
                else {"message": "You are being rate limited.", "retry_after": 0.05, "global": False}
            )
            retry = str(payload.get("retry_after", 0.05))
            hdrs.setdefault("Retry-After", retry)
            hdrs.setdefault("X-RateLimit-Scope", "user")
            hdrs.setdefault("Via", "1.1 google")
        elif body is not None:
            payload = body
        elif status >= 500:
            payload = {"message": "Internal Server Error", "code": 0}
        else:
            payload = _DEFAULT_FAIL_BODIES.get(status, {"message": f"{status} (fake)", "code": 0})
        self.rest.fail_rules.append(
            FailRule(method.upper(), re.compile(path_pattern), status, payload, hdrs, times)
        )

    def requests_to(self, method: str, path_pattern: str) -> list[RecordedRequest]:
        """Recorded requests with this method whose path matches the regex."""
        rx = re.compile(path_pattern)
        return [r for r in self.rest.requests if r.method == method.upper() and rx.search(r.path)]


@contextlib.contextmanager
def patched_discord_py(fake: FakeDiscord) -> Iterator[None]:
    """Module-level spelling of ``fake.patch_discord_py()``."""
    with fake.patch_discord_py():
        yield


class _ErrorCapture(logging.Handler):
    """Collects ERROR records (with tracebacks) of the discord logger."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[0] is not None:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.sink.append(text)


async def _close_bot(bot: discord.Client, connect: asyncio.Task[None] | None) -> BaseException | None:
    await bot.close()
    if connect is None:
        return None
    try:
        await asyncio.wait_for(asyncio.shield(connect), 5)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        connect.cancel()
        return AssertionError("bot.connect() did not return within 5 s of bot.close()")
    except BaseException as exc:  # surfaced to the caller
        return exc
    return None


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeDiscord,
    bot: discord.Client,
    *,
    timeout: float = 5,  # noqa: ASYNC109
    fast_reidentify: bool = True,
) -> AsyncIterator[discord.Client]:
    """Patch discord.py, log the bot in, run ``bot.connect()`` until ready, yield, then close it.

    The bot should be created with a small ``guild_ready_timeout`` (e.g. 0.05). Exceptions of the connect
    task (e.g. ``discord.PrivilegedIntentsRequired`` after close code 4014) are raised here. ERROR records
    of the ``discord`` logger (exceptions swallowed by the tree / on_error) are collected in
    ``fake.bot_errors`` for the test to assert on. discord.py sleeps 5 s before every non-initial IDENTIFY
    (``Client.before_identify_hook``); with ``fast_reidentify`` (default) that wait is skipped unless the bot
    overrides the hook.
    """
    if fast_reidentify and type(bot).before_identify_hook is discord.Client.before_identify_hook:

        async def no_wait(shard_id: int | None, *, initial: bool = False) -> None:
            return None

        bot.before_identify_hook = no_wait  # type: ignore[method-assign]
    logger = logging.getLogger("discord")
    capture: _ErrorCapture | None = None
    if not any(isinstance(h, _ErrorCapture) and h.sink is fake.bot_errors for h in logger.handlers):
        capture = _ErrorCapture(fake.bot_errors)
        logger.addHandler(capture)
    connect: asyncio.Task[None] | None = None
    try:
        with fake.patch_discord_py():
            try:
                await bot.login(fake.token)
            except BaseException:
                await bot.close()
                raise
            connect = asyncio.create_task(bot.connect(reconnect=True), name="fake-discord-connect")
            ready = asyncio.create_task(bot.wait_until_ready())
            done, _ = await asyncio.wait(
                {connect, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if ready not in done:
                ready.cancel()
                error = await _close_bot(bot, connect)
                if error is not None:
                    raise error
                raise AssertionError(f"bot not ready within {timeout}s{fake._diagnostics()}")
            body_failed = False
            try:
                yield bot
            except BaseException:
                body_failed = True
                raise
            finally:
                error = await _close_bot(bot, connect)
                if error is not None and not body_failed:
                    raise error
    finally:
        if capture is not None:
            logger.removeHandler(capture)


def poll_payload(request: dict[str, Any]) -> dict[str, Any]:
    """The message object's `poll` from the create-message request's poll."""
    return {
        "question": {"text": request["question"]["text"]},
        "answers": [
            {"answer_id": index + 1, "poll_media": {"text": answer["poll_media"]["text"]}}
            for index, answer in enumerate(request["answers"])
        ],
        "expiry": iso(utcnow() + dt.timedelta(hours=int(request.get("duration", 24)))),
        "allow_multiselect": bool(request.get("allow_multiselect", False)),
        "layout_type": 1,
        "results": {"is_finalized": False, "answer_counts": []},
    }

"""Gateway part of the fake Discord: websocket sessions (one per shard), dispatch with sequence numbers,
RESUME and IDENTIFY.

Sharding as Discord does it: IDENTIFY carries ``shard: [id, count]`` (absent means ``[0, 1]``); an event of a
guild goes only to the session whose shard is ``(guild_id >> 22) % count``, and DMs and events without a
guild go to shard 0. Several sessions (one per shard) are connected at once, from one process or several.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from .model import (
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    INTENT_MESSAGE_CONTENT,
    JSON,
)
from .world import DiscordWorld

INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13

# Close codes after which the session cannot be resumed (the next RESUME gets op 9 d=false).
SESSION_KILLING_CLOSE_CODES = frozenset({4003, 4007, 4009})
# Events whose guild is the payload's own id rather than its guild_id.
GUILD_OBJECT_EVENTS = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})


def shard_of(guild_id: int | None, shard_count: int) -> int:
    """The shard Discord routes a guild's events to; events without a guild (DMs) go to shard 0."""
    if guild_id is None:
        return 0
    return (guild_id >> 22) % shard_count


def event_guild_id(event: str, data: JSON) -> int | None:
    """The guild an event belongs to, or None (DMs, user-level events)."""
    raw = data.get("id") if event in GUILD_OBJECT_EVENTS else data.get("guild_id")
    return int(raw) if raw else None


def _encode(frame: JSON) -> str:
    """A frame as JSON text. orjson: the stdlib's encoder was a fifth of the fake's CPU per message, which
    shares the machine with the bot a benchmark measures; the stdlib's for what orjson refuses."""
    try:
        return orjson.dumps(frame, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(frame)


@dataclass
class GatewaySession:
    """One IDENTIFY'd session: its sequence counter and every event sent in it (for RESUME replay)."""

    session_id: str
    intents: int
    shard_id: int = 0
    shard_count: int = 1
    seq: int = 0
    history: list[JSON] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    valid: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Events queued from synchronous code (queue_event), sent before this session's next dispatch.
    pending: list[tuple[str, JSON, int | None]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def shard(self) -> tuple[int, int]:
        return self.shard_id, self.shard_count

    def receives(self, guild_id: int | None) -> bool:
        """Whether Discord routes an event of this guild (None: no guild) to this session."""
        return shard_of(guild_id, self.shard_count) == self.shard_id


class Gateway:
    """The websocket gateway: one session per shard (a single unsharded bot has one, shard [0, 1])."""

    def __init__(self, world: DiscordWorld) -> None:
        self.world = world
        self.heartbeat_interval_ms = 41250
        self.members_intent = True  # privileged intents the application "has been granted"
        self.presences_intent = True
        # When set, Discord requires exactly this many shards: IDENTIFY with another count closes 4011.
        self.required_shard_count: int | None = None
        # The current session of each shard id (a new IDENTIFY of a shard replaces its session).
        self.sessions: dict[int, GatewaySession] = {}
        self.identify_count = 0
        self.resume_count = 0
        self.gateway_connections: list[str] = []  # path?query of every websocket connection
        self.gateway_received: list[JSON] = []  # every frame the bot sent except heartbeats
        self.heartbeat_times: list[float] = []  # time.monotonic() of each heartbeat (op 1) received
        self.undelivered_events: list[JSON] = []  # events produced while no session of their shard existed
        self._open_sockets: set[web.WebSocketResponse] = set()
        self._ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        # When set to an Event, RESUMEs wait for it: lets a test produce events "during the gap".
        self.resume_gate: asyncio.Event | None = None
        # Discord replays a resumed session's missed events from a bounded buffer; with this False, events
        # produced while the bot is disconnected are lost (as when that buffer overflowed), yet the RESUME
        # still succeeds. Bots must then catch up from REST history.
        self.replay_missed_events = True
        self.lost_events: list[JSON] = []

    # ----------------------------------------------------------------- websocket

    async def close(self) -> None:
        """Close the open websockets and cancel pending deliveries."""
        for ws in list(self._open_sockets):
            await ws.close(code=1001, message=b"fake Discord shutting down")
        for task in list(self._tasks):
            task.cancel()

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """A bot connection to /gateway or its resume URL."""
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.gateway_connections.append(str(request.rel_url))
        self._open_sockets.add(ws)
        try:
            await self._send_raw(
                ws, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None}
            )
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op = frame.get("op")
                if op == 1:
                    self.heartbeat_times.append(time.monotonic())
                    await self._send_raw(ws, {"op": 11, "d": None, "s": None, "t": None})
                    continue
                self.gateway_received.append(frame)
                if op == 2:
                    await self._on_identify(ws, frame.get("d") or {})
                elif op == 6:
                    await self._on_resume(ws, frame.get("d") or {})
                elif op == 8:
                    await self._on_request_members(ws, frame.get("d") or {})
        finally:
            self._open_sockets.discard(ws)
            for session in self.sessions.values():
                if session.ws is ws:
                    session.ws = None
        return ws

    async def _send_raw(self, ws: web.WebSocketResponse, frame: JSON) -> bool:
        if ws.closed:
            return False
        try:
            await ws.send_str(_encode(frame))
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def _on_identify(self, ws: web.WebSocketResponse, d: JSON) -> None:
        if d.get("token") != self.world.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        if "intents" not in d:
            await ws.close(code=4013, message=b"Invalid intent(s).")
            return
        intents = int(d["intents"])
        disallowed = (
            (intents & INTENT_MESSAGE_CONTENT and not self.world.message_content_intent)
            or (intents & INTENT_GUILD_MEMBERS and not self.members_intent)
            or (intents & INTENT_GUILD_PRESENCES and not self.presences_intent)
        )
        if disallowed:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard = d.get("shard", [0, 1])
        try:
            shard_id, shard_count = int(shard[0]), int(shard[1])
        except (TypeError, ValueError, IndexError):
            shard_id, shard_count = -1, 0
        if shard_count < 1 or not 0 <= shard_id < shard_count:
            await ws.close(code=4010, message=b"Invalid shard.")
            return
        if self.required_shard_count is not None and shard_count != self.required_shard_count:
            await ws.close(code=4011, message=b"Sharding required.")
            return
        previous = self.sessions.get(shard_id)
        if previous is not None:
            previous.valid = False
        session = GatewaySession(
            session_id=secrets.token_hex(16), intents=intents, shard_id=shard_id, shard_count=shard_count
        )
        self.sessions[shard_id] = session
        self.identify_count += 1
        joined = [g for g in self.world.guilds.values() if g.bot_joined and session.receives(g.id)]
        me = self.world.user_payload(self.world.bot_user_id)
        me.update(verified=True, mfa_enabled=False, email=None, locale="en-US", premium_type=0)
        ready: JSON = {
            "v": 10,
            "user": me,
            "user_settings": {},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in joined],
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake"],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": f"ws://127.0.0.1:{self.world.port}/resume-gateway",
            "application": {"id": str(self.world.application_id), "flags": self.world.application_flags()},
        }
        if "shard" in d:
            ready["shard"] = d["shard"]
        async with session.lock:
            session.ws = ws
            await self._send_dispatch_locked(session, "READY", ready, None)
            for guild in joined:
                await self._send_dispatch_locked(
                    session, "GUILD_CREATE", self.world.guild_create_payload(guild.id), None
                )
        session.ready.set()
        self._ready.set()

    async def _on_resume(self, ws: web.WebSocketResponse, d: JSON) -> None:
        if d.get("token") != self.world.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        session = next((s for s in self.sessions.values() if s.session_id == d.get("session_id")), None)
        if session is None or not session.valid:
            await self._send_raw(ws, {"op": 9, "d": False, "s": None, "t": None})
            return
        if self.resume_gate is not None:
            await self.resume_gate.wait()
        last = int(d.get("seq") or 0)
        async with session.lock:
            if session.ws is not None and session.ws is not ws:
                await session.ws.close(code=4000, message=b"Superseded by RESUME")
            session.ws = ws
            for frame in session.history:
                if frame["s"] > last:
                    await self._send_raw(ws, frame)
            session.seq += 1
            await self._send_raw(ws, {"op": 0, "t": "RESUMED", "s": session.seq, "d": {}})
        self.resume_count += 1

    async def _on_request_members(self, ws: web.WebSocketResponse, d: JSON) -> None:
        session = next((s for s in self.sessions.values() if s.ws is ws), None)
        guild = self.world.guilds.get(int(d.get("guild_id", 0)))
        if session is None or guild is None:
            return
        wanted = {int(u) for u in d.get("user_ids") or []}
        query = str(d.get("query") or "").lower()
        limit = int(d.get("limit") or 0)
        found = []
        for uid in guild.members:
            if wanted and uid not in wanted:
                continue
            if query and not str(self.world.users[uid]["username"]).lower().startswith(query):
                continue
            found.append(self.world.member_payload(guild.id, uid))
        if limit:
            found = found[:limit]
        chunk: JSON = {"guild_id": str(guild.id), "members": found, "chunk_index": 0, "chunk_count": 1}
        if d.get("nonce"):
            chunk["nonce"] = d["nonce"]
        if wanted:
            chunk["not_found"] = [str(u) for u in wanted if u not in guild.members]
        async with session.lock:
            await self._send_dispatch_locked(session, "GUILD_MEMBERS_CHUNK", chunk, None)

    # ----------------------------------------------------------------- dispatch

    async def _send_dispatch_locked(
        self, session: GatewaySession, event: str, data: JSON, intent: int | None
    ) -> bool:
        if intent is not None and not session.intents & intent:
            return False
        if event.startswith("MESSAGE_") and "author" in data:
            data = self.world.visible_to_bot(
                data, content_allowed=bool(session.intents & INTENT_MESSAGE_CONTENT)
            )
        if session.ws is None and not self.replay_missed_events:
            self.lost_events.append({"t": event, "d": data})
            return False
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.history.append(frame)
        if session.ws is not None:
            await self._send_raw(session.ws, frame)
        return True

    async def _flush_pending_locked(self, session: GatewaySession) -> None:
        while session.pending:
            event, data, intent = session.pending.pop(0)
            await self._send_dispatch_locked(session, event, data, intent)

    def sessions_for(self, event: str, data: JSON) -> list[GatewaySession]:
        """The sessions Discord sends this event to: the shard of its guild, shard 0 without one."""
        guild_id = event_guild_id(event, data)
        return [s for s in self.sessions.values() if s.receives(guild_id)]

    async def dispatch(self, event: str, data: JSON, *, intent: int | None = None) -> bool:
        """Send a DISPATCH event to its shard's session (buffered for RESUME when that shard is
        disconnected); False if filtered/dropped or no session of that shard exists."""
        targets = self.sessions_for(event, data)
        if not targets:
            self.undelivered_events.append({"t": event, "d": data})
            return False
        delivered = False
        for session in targets:
            async with session.lock:
                await self._flush_pending_locked(session)
                delivered = await self._send_dispatch_locked(session, event, data, intent) or delivered
        return delivered

    def queue_event(self, event: str, data: JSON, *, intent: int | None = None) -> None:
        """Dispatch from synchronous code: delivered before the next async dispatch, in order."""
        targets = self.sessions_for(event, data)
        if not targets:
            return
        for session in targets:
            session.pending.append((event, data, intent))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._flush_pending(targets))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_pending(self, sessions: list[GatewaySession]) -> None:
        for session in sessions:
            async with session.lock:
                await self._flush_pending_locked(session)

    def message_intent(self, msg: JSON) -> int:
        """The intent a MESSAGE_* event for ``msg`` needs."""
        return INTENT_GUILD_MESSAGES if "guild_id" in msg else INTENT_DIRECT_MESSAGES

    async def dispatch_message(self, event: str, msg: JSON) -> bool:
        """MESSAGE_CREATE / MESSAGE_UPDATE with the right intent and content filtering."""
        return await self.dispatch(event, msg, intent=self.message_intent(msg))

    # ----------------------------------------------------------------- test controls

    @property
    def session(self) -> GatewaySession | None:
        """The session of the lowest shard id (an unsharded bot's only session), or None."""
        return self.sessions[min(self.sessions)] if self.sessions else None

    def session_for(self, shard: int) -> GatewaySession:
        """The current session of a shard, or a clear AssertionError."""
        try:
            return self.sessions[shard]
        except KeyError:
            raise AssertionError(f"shard {shard} has not IDENTIFY'd with the fake gateway") from None

    async def wait_ready(self, timeout: float = 5, *, shard: int | None = None) -> None:  # noqa: ASYNC109
        """Wait until the bot has IDENTIFY'd and got READY + GUILD_CREATEs (on ``shard``, else on any)."""
        what = "the bot" if shard is None else f"shard {shard}"
        try:
            if shard is None:
                await asyncio.wait_for(self._ready.wait(), timeout)
            else:
                await self.wait_until(lambda: shard in self.sessions, timeout, what=f"{what} to IDENTIFY")
                await asyncio.wait_for(self.sessions[shard].ready.wait(), timeout)
        except (TimeoutError, AssertionError):
            raise AssertionError(f"{what} did not IDENTIFY within {timeout}s") from None

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5, *, what: str = "") -> None:  # noqa: ASYNC109
        """Poll ``predicate`` until true (AssertionError after ``timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
            await asyncio.sleep(0.005)

    def _connected_session(self, shard: int | None) -> tuple[GatewaySession, web.WebSocketResponse]:
        session = self.session if shard is None else self.sessions.get(shard)
        if session is None or session.ws is None:
            which = "the bot" if shard is None else f"shard {shard}"
            raise AssertionError(f"{which} is not connected to the fake gateway")
        return session, session.ws

    async def close_gateway(self, code: int, *, shard: int | None = None) -> None:
        """Close the bot's websocket (of ``shard``; default the lowest shard) with ``code``; 4003/4007/4009
        also invalidate the session."""
        session, ws = self._connected_session(shard)
        async with session.lock:
            session.ws = None
            if code in SESSION_KILLING_CLOSE_CODES:
                session.valid = False
        await ws.close(code=code, message=b"closed by the fake")

    async def invalidate_session(self, *, resumable: bool = False, shard: int | None = None) -> None:
        """Send op 9 INVALID_SESSION (d=resumable); a non-resumable one forces a fresh IDENTIFY."""
        session, ws = self._connected_session(shard)
        if not resumable:
            session.valid = False
        await self._send_raw(ws, {"op": 9, "d": resumable, "s": None, "t": None})

    async def request_reconnect(self, *, shard: int | None = None) -> None:
        """Send op 7 RECONNECT; discord.py closes and RESUMEs."""
        _session, ws = self._connected_session(shard)
        await self._send_raw(ws, {"op": 7, "d": None, "s": None, "t": None})

    def shard_connected(self, shard: int) -> bool:
        """Whether ``shard``'s session has a live websocket."""
        session = self.sessions.get(shard)
        return session is not None and session.ws is not None and not session.ws.closed

    @property
    def connected(self) -> bool:
        """Whether a bot websocket is attached to every current session (and there is one)."""
        return bool(self.sessions) and all(self.shard_connected(shard) for shard in self.sessions)

    @property
    def connected_shards(self) -> list[int]:
        """The shard ids with a live websocket, ascending."""
        return sorted(shard for shard in self.sessions if self.shard_connected(shard))


__all__ = [
    "INTENT_DIRECT_MESSAGE_REACTIONS",
    "INTENT_GUILD_MESSAGE_REACTIONS",
    "Gateway",
    "GatewaySession",
    "event_guild_id",
    "shard_of",
]

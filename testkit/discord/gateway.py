"""Gateway part of the fake Discord: websocket sessions, dispatch with sequence numbers, RESUME and IDENTIFY."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class GatewaySession:
    """One IDENTIFY'd session: its sequence counter and every event sent in it (for RESUME replay)."""

    session_id: str
    intents: int
    seq: int = 0
    history: list[JSON] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    valid: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Gateway:
    """The websocket gateway; one bot connection at a time."""

    def __init__(self, world: DiscordWorld) -> None:
        self.world = world
        self.heartbeat_interval_ms = 41250
        self.members_intent = True  # privileged intents the application "has been granted"
        self.presences_intent = True
        self.session: GatewaySession | None = None
        self.identify_count = 0
        self.resume_count = 0
        self.gateway_connections: list[str] = []  # path?query of every websocket connection
        self.gateway_received: list[JSON] = []  # every frame the bot sent except heartbeats
        self.heartbeat_times: list[float] = []  # time.monotonic() of each heartbeat (op 1) received
        self.undelivered_events: list[JSON] = []  # events produced while no session existed
        self._pending_events: list[tuple[str, JSON, int | None]] = []
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
            if self.session is not None and self.session.ws is ws:
                self.session.ws = None
        return ws

    async def _send_raw(self, ws: web.WebSocketResponse, frame: JSON) -> bool:
        if ws.closed:
            return False
        try:
            await ws.send_str(json.dumps(frame))
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
        if self.session is not None:
            self.session.valid = False
        session = GatewaySession(session_id=secrets.token_hex(16), intents=intents)
        self.session = session
        self.identify_count += 1
        self._pending_events.clear()
        joined = [g for g in self.world.guilds.values() if g.bot_joined]
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
        self._ready.set()

    async def _on_resume(self, ws: web.WebSocketResponse, d: JSON) -> None:
        if d.get("token") != self.world.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        session = self.session
        if session is None or not session.valid or d.get("session_id") != session.session_id:
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
        session = self.session
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
        while self._pending_events:
            event, data, intent = self._pending_events.pop(0)
            await self._send_dispatch_locked(session, event, data, intent)

    async def dispatch(self, event: str, data: JSON, *, intent: int | None = None) -> bool:
        """Send a DISPATCH event (buffered for RESUME when the bot is disconnected); False if filtered/dropped."""
        session = self.session
        if session is None:
            self.undelivered_events.append({"t": event, "d": data})
            return False
        async with session.lock:
            await self._flush_pending_locked(session)
            return await self._send_dispatch_locked(session, event, data, intent)

    def queue_event(self, event: str, data: JSON, *, intent: int | None = None) -> None:
        """Dispatch from synchronous code: delivered before the next async dispatch, in order."""
        if self.session is None:
            return
        self._pending_events.append((event, data, intent))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._flush_pending())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_pending(self) -> None:
        session = self.session
        if session is None:
            return
        async with session.lock:
            await self._flush_pending_locked(session)

    def message_intent(self, msg: JSON) -> int:
        """The intent a MESSAGE_* event for ``msg`` needs."""
        return INTENT_GUILD_MESSAGES if "guild_id" in msg else INTENT_DIRECT_MESSAGES

    async def dispatch_message(self, event: str, msg: JSON) -> bool:
        """MESSAGE_CREATE / MESSAGE_UPDATE with the right intent and content filtering."""
        return await self.dispatch(event, msg, intent=self.message_intent(msg))

    # ----------------------------------------------------------------- test controls

    async def wait_ready(self, timeout: float = 5) -> None:  # noqa: ASYNC109
        """Wait until the bot has IDENTIFY'd and got READY + GUILD_CREATEs."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"the bot did not IDENTIFY within {timeout}s") from None

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5, *, what: str = "") -> None:  # noqa: ASYNC109
        """Poll ``predicate`` until true (AssertionError after ``timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
            await asyncio.sleep(0.005)

    def _connected_session(self) -> tuple[GatewaySession, web.WebSocketResponse]:
        session = self.session
        if session is None or session.ws is None:
            raise AssertionError("the bot is not connected to the fake gateway")
        return session, session.ws

    async def close_gateway(self, code: int) -> None:
        """Close the bot's websocket with ``code``; 4003/4007/4009 also invalidate the session."""
        session, ws = self._connected_session()
        async with session.lock:
            session.ws = None
            if code in SESSION_KILLING_CLOSE_CODES:
                session.valid = False
        await ws.close(code=code, message=b"closed by the fake")

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION (d=resumable); a non-resumable one forces a fresh IDENTIFY."""
        session, ws = self._connected_session()
        if not resumable:
            session.valid = False
        await self._send_raw(ws, {"op": 9, "d": resumable, "s": None, "t": None})

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT; discord.py closes and RESUMEs."""
        _session, ws = self._connected_session()
        await self._send_raw(ws, {"op": 7, "d": None, "s": None, "t": None})

    @property
    def connected(self) -> bool:
        """Whether a bot websocket is attached to a live session."""
        return self.session is not None and self.session.ws is not None and not self.session.ws.closed


__all__ = [
    "INTENT_DIRECT_MESSAGE_REACTIONS",
    "INTENT_GUILD_MESSAGE_REACTIONS",
    "Gateway",
    "GatewaySession",
]

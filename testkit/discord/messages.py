"""Message, channel, thread, guild and member routes of the fake Discord (what the bot does with REST)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import urllib.parse
from dataclasses import dataclass

from aiohttp import web

from .gateway import INTENT_DIRECT_MESSAGE_REACTIONS, INTENT_GUILD_MESSAGE_REACTIONS, Gateway
from .model import (
    ADMINISTRATOR,
    ATTACH_FILES,
    CREATE_PUBLIC_THREADS,
    DM_TYPES,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_VOICE_MESSAGE,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILDS,
    JSON,
    MANAGE_MESSAGES,
    MANAGE_THREADS,
    MODERATE_MEMBERS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    SEND_VOICE_MESSAGES,
    THREAD_TYPES,
    ChannelRecord,
    RestError,
    UploadedFile,
    form_error,
    iso,
    utcnow,
)
from .rest import Handler, RecordedRequest, json_response, no_content, no_content_route
from .world import DiscordWorld

KICK_MEMBERS = 1 << 1
BAN_MEMBERS = 1 << 2
SETTABLE_MESSAGE_FLAGS = (
    (1 << 2) | (1 << 12) | (1 << 13) | (1 << 15)
)  # suppress embeds/notifications, voice, v2


@dataclass
class SentRecord:
    """A message the bot created, with what it sent alongside."""

    message: JSON
    kind: str  # "channel" | "dm" | "interaction" | "followup"
    allowed_mentions: JSON | None
    files: list[UploadedFile]
    interaction_id: int | None = None
    deleted: bool = False


def _embed_size(embed: JSON) -> int:
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "") + len(
        (embed.get("author") or {}).get("name") or ""
    )
    for f in embed.get("fields") or []:
        total += len(f.get("name") or "") + len(f.get("value") or "")
    return total


def validate_message_body(
    body: JSON, files: list[UploadedFile], *, upload_limit: int, require_content: bool
) -> None:
    """Discord's checks on a message body (400 50035 / 50006, 413 40005)."""
    content = body.get("content")
    if content is not None and len(str(content)) > 2000:
        raise form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    embeds = body.get("embeds") or []
    if len(embeds) > 10:
        raise form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    limits = {"title": 256, "description": 4096}
    for i, embed in enumerate(embeds):
        for key, limit in limits.items():
            if len(embed.get(key) or "") > limit:
                raise form_error(
                    f"embeds.{i}.{key}", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
                )
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise form_error(f"embeds.{i}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for j, f in enumerate(fields):
            if len(f.get("name") or "") > 256 or len(f.get("value") or "") > 1024:
                raise form_error(
                    f"embeds.{i}.fields.{j}", "BASE_TYPE_MAX_LENGTH", "Field name/value too long."
                )
        if len((embed.get("footer") or {}).get("text") or "") > 2048:
            raise form_error(
                f"embeds.{i}.footer.text", "BASE_TYPE_MAX_LENGTH", "Must be 2048 or fewer in length."
            )
        if len((embed.get("author") or {}).get("name") or "") > 256:
            raise form_error(
                f"embeds.{i}.author.name", "BASE_TYPE_MAX_LENGTH", "Must be 256 or fewer in length."
            )
    if sum(_embed_size(e) for e in embeds) > 6000:
        raise form_error("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    if len(files) > 10:
        raise form_error("files", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    for f in files:
        if len(f.data) > upload_limit:
            raise RestError(413, 40005, "Request entity too large")
    if require_content:
        empty = not str(content or "").strip() and not embeds and not files and not body.get("components")
        if empty and not body.get("sticker_ids") and not body.get("poll") and not body.get("attachments"):
            raise RestError(400, 50006, "Cannot send an empty message")


AUDIO_EXTENSIONS = frozenset({"ogg", "oga", "opus", "mp3", "m4a", "wav", "webm", "flac", "aac"})


def validate_voice_message(body: JSON, files: list[UploadedFile]) -> None:
    """Discord's rules for a message with IS_VOICE_MESSAGE: one audio attachment with its duration and
    waveform (at most 256 amplitude bytes, base64), and nothing else (no content, embeds or stickers)."""
    if str(body.get("content") or "") or body.get("embeds") or body.get("sticker_ids") or body.get("poll"):
        raise RestError(400, 50159, "Voice messages do not support additional content.")
    if len(files) != 1:
        raise RestError(400, 50160, "Voice messages must have a single audio attachment.")
    upload = files[0]
    meta: JSON = next((a for a in body.get("attachments") or [] if str(a.get("id", "")) == "0"), {})
    name = str(meta.get("filename") or upload.filename)
    audio_type = (upload.content_type or "").startswith("audio/")
    if not audio_type and name.rsplit(".", 1)[-1].lower() not in AUDIO_EXTENSIONS:
        raise RestError(400, 50160, "Voice messages must have a single audio attachment.")
    duration, waveform = meta.get("duration_secs"), meta.get("waveform")
    if not isinstance(duration, int | float) or duration <= 0 or not isinstance(waveform, str):
        raise RestError(400, 50161, "Voice messages must have supporting metadata.")
    try:
        samples = base64.b64decode(waveform, validate=True)
    except (binascii.Error, ValueError):
        raise form_error("attachments.0.waveform", "BASE_TYPE_BAD_BASE64", "Invalid base64.") from None
    if not samples or len(samples) > 256:
        raise RestError(400, 50161, "Voice messages must have supporting metadata.")


class Messages:
    """Messages, reactions, channels, threads, guilds and members."""

    def __init__(self, world: DiscordWorld, gateway: Gateway) -> None:
        self.world = world
        self.gateway = gateway
        self.sent: list[SentRecord] = []
        self.timeouts: list[JSON] = []
        self.kicks: list[JSON] = []
        self.bans: list[JSON] = []
        self.typing: list[int] = []
        self.left_guilds: list[int] = []

    def routes(self) -> list[tuple[str, str, Handler]]:
        cid = r"/channels/(?P<cid>\d+)"
        mid = cid + r"/messages/(?P<mid>\d+)"
        gid = r"/guilds/(?P<gid>\d+)"
        return [
            ("DELETE", r"/users/@me/guilds/(?P<gid>\d+)", self._leave_guild),
            ("POST", cid + r"/messages", self._post_message),
            ("GET", cid + r"/messages", self._get_messages),
            ("POST", cid + r"/messages/bulk-delete", self._bulk_delete),
            ("GET", mid, self._get_message),
            ("PATCH", mid, self._patch_message),
            ("DELETE", mid, self._delete_message),
            ("PUT", mid + r"/reactions/(?P<emoji>[^/]+)/@me", self._add_reaction),
            ("DELETE", mid + r"/reactions/(?P<emoji>[^/]+)/@me", self._remove_reaction),
            ("POST", mid + r"/threads", self._thread_from_message),
            ("POST", cid + r"/threads", self._create_thread),
            ("PUT", cid + r"/thread-members/@me", no_content_route),
            ("DELETE", cid + r"/thread-members/@me", no_content_route),
            ("POST", cid + r"/typing", self._typing),
            ("GET", cid, self._get_channel),
            ("PATCH", cid, self._patch_channel),
            ("GET", gid, self._get_guild),
            ("GET", gid + r"/channels", self._get_guild_channels),
            ("GET", gid + r"/roles", self._get_roles),
            ("GET", gid + r"/members", self._list_members),
            ("GET", gid + r"/members/(?P<uid>\d+)", self._get_member),
            ("PATCH", gid + r"/members/(?P<uid>\d+)", self._patch_member),
            ("DELETE", gid + r"/members/(?P<uid>\d+)", self._kick_member),
            ("PUT", gid + r"/bans/(?P<uid>\d+)", self._ban_member),
        ]

    async def _leave_guild(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        guild = self.world.guilds.get(int(m["gid"]))
        if guild is None or not guild.bot_joined:
            raise RestError(404, 10004, "Unknown Guild")
        guild.bot_joined = False
        self.left_guilds.append(guild.id)
        await self.gateway.dispatch("GUILD_DELETE", {"id": str(guild.id)}, intent=INTENT_GUILDS)
        return no_content()

    def _known_channel(self, channel_id: int) -> ChannelRecord:
        channel = self.world.channels.get(channel_id)
        if channel is None:
            raise RestError(404, 10003, "Unknown Channel")
        return channel

    def build_attachments(
        self,
        body: JSON,
        files: list[UploadedFile],
        channel_id: int,
        existing: list[JSON] | None,
        *,
        voice_metadata: bool = True,
    ) -> list[JSON]:
        """New attachments from uploaded files, merged with kept ones (``attachments: [{id}]``).
        Interaction responses and webhooks drop `duration_secs` and `waveform` (discord-api-docs #7153):
        `voice_metadata=False`."""
        meta = {int(a["id"]): a for a in body.get("attachments") or [] if str(a.get("id", "")).isdigit()}
        new: dict[int, JSON] = {}
        for index, f in enumerate(files):
            info = meta.get(index, {})
            ctype = f.content_type if f.content_type not in (None, "application/octet-stream") else None
            new[index] = self.world.attachment_payload(
                info.get("filename") or f.filename,
                f.data,
                ctype,
                channel_id=channel_id,
                description=info.get("description"),
                duration_secs=info.get("duration_secs") if voice_metadata else None,
                waveform=info.get("waveform") if voice_metadata else None,
            )
        if "attachments" not in body:
            return (existing or []) + list(new.values())
        kept: list[JSON] = []
        for aid in meta:
            for old in existing or []:
                if int(old["id"]) == aid:
                    kept.append(old)
            if aid in new:
                kept.append(new.pop(aid))
        return kept + list(new.values())

    def record_sent(
        self,
        msg: JSON,
        kind: str,
        body: JSON,
        files: list[UploadedFile],
        interaction_id: int | None = None,
    ) -> None:
        """Remember a bot-created message for sent_messages()/dms."""
        self.sent.append(SentRecord(msg, kind, body.get("allowed_mentions"), files, interaction_id))

    def apply_edit(self, msg: JSON, body: JSON, files: list[UploadedFile]) -> JSON:
        """PATCH semantics on a stored message (in place); returns it."""
        validate_message_body(body, files, upload_limit=self.world.upload_limit, require_content=False)
        if int(msg.get("flags", 0)) & FLAG_VOICE_MESSAGE or int(body.get("flags") or 0) & FLAG_VOICE_MESSAGE:
            raise RestError(400, 50162, "Voice messages cannot be edited.")
        channel_id = int(msg["channel_id"])
        for key in ("content", "embeds", "components"):
            if key in body:
                msg[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "attachments" in body or files:
            msg["attachments"] = self.build_attachments(body, files, channel_id, msg.get("attachments"))
        flags = int(msg.get("flags", 0)) & ~FLAG_LOADING
        if body.get("flags") is not None:
            flags = (flags & ~SETTABLE_MESSAGE_FLAGS) | (int(body["flags"]) & SETTABLE_MESSAGE_FLAGS)
        msg["flags"] = flags
        if not str(msg.get("content") or "").strip() and not msg["embeds"] and not msg["attachments"]:
            if not msg["components"] and not msg.get("sticker_items"):
                raise RestError(400, 50006, "Cannot send an empty message")
        if "content" in body or "allowed_mentions" in body:
            guild_id = int(msg["guild_id"]) if "guild_id" in msg else None
            ref = msg.get("referenced_message")
            users, roles, everyone = self.world.compute_mentions(
                str(msg.get("content") or ""),
                guild_id,
                body.get("allowed_mentions"),
                author_permissions=self.world.bot_permissions_in(channel_id),
                replied_author_id=int(ref["author"]["id"]) if isinstance(ref, dict) else None,
                author_id=self.world.bot_user_id,
            )
            msg.update(
                mentions=self.world.mention_payloads(guild_id, users), mention_roles=[str(r) for r in roles]
            )
            msg["mention_everyone"] = everyone
        for record in self.sent:
            if record.message is msg and "allowed_mentions" in body:
                record.allowed_mentions = body["allowed_mentions"]
        msg["edited_timestamp"] = iso(utcnow())
        return msg

    async def _post_message(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self._known_channel(int(m["cid"]))
        body: JSON = rec.json or {}
        if channel.type in DM_TYPES:
            if channel.recipient_id in self.world.blocked_dm_users:
                raise RestError(403, 50007, "Cannot send messages to this user")
        else:
            if channel.type in (15, 16, 4, 2, 13):
                raise RestError(400, 50008, "Cannot send messages in a non-text channel")
            thread = channel.type in THREAD_TYPES
            self.world.require_bot_permission(
                channel.id, SEND_MESSAGES_IN_THREADS if thread else SEND_MESSAGES
            )
            if rec.files:
                self.world.require_bot_permission(channel.id, ATTACH_FILES)
            if int(body.get("flags") or 0) & FLAG_VOICE_MESSAGE:
                self.world.require_bot_permission(channel.id, SEND_VOICE_MESSAGES)
        validate_message_body(body, rec.files, upload_limit=self.world.upload_limit, require_content=True)
        if int(body.get("flags") or 0) & FLAG_VOICE_MESSAGE:
            validate_voice_message(body, rec.files)
        msg = self._bot_message(channel, body, rec.files)
        self.world.store_message(msg)
        self.record_sent(msg, "dm" if channel.type in DM_TYPES else "channel", body, rec.files)
        await self.gateway.dispatch_message("MESSAGE_CREATE", msg)
        return json_response(msg)

    def _bot_message(
        self, channel: ChannelRecord, body: JSON, files: list[UploadedFile], msg_id: int | None = None
    ) -> JSON:
        ref_id: int | None = None
        ref = body.get("message_reference")
        if ref and ref.get("message_id") and int(ref.get("type", 0)) == 0:
            ref_id = int(ref["message_id"])
            if ref_id not in self.world.message_index:
                if ref.get("fail_if_not_exists", True) is not False:
                    raise form_error(
                        "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                    )
                ref_id = None
        stickers = [
            {"id": str(s), "name": "sticker", "format_type": 1} for s in body.get("sticker_ids") or []
        ]
        msg = self.world.build_message(
            channel.id,
            self.world.bot_user_id,
            str(body.get("content") or ""),
            embeds=body.get("embeds"),
            attachments=self.build_attachments(body, files, channel.id, None),
            components=body.get("components"),
            sticker_items=stickers,
            flags=int(body.get("flags") or 0) & SETTABLE_MESSAGE_FLAGS,
            allowed_mentions=body.get("allowed_mentions"),
            reference_message_id=ref_id,
            tts=bool(body.get("tts", False)),
            nonce=body.get("nonce"),
        )
        if msg_id is not None:
            msg["id"] = str(msg_id)
        if body.get("poll"):
            msg["poll"] = body["poll"]
        return msg

    def _page(self, messages: list[JSON], query: dict[str, str]) -> list[JSON]:
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            raise form_error("limit", "NUMBER_TYPE_COERCE", "Value is not int.") from None
        if not 1 <= limit <= 100:
            raise form_error("limit", "NUMBER_TYPE_MAX", "Must be between 1 and 100.")
        if "around" in query:
            around = int(query["around"])
            index = next((i for i, x in enumerate(messages) if int(x["id"]) >= around), len(messages))
            start = max(0, min(index - limit // 2, len(messages) - limit))
            page = messages[start : start + limit]
        elif "after" in query:
            page = [x for x in messages if int(x["id"]) > int(query["after"])][:limit]
        else:
            if "before" in query:
                messages = [x for x in messages if int(x["id"]) < int(query["before"])]
            page = messages[-limit:]
        return list(reversed(page))

    async def _get_messages(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self._known_channel(int(m["cid"]))
        if (
            channel.guild_id is not None
            and not self.world.bot_permissions_in(channel.id) & READ_MESSAGE_HISTORY
        ):
            return json_response([])
        page = self._page(channel.messages, rec.query)
        return json_response(
            [self.world.visible_to_bot(x, content_allowed=self.world.message_content_intent) for x in page]
        )

    async def _get_message(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        msg = self.world.find_message(int(m["cid"]), int(m["mid"]))
        return json_response(
            self.world.visible_to_bot(msg, content_allowed=self.world.message_content_intent)
        )

    async def _patch_message(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        msg = self.world.find_message(int(m["cid"]), int(m["mid"]))
        if int(msg["author"]["id"]) != self.world.bot_user_id:
            raise RestError(403, 50005, "Cannot edit a message authored by another user")
        self.apply_edit(msg, rec.json or {}, rec.files)
        await self.gateway.dispatch_message("MESSAGE_UPDATE", msg)
        return json_response(msg)

    async def delete_stored(self, msg: JSON) -> None:
        """Remove a message, remember the id, dispatch MESSAGE_DELETE (unless ephemeral)."""
        mid = int(msg["id"])
        self.world.unstore_message(mid)
        self.world.deleted_message_ids.add(mid)
        for record in self.sent:
            if record.message is msg:
                record.deleted = True
        if not int(msg.get("flags", 0)) & FLAG_EPHEMERAL:
            event = {"id": msg["id"], "channel_id": msg["channel_id"]}
            if "guild_id" in msg:
                event["guild_id"] = msg["guild_id"]
            await self.gateway.dispatch("MESSAGE_DELETE", event, intent=self.gateway.message_intent(msg))

    async def _delete_message(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self._known_channel(int(m["cid"]))
        msg = self.world.find_message(channel.id, int(m["mid"]))
        if int(msg["author"]["id"]) != self.world.bot_user_id:
            if channel.guild_id is None:
                raise RestError(403, 50003, "Cannot execute action on a DM channel")
            self.world.require_bot_permission(channel.id, MANAGE_MESSAGES)
        await self.delete_stored(msg)
        return no_content()

    async def _bulk_delete(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self._known_channel(int(m["cid"]))
        if channel.guild_id is None:
            raise RestError(403, 50003, "Cannot execute action on a DM channel")
        self.world.require_bot_permission(channel.id, MANAGE_MESSAGES)
        ids = [int(x) for x in (rec.json or {}).get("messages", [])]
        if not 2 <= len(ids) <= 100:
            raise form_error("messages", "BASE_TYPE_BAD_LENGTH", "Must be between 2 and 100 in length.")
        for mid in ids:
            msg = self.world.message_index.get(mid)
            if msg is not None and int(msg["channel_id"]) == channel.id:
                self.world.unstore_message(mid)
                self.world.deleted_message_ids.add(mid)
        event = {
            "ids": [str(i) for i in ids],
            "channel_id": str(channel.id),
            "guild_id": str(channel.guild_id),
        }
        await self.gateway.dispatch("MESSAGE_DELETE_BULK", event, intent=1 << 9)
        return no_content()

    async def _react(self, rec: RecordedRequest, m: re.Match[str], add: bool) -> web.Response:
        channel = self._known_channel(int(m["cid"]))
        msg = self.world.find_message(channel.id, int(m["mid"]))
        name = m["emoji"]
        emoji: JSON = {"id": None, "name": name}
        if ":" in name:
            emoji = {"name": name.split(":")[0], "id": name.split(":")[1]}
        reactions: list[JSON] = msg.setdefault("reactions", [])
        existing = next((r for r in reactions if r["emoji"] == emoji), None)
        if add and (existing is None or not existing["me"]):
            if existing is None:
                reactions.append({"emoji": emoji, "count": 1, "me": True})
            else:
                existing.update(count=existing["count"] + 1, me=True)
        elif not add and existing is not None and existing["me"]:
            existing.update(count=existing["count"] - 1, me=False)
            if existing["count"] <= 0:
                reactions.remove(existing)
        event = {
            "user_id": str(self.world.bot_user_id),
            "channel_id": msg["channel_id"],
            "message_id": msg["id"],
            "emoji": emoji,
        }
        if "guild_id" in msg:
            event["guild_id"] = msg["guild_id"]
        intent = INTENT_GUILD_MESSAGE_REACTIONS if "guild_id" in msg else INTENT_DIRECT_MESSAGE_REACTIONS
        await self.gateway.dispatch(
            "MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE", event, intent=intent
        )
        return no_content()

    async def _add_reaction(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return await self._react(rec, m, True)

    async def _remove_reaction(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return await self._react(rec, m, False)

    async def _typing(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        self._known_channel(int(m["cid"]))
        self.typing.append(int(m["cid"]))
        return no_content()

    async def _get_channel(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return json_response(self.world.channel_payload(self._known_channel(int(m["cid"])).id))

    async def _patch_channel(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self._known_channel(int(m["cid"]))
        body: JSON = rec.json or {}
        if channel.type in THREAD_TYPES and channel.owner_id != self.world.bot_user_id:
            # Renaming, locking or archiving a thread someone else started needs Manage Threads.
            self.world.require_bot_permission(channel.parent_id or channel.id, MANAGE_THREADS)
        if "name" in body:
            if not 1 <= len(str(body["name"])) <= 100:
                raise form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
            channel.name = body["name"]
        if "archived" in body:
            channel.archived = bool(body["archived"])
        if "locked" in body:
            channel.locked = bool(body["locked"])
        payload = self.world.channel_payload(channel.id)
        await self.gateway.dispatch(
            "THREAD_UPDATE" if channel.type in THREAD_TYPES else "CHANNEL_UPDATE",
            payload,
            intent=INTENT_GUILDS,
        )
        return json_response(payload)

    def _new_thread(
        self, parent: ChannelRecord, name: str, type_: int, thread_id: int | None
    ) -> ChannelRecord:
        if parent.guild_id is None:
            raise RestError(400, 50024, "Cannot execute action on this channel type")
        self.world.require_bot_permission(parent.id, CREATE_PUBLIC_THREADS)
        if not 1 <= len(name) <= 100:
            raise form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        thread = ChannelRecord(
            id=thread_id or self.world.snowflakes.next(),
            type=type_,
            name=name,
            guild_id=parent.guild_id,
            parent_id=parent.id,
            owner_id=self.world.bot_user_id,
        )
        self.world.channels[thread.id] = thread
        self.world.guild(parent.guild_id).channel_ids.append(thread.id)
        return thread

    async def _thread_from_message(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        parent = self._known_channel(int(m["cid"]))
        msg = self.world.find_message(parent.id, int(m["mid"]))
        body: JSON = rec.json or {}
        thread = self._new_thread(
            parent, str(body.get("name", "")), 10 if parent.type == 5 else 11, int(msg["id"])
        )
        payload = self.world.channel_payload(thread.id)
        msg["thread"] = payload
        await self.gateway.dispatch("THREAD_CREATE", {**payload, "newly_created": True}, intent=INTENT_GUILDS)
        return json_response(payload, 201)

    async def _create_thread(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        parent = self._known_channel(int(m["cid"]))
        body: JSON = rec.json or {}
        if parent.type in (15, 16):
            message_body: JSON = body.get("message") or {}
            validate_message_body(
                message_body, rec.files, upload_limit=self.world.upload_limit, require_content=True
            )
            thread = self._new_thread(parent, str(body.get("name", "")), 11, None)
            starter = self._bot_message(thread, message_body, rec.files, msg_id=thread.id)
            self.world.store_message(starter)
            self.record_sent(starter, "channel", message_body, rec.files)
            payload = self.world.channel_payload(thread.id)
            await self.gateway.dispatch(
                "THREAD_CREATE", {**payload, "newly_created": True}, intent=INTENT_GUILDS
            )
            await self.gateway.dispatch_message("MESSAGE_CREATE", starter)
            return json_response({**payload, "message": starter}, 201)
        type_ = int(body.get("type") or 12)
        thread = self._new_thread(parent, str(body.get("name", "")), type_, None)
        payload = self.world.channel_payload(thread.id)
        await self.gateway.dispatch("THREAD_CREATE", {**payload, "newly_created": True}, intent=INTENT_GUILDS)
        return json_response(payload, 201)

    def _known_guild(self, m: re.Match[str]) -> int:
        gid = int(m["gid"])
        if gid not in self.world.guilds or not self.world.guilds[gid].bot_joined:
            raise RestError(404, 10004, "Unknown Guild")
        return gid

    async def _get_guild(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        gid = self._known_guild(m)
        payload = self.world.guild_payload(gid)
        if rec.query.get("with_counts") in ("1", "true", "True"):
            count = len(self.world.guild(gid).members)
            payload.update(approximate_member_count=count, approximate_presence_count=count)
        return json_response(payload)

    async def _get_guild_channels(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        guild = self.world.guild(self._known_guild(m))
        out = [
            self.world.channel_payload(c)
            for c in guild.channel_ids
            if self.world.channels[c].type not in THREAD_TYPES
        ]
        return json_response(out)

    async def _get_roles(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return json_response(list(self.world.guild(self._known_guild(m)).roles.values()))

    async def _list_members(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        gid = self._known_guild(m)
        after = int(rec.query.get("after", "0"))
        limit = int(rec.query.get("limit", "1"))
        uids = sorted(u for u in self.world.guild(gid).members if u > after)[:limit]
        return json_response([self.world.member_payload(gid, u) for u in uids])

    def _member_or_404(self, m: re.Match[str]) -> tuple[int, int]:
        gid, uid = self._known_guild(m), int(m["uid"])
        if uid not in self.world.guild(gid).members:
            raise RestError(404, 10007, "Unknown Member")
        return gid, uid

    async def _get_member(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        gid, uid = self._member_or_404(m)
        return json_response(self.world.member_payload(gid, uid))

    def _audit_reason(self, rec: RecordedRequest) -> str | None:
        reason = rec.headers.get("X-Audit-Log-Reason")
        return urllib.parse.unquote(reason) if reason is not None else None

    async def _patch_member(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        gid, uid = self._member_or_404(m)
        guild = self.world.guild(gid)
        member = guild.members[uid]
        body: JSON = rec.json or {}
        if "communication_disabled_until" in body:
            if not self.world.member_permissions(gid, self.world.bot_user_id) & MODERATE_MEMBERS:
                raise RestError(403, 50013, "Missing Permissions")
            if (
                uid == guild.owner_id
                or self.world.member_permissions(gid, uid) & ADMINISTRATOR
                or uid == self.world.bot_user_id
            ):
                raise RestError(403, 50013, "Missing Permissions")
            until = body["communication_disabled_until"]
            if until is not None:
                when = dt.datetime.fromisoformat(str(until))
                if when.tzinfo is None:
                    when = when.replace(tzinfo=dt.UTC)
                if when - utcnow() > dt.timedelta(days=28, minutes=1):
                    raise form_error(
                        "communication_disabled_until", "BASE_TYPE_BAD_INT", "Timeout must be 28 days or less"
                    )
            member.communication_disabled_until = until
            self.timeouts.append(
                {
                    "guild_id": gid,
                    "user_id": uid,
                    "communication_disabled_until": until,
                    "reason": self._audit_reason(rec),
                    "time": rec.time,
                }
            )
        if "nick" in body:
            member.nick = body["nick"]
        if "roles" in body:
            member.roles = [int(r) for r in body["roles"]]
        payload = self.world.member_payload(gid, uid)
        await self.gateway.dispatch(
            "GUILD_MEMBER_UPDATE", {**payload, "guild_id": str(gid)}, intent=INTENT_GUILD_MEMBERS
        )
        return json_response(payload)

    async def _kick_member(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        gid, uid = self._member_or_404(m)
        if (
            not self.world.member_permissions(gid, self.world.bot_user_id) & KICK_MEMBERS
            or uid == self.world.guild(gid).owner_id
        ):
            raise RestError(403, 50013, "Missing Permissions")
        del self.world.guild(gid).members[uid]
        self.kicks.append(
            {"guild_id": gid, "user_id": uid, "reason": self._audit_reason(rec), "time": rec.time}
        )
        event = {"guild_id": str(gid), "user": self.world.user_payload(uid)}
        await self.gateway.dispatch("GUILD_MEMBER_REMOVE", event, intent=INTENT_GUILD_MEMBERS)
        return no_content()

    async def _ban_member(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        gid, uid = self._known_guild(m), int(m["uid"])
        if (
            not self.world.member_permissions(gid, self.world.bot_user_id) & BAN_MEMBERS
            or uid == self.world.guild(gid).owner_id
        ):
            raise RestError(403, 50013, "Missing Permissions")
        self.world.guild(gid).members.pop(uid, None)
        self.bans.append(
            {"guild_id": gid, "user_id": uid, "reason": self._audit_reason(rec), "time": rec.time}
        )
        return no_content()

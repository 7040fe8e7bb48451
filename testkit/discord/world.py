"""World model of the fake Discord: users, guilds, channels, roles, members, messages, and their payloads."""

from __future__ import annotations

import datetime as dt

from .model import (
    _ROLE_MENTION,
    _USER_MENTION,
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    APP_FLAG_GATEWAY_MESSAGE_CONTENT,
    APP_FLAG_GATEWAY_MESSAGE_CONTENT_LIMITED,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    DM_TYPES,
    FLAG_EPHEMERAL,
    JSON,
    MENTION_EVERYONE,
    THREAD_TYPES,
    ChannelRecord,
    GuildRecord,
    MemberRecord,
    RestError,
    SnowflakeFactory,
    StoredFile,
    guess_content_type,
    image_size,
    iso,
    utcnow,
)


class DiscordWorld:
    """The state of the fake Discord and payload builders (no I/O here)."""

    def __init__(
        self, *, message_content_intent: bool, bot_user_id: int, application_id: int, token: str
    ) -> None:
        self.message_content_intent = message_content_intent
        self.bot_user_id = bot_user_id
        self.application_id = application_id
        self.token = token
        self.base_url = ""
        self.port = 0
        self.upload_limit = 10 * 1024 * 1024
        # The shard count GET /gateway/bot recommends, and the count add_guild(shard=...) places guilds by.
        self.shard_count = 1
        self.snowflakes = SnowflakeFactory()
        self.users: dict[int, JSON] = {}
        self.guilds: dict[int, GuildRecord] = {}
        self.channels: dict[int, ChannelRecord] = {}
        self.files: dict[int, StoredFile] = {}
        self.message_index: dict[int, JSON] = {}  # every message by id, ephemeral ones included
        self.dm_channel_of: dict[int, int] = {}  # user id -> DM channel id
        self.blocked_dm_users: set[int] = set()
        self.deleted_message_ids: set[int] = set()
        self.users[bot_user_id] = self._new_user(bot_user_id, "FakeBot", bot=True)
        self.app_owner_id = self.snowflakes.next()
        self.users[self.app_owner_id] = self._new_user(self.app_owner_id, "app-owner")

    # ----------------------------------------------------------------- world building

    def _new_user(self, user_id: int, name: str, *, bot: bool = False) -> JSON:
        return {
            "id": str(user_id),
            "username": name,
            "discriminator": "0",
            "global_name": None if bot else name,
            "avatar": None,
            "bot": bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
        }

    def add_user(self, user_id: int | None = None, name: str = "user", *, bot: bool = False) -> int:
        """A user known to Discord (not necessarily a member of any guild); returns the id."""
        uid = user_id if user_id is not None else self.snowflakes.next()
        if uid not in self.users:
            self.users[uid] = self._new_user(uid, name, bot=bot)
        return uid

    def build_guild(self, name: str, owner_id: int | None, *, shard: int | None = None) -> GuildRecord:
        """A guild; with ``shard``, its id lands on that shard of ``shard_count``."""
        gid = (
            self.snowflakes.next()
            if shard is None
            else self.snowflakes.next_on_shard(shard, self.shard_count)
        )
        bot_role_id = self.snowflakes.next()
        owner = owner_id if owner_id is not None else self.snowflakes.next()
        everyone = self.role_payload(gid, "@everyone", DEFAULT_EVERYONE_PERMISSIONS, position=0)
        bot_role = self.role_payload(
            bot_role_id, self.users[self.bot_user_id]["username"], DEFAULT_BOT_PERMISSIONS, 1
        )
        bot_role["managed"] = True
        bot_role["tags"] = {"bot_id": str(self.bot_user_id)}
        guild = GuildRecord(
            id=gid,
            name=name,
            owner_id=owner,
            roles={gid: everyone, bot_role_id: bot_role},
            bot_role_id=bot_role_id,
            bot_permissions=DEFAULT_BOT_PERMISSIONS,
        )
        guild.members[self.bot_user_id] = MemberRecord(self.bot_user_id, [bot_role_id], iso(utcnow()))
        self.guilds[gid] = guild
        return guild

    def role_payload(self, role_id: int, name: str, permissions: int, position: int) -> JSON:
        return {
            "id": str(role_id),
            "name": name,
            "permissions": str(permissions),
            "position": position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    def build_channel(
        self, guild_id: int | None, name: str | None, type_: int, parent_id: int | None
    ) -> ChannelRecord:
        cid = self.snowflakes.next()
        channel = ChannelRecord(id=cid, type=type_, name=name, guild_id=guild_id, parent_id=parent_id)
        if guild_id is not None:
            guild = self.guild(guild_id)
            channel.position = len(guild.channel_ids)
            guild.channel_ids.append(cid)
            if type_ in THREAD_TYPES:
                if parent_id is None or parent_id not in self.channels:
                    raise AssertionError(f"a thread (type {type_}) needs an existing parent_id")
                channel.owner_id = self.bot_user_id
        self.channels[cid] = channel
        return channel

    def remove_channel(self, channel_id: int) -> ChannelRecord:
        """Delete a channel (and, as Discord does, the threads under it) with their messages."""
        channel = self.channel(channel_id)
        doomed = [channel] + [
            c for c in self.channels.values() if c.parent_id == channel_id and c.type in THREAD_TYPES
        ]
        for record in doomed:
            for msg in list(record.messages):
                self.message_index.pop(int(msg["id"]), None)
            del self.channels[record.id]
            if record.guild_id is not None:
                ids = self.guild(record.guild_id).channel_ids
                if record.id in ids:
                    ids.remove(record.id)
        return channel

    def guild(self, guild_id: int) -> GuildRecord:
        """The guild or a clear AssertionError."""
        try:
            return self.guilds[guild_id]
        except KeyError:
            raise AssertionError(f"unknown guild {guild_id} (fake Discord)") from None

    def channel(self, channel_id: int) -> ChannelRecord:
        """The channel or a clear AssertionError."""
        try:
            return self.channels[channel_id]
        except KeyError:
            raise AssertionError(f"unknown channel {channel_id} (fake Discord)") from None

    def dm_channel(self, user_id: int) -> int:
        """The DM channel between the bot and ``user_id`` (created on first use)."""
        if user_id not in self.users:
            raise AssertionError(f"unknown user {user_id}")
        if user_id not in self.dm_channel_of:
            channel = self.build_channel(None, None, 1, None)
            channel.recipient_id = user_id
            self.dm_channel_of[user_id] = channel.id
        return self.dm_channel_of[user_id]

    # ----------------------------------------------------------------- permissions

    def member_permissions(self, guild_id: int, user_id: int) -> int:
        """Guild-level permissions of a member (the bot: exactly what set_bot_permissions gave)."""
        guild = self.guild(guild_id)
        if user_id == self.bot_user_id:
            perms = guild.bot_permissions
        elif user_id == guild.owner_id:
            return ALL_PERMISSIONS
        else:
            perms = int(guild.roles[guild.id]["permissions"])
            member = guild.members.get(user_id)
            for role_id in member.roles if member else []:
                role = guild.roles.get(role_id)
                if role is not None:
                    perms |= int(role["permissions"])
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms

    def bot_permissions_in(self, channel_id: int) -> int:
        """The bot's permissions in a channel (everything in DMs)."""
        channel = self.channel(channel_id)
        if channel.guild_id is None:
            return ALL_PERMISSIONS
        return self.member_permissions(channel.guild_id, self.bot_user_id)

    def require_bot_permission(self, channel_id: int, bit: int) -> None:
        """403 50013 Missing Permissions unless the bot has ``bit`` in the channel."""
        if not self.bot_permissions_in(channel_id) & bit:
            raise RestError(403, 50013, "Missing Permissions")

    # ----------------------------------------------------------------- payloads

    def user_payload(self, user_id: int) -> JSON:
        """A user object (unknown ids get a stub user)."""
        if user_id not in self.users:
            self.users[user_id] = self._new_user(user_id, f"user{user_id}")
        return dict(self.users[user_id])

    def member_payload(self, guild_id: int, user_id: int, *, with_user: bool = True) -> JSON:
        """A guild member object."""
        guild = self.guild(guild_id)
        member = guild.members.get(user_id)
        if member is None:
            raise AssertionError(f"user {user_id} is not a member of guild {guild_id}; add_member() first")
        payload: JSON = {
            "roles": [str(r) for r in member.roles],
            "nick": member.nick,
            "avatar": None,
            "banner": None,
            "joined_at": member.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": member.communication_disabled_until,
        }
        if with_user:
            payload["user"] = self.user_payload(user_id)
        return payload

    def channel_payload(self, channel_id: int) -> JSON:
        """A channel object for any kind of channel."""
        c = self.channel(channel_id)
        last_id = c.messages[-1]["id"] if c.messages else None
        if c.type in DM_TYPES:
            assert c.recipient_id is not None
            return {
                "id": str(c.id),
                "type": c.type,
                "recipients": [self.user_payload(c.recipient_id)],
                "last_message_id": last_id,
                "flags": 0,
            }
        payload: JSON = {
            "id": str(c.id),
            "type": c.type,
            "guild_id": str(c.guild_id),
            "name": c.name,
            "position": c.position,
            "permission_overwrites": [],
            "parent_id": str(c.parent_id) if c.parent_id else None,
            "flags": 0,
            "nsfw": False,
            "rate_limit_per_user": 0,
        }
        if c.type in (0, 5, 15, 16):
            payload.update(topic=None, last_message_id=last_id, default_auto_archive_duration=1440)
        if c.type in (15, 16):
            payload.update(
                available_tags=[],
                default_reaction_emoji=None,
                default_thread_rate_limit_per_user=0,
                default_sort_order=None,
                default_forum_layout=0,
            )
        if c.type in (2, 13):
            payload.update(bitrate=64000, user_limit=0, rtc_region=None, last_message_id=last_id)
        if c.type in THREAD_TYPES:
            payload.update(
                owner_id=str(c.owner_id or self.bot_user_id),
                last_message_id=last_id,
                message_count=len(c.messages),
                member_count=1,
                total_message_sent=len(c.messages),
                applied_tags=[],
                thread_metadata={
                    "archived": c.archived,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": iso(utcnow()),
                    "locked": c.locked,
                    "invitable": True,
                    "create_timestamp": iso(utcnow()),
                },
            )
        payload.update(c.extra)
        return payload

    def guild_payload(self, guild_id: int) -> JSON:
        """A REST guild object (no channels or members)."""
        g = self.guild(guild_id)
        return {
            "id": str(g.id),
            "name": g.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(g.owner_id),
            "roles": [dict(r) for r in g.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": g.premium_tier,
            "premium_subscription_count": 0,
            "preferred_locale": g.locale,
            "system_channel_id": str(g.system_channel_id) if g.system_channel_id else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "application_id": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "premium_progress_bar_enabled": False,
        }

    def guild_create_payload(self, guild_id: int) -> JSON:
        """The GUILD_CREATE event body: guild + channels, threads, members."""
        g = self.guild(guild_id)
        payload = self.guild_payload(guild_id)
        channels = [self.channels[c] for c in g.channel_ids]
        payload.update(
            unavailable=False,
            large=False,
            member_count=len(g.members),
            joined_at=g.members[self.bot_user_id].joined_at,
            channels=[self.channel_payload(c.id) for c in channels if c.type not in THREAD_TYPES],
            threads=[
                self.channel_payload(c.id) for c in channels if c.type in THREAD_TYPES and not c.archived
            ],
            members=[self.member_payload(guild_id, uid) for uid in g.members],
            voice_states=[],
            presences=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
        )
        return payload

    def attachment_payload(
        self,
        filename: str,
        data: bytes,
        content_type: str | None,
        *,
        channel_id: int = 0,
        flags: int = 0,
        duration_secs: float | None = None,
        waveform: str | None = None,
        description: str | None = None,
    ) -> JSON:
        """Store bytes on the CDN and return the attachment object pointing at them."""
        att_id = self.snowflakes.next()
        ctype = content_type if content_type is not None else guess_content_type(filename)
        self.files[att_id] = StoredFile(filename, data, ctype)
        url = f"{self.base_url}/attachments/{channel_id}/{att_id}/{filename}"
        payload: JSON = {
            "id": str(att_id),
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url.replace("/attachments/", "/media/attachments/", 1),
            "flags": flags,
        }
        if ctype is not None:
            payload["content_type"] = ctype
        if description is not None:
            payload["description"] = description
        if duration_secs is not None:
            payload["duration_secs"] = duration_secs
        if waveform is not None:
            payload["waveform"] = waveform
        if ctype is not None and ctype.startswith("image/"):
            size = image_size(data)
            if size is not None:
                payload["width"], payload["height"] = size
        return payload

    # ----------------------------------------------------------------- messages

    def compute_mentions(
        self,
        content: str,
        guild_id: int | None,
        allowed_mentions: JSON | None,
        *,
        author_permissions: int,
        replied_author_id: int | None,
        author_id: int,
    ) -> tuple[list[int], list[int], bool]:
        """Which users/roles/everyone get pinged, the way Discord decides from ``allowed_mentions``."""
        if allowed_mentions is None:
            parse = {"users", "roles", "everyone"}
            allowed_users: set[int] = set()
            allowed_roles: set[int] = set()
            replied = True
        else:
            parse = set(allowed_mentions.get("parse") or [])
            allowed_users = {int(u) for u in allowed_mentions.get("users") or []}
            allowed_roles = {int(r) for r in allowed_mentions.get("roles") or []}
            replied = bool(allowed_mentions.get("replied_user", False))
        users: list[int] = []
        for raw in _USER_MENTION.findall(content):
            uid = int(raw)
            if ("users" in parse or uid in allowed_users) and uid in self.users and uid not in users:
                users.append(uid)
        if replied and replied_author_id is not None and replied_author_id != author_id:
            if replied_author_id not in users:
                users.append(replied_author_id)
        roles: list[int] = []
        everyone = False
        if guild_id is not None:
            guild = self.guild(guild_id)
            for raw in _ROLE_MENTION.findall(content):
                rid = int(raw)
                role = guild.roles.get(rid)
                if role is None or rid in roles or not ("roles" in parse or rid in allowed_roles):
                    continue
                if role.get("mentionable") or author_permissions & MENTION_EVERYONE:
                    roles.append(rid)
            everyone = (
                ("@everyone" in content or "@here" in content)
                and "everyone" in parse
                and bool(author_permissions & MENTION_EVERYONE)
            )
        return users, roles, everyone

    def mention_payloads(self, guild_id: int | None, user_ids: list[int]) -> list[JSON]:
        """``mentions`` array: users, with a partial ``member`` when in a guild."""
        out: list[JSON] = []
        for uid in user_ids:
            user = self.user_payload(uid)
            if guild_id is not None and uid in self.guild(guild_id).members:
                user["member"] = self.member_payload(guild_id, uid, with_user=False)
            out.append(user)
        return out

    def build_message(
        self,
        channel_id: int,
        author_id: int,
        content: str = "",
        *,
        embeds: list[JSON] | None = None,
        attachments: list[JSON] | None = None,
        components: list[JSON] | None = None,
        sticker_items: list[JSON] | None = None,
        flags: int = 0,
        type_: int = 0,
        allowed_mentions: JSON | None = None,
        reference_message_id: int | None = None,
        webhook_id: int | None = None,
        when: dt.datetime | None = None,
        tts: bool = False,
        nonce: str | int | None = None,
        extra: JSON | None = None,
    ) -> JSON:
        """A complete message object (not stored)."""
        channel = self.channel(channel_id)
        msg_id = self.snowflakes.at(when) if when is not None else self.snowflakes.next()
        timestamp = when if when is not None else utcnow()
        guild_id = channel.guild_id
        author: JSON
        if webhook_id is not None and webhook_id != self.application_id:
            author = {
                "id": str(webhook_id),
                "username": "Webhook",
                "discriminator": "0000",
                "avatar": None,
                "bot": True,
            }
        else:
            author = self.user_payload(author_id)
        referenced: JSON | None = None
        if reference_message_id is not None:
            referenced = self.message_index.get(reference_message_id)
        author_perms = (
            self.member_permissions(guild_id, author_id) if guild_id is not None else ALL_PERMISSIONS
        )
        if guild_id is not None and author_id not in self.guild(guild_id).members:
            author_perms = 0
        users, roles, everyone = self.compute_mentions(
            content,
            guild_id,
            allowed_mentions,
            author_permissions=author_perms,
            replied_author_id=int(referenced["author"]["id"]) if referenced else None,
            author_id=author_id,
        )
        msg: JSON = {
            "id": str(msg_id),
            "type": 19 if reference_message_id is not None and type_ == 0 else type_,
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": iso(timestamp),
            "edited_timestamp": None,
            "tts": tts,
            "mention_everyone": everyone,
            "mentions": self.mention_payloads(guild_id, users),
            "mention_roles": [str(r) for r in roles],
            "attachments": list(attachments or []),
            "embeds": list(embeds or []),
            "components": list(components or []),
            "reactions": [],
            "pinned": False,
            "flags": flags,
        }
        if sticker_items:
            msg["sticker_items"] = list(sticker_items)
        if nonce is not None:
            msg["nonce"] = nonce
        if webhook_id is not None:
            msg["webhook_id"] = str(webhook_id)
        if guild_id is not None:
            msg["guild_id"] = str(guild_id)
            if webhook_id is None and author_id in self.guild(guild_id).members:
                msg["member"] = self.member_payload(guild_id, author_id, with_user=False)
        if reference_message_id is not None:
            msg["message_reference"] = {
                "type": 0,
                "message_id": str(reference_message_id),
                "channel_id": referenced["channel_id"] if referenced else str(channel_id),
            }
            if guild_id is not None:
                msg["message_reference"]["guild_id"] = str(guild_id)
            if referenced is not None:
                msg["referenced_message"] = {k: v for k, v in referenced.items() if k != "referenced_message"}
            else:
                msg["referenced_message"] = None
        if extra:
            msg.update(extra)
        return msg

    def store_message(self, msg: JSON) -> None:
        """Put a message in its channel (kept sorted by id) and the index."""
        channel = self.channel(int(msg["channel_id"]))
        messages = channel.messages
        message_id = int(msg["id"])
        newest = messages[-1] if messages else None
        messages.append(msg)
        if newest is not None and int(newest["id"]) > message_id:
            # A back-dated message (`when`): sort it in. A new one is the newest: sorting every channel's
            # whole history on each message made the fake's send rate fall as a benchmark ran.
            messages.sort(key=lambda m: int(m["id"]))
        self.message_index[message_id] = msg

    def unstore_message(self, message_id: int) -> JSON | None:
        """Remove a message from its channel; returns it (or None)."""
        msg = self.message_index.pop(message_id, None)
        if msg is None:
            return None
        channel = self.channels.get(int(msg["channel_id"]))
        if channel is not None:
            channel.messages = [m for m in channel.messages if m is not msg]
        return msg

    def find_message(self, channel_id: int, message_id: int) -> JSON:
        """A stored channel message or 404 10008 Unknown Message."""
        msg = self.message_index.get(message_id)
        if msg is None or int(msg["channel_id"]) != channel_id or msg.get("flags", 0) & FLAG_EPHEMERAL:
            raise RestError(404, 10008, "Unknown Message")
        return msg

    def visible_to_bot(self, msg: JSON, *, content_allowed: bool) -> JSON:
        """The message as the bot gets it: content fields emptied without the message-content intent."""
        if content_allowed or self._content_exempt(msg):
            return msg
        out = dict(msg)
        out.update(content="", embeds=[], attachments=[], components=[])
        out.pop("poll", None)
        if isinstance(out.get("referenced_message"), dict):
            out["referenced_message"] = self.visible_to_bot(out["referenced_message"], content_allowed=False)
        return out

    def _content_exempt(self, msg: JSON) -> bool:
        if int(msg["author"]["id"]) == self.bot_user_id:
            return True
        if "guild_id" not in msg:
            return True
        return any(int(m["id"]) == self.bot_user_id for m in msg.get("mentions", []))

    def application_flags(self) -> int:
        """The application flags that grant the message-content intent when it is enabled."""
        if self.message_content_intent:
            return APP_FLAG_GATEWAY_MESSAGE_CONTENT | APP_FLAG_GATEWAY_MESSAGE_CONTENT_LIMITED
        return 0

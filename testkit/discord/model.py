"""Constants and small records of the fake Discord: permission bits, intents, flags, snowflakes, errors."""

from __future__ import annotations

import datetime as dt
import io
import mimetypes
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import discord

JSON = dict[str, Any]

DISCORD_EPOCH_MS = 1420070400000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CONNECT = 1 << 20
SPEAK = 1 << 21
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
CREATE_PUBLIC_THREADS = 1 << 35
MANAGE_THREADS = 1 << 34
SEND_MESSAGES_IN_THREADS = 1 << 38
MODERATE_MEMBERS = 1 << 40
SEND_VOICE_MESSAGES = 1 << 46
ALL_PERMISSIONS: int = discord.Permissions.all().value
DEFAULT_EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CONNECT
    | SPEAK
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
)
DEFAULT_BOT_PERMISSIONS = ALL_PERMISSIONS & ~ADMINISTRATOR

# Gateway intents.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15

# Message flags.
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_VOICE_MESSAGE = 1 << 13

# Application flags.
APP_FLAG_GATEWAY_MESSAGE_CONTENT = 1 << 18
APP_FLAG_GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19

THREAD_TYPES = frozenset({10, 11, 12})
DM_TYPES = frozenset({1, 3})

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


def utcnow() -> dt.datetime:
    """Aware UTC now."""
    return dt.datetime.now(dt.UTC)


def iso(when: dt.datetime) -> str:
    """ISO 8601 with timezone (naive datetimes are taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.isoformat()


class SnowflakeFactory:
    """Time-based snowflakes, so discord.py's ``created_at`` and ``history(after=datetime)`` work."""

    def __init__(self) -> None:
        self._last = 0
        self._increment = 0

    def at(self, when: dt.datetime) -> int:
        """A fresh snowflake whose timestamp is ``when``."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        ms = max(int(when.timestamp() * 1000) - DISCORD_EPOCH_MS, 0)
        self._increment = (self._increment + 1) % (1 << 22)
        return (ms << 22) | self._increment

    def next(self) -> int:
        """A fresh snowflake for now, strictly greater than every earlier ``next()``."""
        sid = max(self.at(utcnow()), self._last + 1)
        self._last = sid
        return sid

    def next_on_shard(self, shard: int, shard_count: int) -> int:
        """A fresh snowflake (as ``next()``) whose guild lands on ``shard``: ``(id >> 22) % shard_count``.
        The timestamp moves forward by less than ``shard_count`` milliseconds to get there."""
        if not 0 <= shard < shard_count:
            raise AssertionError(f"shard {shard} is not below the shard count {shard_count}")
        sid = self.next()
        ms = (sid >> 22) + (shard - (sid >> 22)) % shard_count
        if ms != sid >> 22:
            sid = ms << 22
        self._last = sid
        return sid


class UploadedFile(NamedTuple):
    """One file part of a multipart request."""

    filename: str
    data: bytes
    content_type: str | None


class RestError(Exception):
    """Raised by route handlers to answer with a Discord error body."""

    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: JSON = {"message": message, "code": code}
        if errors is not None:
            self.body["errors"] = errors


def form_error(field_name: str, code: str, message: str) -> RestError:
    """A 400 Invalid Form Body (50035) naming one field."""
    return RestError(
        400, 50035, "Invalid Form Body", {field_name: {"_errors": [{"code": code, "message": message}]}}
    )


@dataclass
class MemberRecord:
    """A guild member."""

    user_id: int
    roles: list[int]
    joined_at: str
    nick: str | None = None
    communication_disabled_until: str | None = None


@dataclass
class GuildRecord:
    """A guild and what lives in it."""

    id: int
    name: str
    owner_id: int
    roles: dict[int, JSON]
    bot_role_id: int
    bot_permissions: int
    members: dict[int, MemberRecord] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    bot_joined: bool = True
    locale: str = "en-US"
    premium_tier: int = 0
    system_channel_id: int | None = None


@dataclass
class ChannelRecord:
    """A channel, thread or DM channel with its stored messages (sorted by id)."""

    id: int
    type: int
    name: str | None
    guild_id: int | None
    parent_id: int | None = None
    recipient_id: int | None = None
    owner_id: int | None = None
    position: int = 0
    archived: bool = False
    locked: bool = False
    messages: list[JSON] = field(default_factory=list)
    extra: JSON = field(default_factory=dict)


@dataclass
class StoredFile:
    """Bytes served by the fake CDN."""

    filename: str
    data: bytes
    content_type: str | None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of an image, if Pillow can read it."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return int(img.width), int(img.height)
    except Exception:
        return None


def guess_content_type(filename: str) -> str | None:
    """Content type from the file name, like Discord does for uploads."""
    guessed, _ = mimetypes.guess_type(filename)
    if guessed is None and filename.lower().endswith(".ogg"):
        return "audio/ogg"
    return guessed

"""Reads attachments from Discord's own file hosts only, with timeouts and a size cap enforced as bytes arrive."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import aiohttp
import discord

from bot import errors

log = logging.getLogger(__name__)
# Where Discord stores attachments. The API base's own host is added at run time, so a client pointed at
# another Discord-compatible server (a test double among them) reads files from it without a setting.
DISCORD_FILE_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
CHUNK_BYTES = 64 * 1024


class AttachmentUnavailable(errors.BotError):
    """An attachment that could not be read: refused address, timeout, or over its size cap."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def user_message(self, locale: str | None = None) -> str:
        # Not yet in the catalog (next session): the reader sees the English sentence.
        return self.message


def allowed_hosts() -> frozenset[str]:
    api_host = urlsplit(discord.http.Route.BASE).hostname
    return DISCORD_FILE_HOSTS | ({api_host} if api_host else set())


class AttachmentReader:
    """One HTTP session for every attachment the bot reads (never the URL's choice of server)."""

    def __init__(self, *, timeout: float) -> None:
        # A server that accepts and never answers must not hold a command for minutes.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(10.0, timeout), sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def read(self, attachment: discord.Attachment, *, max_bytes: int) -> bytes:
        """The attachment's bytes; AttachmentUnavailable when its address is not Discord's, it times out,
        or it turns out larger than `max_bytes` (checked from the declared size, then while streaming)."""
        name = attachment.filename
        if attachment.size > max_bytes:
            raise AttachmentUnavailable(self._too_big(name, max_bytes))
        url = urlsplit(attachment.url)
        if url.scheme not in ("https", "http") or url.hostname not in allowed_hosts():
            log.warning("refused to fetch an attachment from a host that is not Discord's: %s", url.hostname)
            raise AttachmentUnavailable(
                f"I can't open `{name}`: it is not stored on Discord, and I only read files Discord stores. "
                "Upload the file itself to Discord and try again."
            )
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(attachment.url) as response:
                if response.status != 200:
                    raise AttachmentUnavailable(
                        f"Discord could not give me `{name}` (HTTP {response.status}). Post it again and retry."
                    )
                data = bytearray()
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    data += chunk
                    if len(data) > max_bytes:
                        raise AttachmentUnavailable(self._too_big(name, max_bytes))
                return bytes(data)
        except TimeoutError:
            raise AttachmentUnavailable(
                f"Discord's file server did not send `{name}` in time. Try again in a moment."
            ) from None
        except aiohttp.ClientError as exc:
            log.info("reading an attachment failed: %s", type(exc).__name__)
            raise AttachmentUnavailable(
                f"I could not download `{name}` from Discord. Try again in a moment."
            ) from exc

    @staticmethod
    def _too_big(name: str, max_bytes: int) -> str:
        return f"`{name}` is larger than {max_bytes / 1024 / 1024:.0f} MiB, the most I read for this."

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

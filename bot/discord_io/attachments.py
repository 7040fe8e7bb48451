"""Attachments read from Discord's own file hosts only (timeouts, size caps), sorted into images and documents."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import discord

from bot import errors
from bot.chat.documents import Document, UnreadableFile, read_document
from bot.chat.vision import image_data_url
from bot.i18n import translate
from bot.util.images import header_size

log = logging.getLogger(__name__)
# Where Discord stores attachments. The API base's own host is added at run time, so a client pointed at
# another Discord-compatible server (a test double among them) reads files from it without a setting.
DISCORD_FILE_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
CHUNK_BYTES = 64 * 1024
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".avif")
MAX_FILES_PER_MESSAGE = 4  # a mention's attachments read as context; /ask takes one


class AttachmentUnavailable(errors.BotError):
    """An attachment that could not be read: refused address, timeout, or over its size cap.

    A catalog message and its parameters, rendered in the reader's language where it is shown."""

    def __init__(self, message_id: str, **params: object) -> None:
        super().__init__(translate(message_id, None, **params))
        self.attachment_message_id = message_id
        self.attachment_params = params

    def user_message(self, locale: str | None = None) -> str:
        return translate(self.attachment_message_id, locale, **self.attachment_params)


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
            raise self._too_big(name, max_bytes)
        url = urlsplit(attachment.url)
        if url.scheme not in ("https", "http") or url.hostname not in allowed_hosts():
            log.warning("refused to fetch an attachment from a host that is not Discord's: %s", url.hostname)
            raise AttachmentUnavailable("attachment.not_discord", name=name)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(attachment.url) as response:
                if response.status != 200:
                    raise AttachmentUnavailable("attachment.http", name=name, status=response.status)
                data = bytearray()
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    data += chunk
                    if len(data) > max_bytes:
                        raise self._too_big(name, max_bytes)
                return bytes(data)
        except TimeoutError:
            raise AttachmentUnavailable("attachment.timeout", name=name) from None
        except aiohttp.ClientError as exc:
            log.info("reading an attachment failed: %s", type(exc).__name__)
            raise AttachmentUnavailable("attachment.download", name=name) from exc

    @staticmethod
    def _too_big(name: str, max_bytes: int) -> AttachmentUnavailable:
        return AttachmentUnavailable("attachment.too_large", name=name, mib=f"{max_bytes / 1024 / 1024:.0f}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


@dataclass(frozen=True)
class AskFiles:
    """A message's or an /ask's attachments, read and sorted: images for vision, documents as text."""

    image_urls: tuple[str, ...] = ()
    image_names: tuple[str, ...] = ()
    documents: tuple[Document, ...] = ()


def check_file_size(name: str, size: int, *, max_bytes: int) -> None:
    """Refuse a file from its declared size, before anything is deferred or downloaded."""
    if size > max_bytes:
        raise UnreadableFile(message_id="file.too_large", name=name, mib=f"{max_bytes / 1024 / 1024:g}")


async def read_ask_files(
    reader: AttachmentReader, attachments: Sequence[discord.Attachment], *, max_bytes: int, max_pages: int
) -> AskFiles:
    """Each attachment as an image (decided from its bytes) or a document's text; refusals name the limit."""
    urls: list[str] = []
    names: list[str] = []
    documents: list[Document] = []
    for attachment in attachments[:MAX_FILES_PER_MESSAGE]:
        check_file_size(attachment.filename, attachment.size, max_bytes=max_bytes)
        data = await reader.read(attachment, max_bytes=max_bytes)
        claims_image = (attachment.content_type or "").startswith(
            "image/"
        ) or attachment.filename.lower().endswith(IMAGE_SUFFIXES)
        # A picture format Pillow knows, or a file that says it is one (refused unless it really is one).
        if claims_image or header_size(data) is not None:
            urls.append(await image_data_url(attachment.filename, data))
            names.append(attachment.filename)
        else:
            documents.append(
                await asyncio.to_thread(read_document, attachment.filename, data, max_pages=max_pages)
            )
    return AskFiles(tuple(urls), tuple(names), tuple(documents))

"""Attachment checks: what counts as an image the model can see, decided from the bytes, not the name."""

from __future__ import annotations

import asyncio
import base64
import io

from bot import errors
from bot.util.images import check_pixels

VISION_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
MAX_VISION_BYTES = 20 * 1024 * 1024


def _sniff_image(data: bytes) -> str | None:
    # Pillow is imported where an image is opened: a bot nobody sends images holds none of it.
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            return VISION_FORMATS.get(image.format or "")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def check_image_size(filename: str, size: int) -> None:
    """Refuse an image from its declared size, before downloading it (a server may allow 100 MiB uploads)."""
    if size > MAX_VISION_BYTES:
        raise errors.InvalidInput(message_id="input.vision.too_large", name=filename)


async def image_data_url(filename: str, data: bytes) -> str:
    """A data: URL for a vision request, or InvalidInput when the bytes are not a supported image."""
    if not data:
        raise errors.InvalidInput(message_id="input.vision.empty", name=filename)
    check_image_size(filename, len(data))
    check_pixels(filename, data)
    mime = await asyncio.to_thread(_sniff_image, data)
    if mime is None:
        raise errors.InvalidInput(message_id="input.vision.unreadable", name=filename)
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"

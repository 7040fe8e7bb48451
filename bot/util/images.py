"""Image headers read before any pixel is decoded, so a small file that claims a huge canvas is refused."""

from __future__ import annotations

import io
import warnings

from bot import errors

# 40 megapixels: more than any camera photo or screen capture people share, far below what would take
# gigabytes to decode. Pillow's own guard warns at 89 megapixels and raises only at twice that.
MAX_IMAGE_PIXELS = 40_000_000


class ImageTooLarge(errors.InvalidInput):
    """An image whose header claims more pixels than the bot will decode."""


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header alone, or None when the bytes are not an image Pillow knows."""
    # Imported on first use: Pillow is resident memory a bot that never sees an image does not need.
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # reads the header only; decoding is lazy
                return image.size
    except Image.DecompressionBombError:
        return (2**31, 2**31)  # Pillow refused the header itself: far over any cap
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def check_pixels(name: str, data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse an image whose canvas is over `max_pixels` (a "decompression bomb"), before decoding it."""
    size = header_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageTooLarge(message_id="file.too_many_pixels", name=name, megapixels=max_pixels // 1_000_000)

"""/imagine's core: moderate the prompt, generate, fit Discord's upload limit, moderate the image itself."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot import errors
from bot.moderation.gate import ModerationGate
from bot.moderation.normalize import is_blank
from bot.openai_api.calls import CallContext, GeneratedImage
from bot.openai_api.gateway import OpenAIGateway
from bot.util.images import check_pixels, header_size

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

# What GPT image models accept (gpt-image-1.5); `auto` lets the model choose.
SIZES: tuple[str, ...] = ("auto", "1024x1024", "1536x1024", "1024x1536")
QUALITIES: tuple[str, ...] = ("auto", "low", "medium", "high")
MAX_PROMPT_CHARS = 32_000
# Moderation gets a smaller copy of a large image: same picture, a much lighter request.
MAX_MODERATION_BYTES = 4 * 1024 * 1024
# The most /imagine reads of a picture to edit (the API takes up to 50 MB; Discord uploads are smaller).
MAX_EDIT_IMAGE_BYTES = 25 * 1024 * 1024
_EDIT_FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}
_MIME = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}


class ImageRefused(errors.ContentRefused):
    message_id = "error.image_refused"


class ImageFlagged(errors.OutputFlagged):
    message_id = "error.image_flagged"


class TooLargeToUpload(errors.BotError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"cannot fit {limit} bytes")
        self.limit = limit

    message_id = "error.image_too_large"

    def params(self, locale: str | None) -> dict[str, object]:
        return {"mib": f"{self.limit / 1024 / 1024:.1f}"}


@dataclass(frozen=True)
class FittedImage:
    data: bytes
    extension: str  # png | webp | jpeg
    reencoded: bool


@dataclass(frozen=True)
class ImageResult:
    """A generated image ready to post."""

    data: bytes
    filename: str
    prompt: str
    revised_prompt: str | None
    size: str
    quality: str
    reencoded: bool


def _encode(image: Image.Image, extension: str, quality: int) -> bytes:
    out = io.BytesIO()
    if extension == "jpeg":
        image.convert("RGB").save(out, "JPEG", quality=quality, optimize=True)
    else:
        image.save(out, "WEBP", quality=quality, method=4)
    return out.getvalue()


def fit_upload(data: bytes, extension: str, limit: int) -> FittedImage:
    """The image as is when it fits `limit`, else WebP/JPEG at falling quality, then smaller. Blocking."""
    if len(data) <= limit:
        return FittedImage(data, extension, False)
    check_pixels("the generated image", data)
    # Pillow is imported where an image is worked on: idle memory holds none of it (docs/performance.md).
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        image = opened.copy()
    for scale in (1.0, 0.75, 0.5, 0.35, 0.25):
        if scale < 1.0:
            size = (max(16, int(image.width * scale)), max(16, int(image.height * scale)))
            candidate = image.resize(size, Image.Resampling.LANCZOS)
        else:
            candidate = image
        for target, quality in (("webp", 90), ("webp", 80), ("jpeg", 85), ("webp", 65), ("jpeg", 70)):
            encoded = _encode(candidate, target, quality)
            if len(encoded) <= limit:
                return FittedImage(encoded, target, True)
    raise TooLargeToUpload(limit)


def moderation_url(data: bytes, extension: str) -> str:
    """A data: URL of the image for the Moderation endpoint (a JPEG preview when the image is large)."""
    if len(data) > MAX_MODERATION_BYTES:
        check_pixels("the generated image", data)
        from PIL import Image

        with Image.open(io.BytesIO(data)) as opened:
            preview = opened.convert("RGB")
            preview.thumbnail((1024, 1024))
            out = io.BytesIO()
            preview.save(out, "JPEG", quality=85)
        data, extension = out.getvalue(), "jpeg"
    return f"data:{_MIME[extension]};base64,{base64.b64encode(data).decode()}"


@dataclass(frozen=True)
class EditSource:
    """A picture (and optional mask) that /imagine edits, kept as given so Again can edit it once more."""

    image: bytes
    image_name: str
    mask: bytes | None = None
    mask_name: str = "mask.png"


@dataclass(frozen=True)
class _Picture:
    extension: str  # png | jpeg | webp
    size: tuple[int, int]
    has_alpha: bool


def inspect_picture(name: str, data: bytes) -> _Picture:
    """Format and size from the header (pixels checked before anything is decoded); InvalidInput otherwise."""
    check_pixels(name, data)
    if header_size(data) is not None:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as opened:  # the header only: decoding is lazy
            extension = _EDIT_FORMATS.get(opened.format or "")
            if extension is not None:
                alpha = opened.mode in ("RGBA", "LA", "PA") or "transparency" in opened.info
                return _Picture(extension, opened.size, alpha)
    raise errors.InvalidInput(message_id="input.image.not_editable", name=name[:80])


def check_edit(source: EditSource) -> _Picture:
    """The picture's format, or InvalidInput when it or its mask cannot be sent for an edit."""
    if len(source.image) > MAX_EDIT_IMAGE_BYTES:
        raise errors.InvalidInput(
            message_id="input.image.edit_too_large",
            name=source.image_name[:80],
            mib=MAX_EDIT_IMAGE_BYTES // 1024 // 1024,
        )
    picture = inspect_picture(source.image_name, source.image)
    if source.mask is not None:
        mask = inspect_picture(source.mask_name, source.mask)
        if mask.extension != "png" or not mask.has_alpha:
            raise errors.InvalidInput(message_id="input.image.mask_alpha")
        if mask.size != picture.size:
            raise errors.InvalidInput(
                message_id="input.image.mask_size",
                mask=f"{mask.size[0]}×{mask.size[1]}",
                picture=f"{picture.size[0]}×{picture.size[1]}",
            )
    return picture


def check_prompt(prompt: str) -> str:
    prompt = prompt.strip()
    if is_blank(prompt):
        raise errors.InvalidInput(message_id="input.image.prompt_empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise errors.InvalidInput(message_id="input.image.prompt_too_long", limit=f"{MAX_PROMPT_CHARS:,}")
    return prompt


class ImageMaker:
    """Prompt moderation, generation through the gateway, upload fitting and output moderation."""

    def __init__(self, gateway: OpenAIGateway, moderation: ModerationGate, *, moderate_output: bool) -> None:
        self.gateway = gateway
        self.moderation = moderation
        self.moderate_output = moderate_output

    async def imagine(
        self, prompt: str, *, size: str, quality: str, upload_limit: int, context: CallContext
    ) -> ImageResult:
        prompt = check_prompt(prompt)
        if size not in SIZES or quality not in QUALITIES:
            raise errors.InvalidInput(
                f"Size must be one of {', '.join(SIZES)} and quality one of {', '.join(QUALITIES)}."
            )
        await self.moderation.require_clean_input(prompt, context=context, what="Your prompt")
        try:
            generated = await self.gateway.generate_image(
                prompt, context=context, size=size, quality=quality, output_format="png"
            )
        except errors.ContentRefused as exc:
            raise ImageRefused() from exc
        return await self._finish(generated, prompt, size, quality, upload_limit, context)

    async def edit(
        self,
        prompt: str,
        source: EditSource,
        *,
        size: str,
        quality: str,
        upload_limit: int,
        context: CallContext,
    ) -> ImageResult:
        """/imagine with a picture: the prompt, then the picture itself (as an image), are moderated first."""
        prompt = check_prompt(prompt)
        if size not in SIZES or quality not in QUALITIES:
            raise errors.InvalidInput(
                f"Size must be one of {', '.join(SIZES)} and quality one of {', '.join(QUALITIES)}."
            )
        picture = await asyncio.to_thread(check_edit, source)
        await self.moderation.require_clean_input(prompt, context=context, what="Your prompt")
        url = await asyncio.to_thread(moderation_url, source.image, picture.extension)
        await self.moderation.require_clean_image(url, context=context, what="Your picture")
        mime = _MIME[picture.extension]
        name = f"image.{'jpg' if picture.extension == 'jpeg' else picture.extension}"
        mask = (source.mask_name, source.mask, "image/png") if source.mask is not None else None
        try:
            generated = await self.gateway.edit_image(
                prompt,
                (name, source.image, mime),
                mask=mask,
                context=context,
                size=size,
                quality=quality,
                output_format="png",
            )
        except errors.ContentRefused as exc:
            raise ImageRefused() from exc
        return await self._finish(generated, prompt, size, quality, upload_limit, context)

    async def _finish(
        self,
        generated: GeneratedImage,
        prompt: str,
        size: str,
        quality: str,
        upload_limit: int,
        context: CallContext,
    ) -> ImageResult:
        """Fit the upload limit, then moderate the image that would be posted."""
        fitted = await asyncio.to_thread(fit_upload, generated.data, generated.output_format, upload_limit)
        if fitted.reencoded:
            log.info(
                "re-encoded a generated image from %d to %d bytes (%s) for a %d-byte upload limit",
                len(generated.data),
                len(fitted.data),
                fitted.extension,
                upload_limit,
            )
        if self.moderate_output:
            url = await asyncio.to_thread(moderation_url, fitted.data, fitted.extension)
            verdict = await self.moderation.check_image(
                url, context=context, caption=generated.revised_prompt or ""
            )
            if verdict.flagged:
                raise ImageFlagged(verdict.categories)
        extension = "jpg" if fitted.extension == "jpeg" else fitted.extension
        return ImageResult(
            fitted.data,
            f"imagine.{extension}",
            prompt,
            generated.revised_prompt,
            size,
            quality,
            fitted.reencoded,
        )

"""Image generation for the fake OpenAI server: GPT-image parameter rules, refusals and real image bytes."""

from __future__ import annotations

import asyncio
import base64
import io
import math
import random
import re
import time
from typing import Any

from aiohttp import web
from PIL import Image, ImageOps

from .common import (
    ApiError,
    FakeBase,
    RecordedRequest,
    estimate_tokens,
    invalid_value,
    missing_param,
    too_long,
    unit_hash,
)

STANDARD_SIZES: tuple[str, ...] = ("1024x1024", "1024x1536", "1536x1024")
FORMATS: tuple[str, ...] = ("png", "webp", "jpeg")
PIL_FORMATS: dict[str, str] = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}
# Output image tokens per image, by quality and size (published GPT-image table); other sizes scale by area.
OUTPUT_TOKENS: dict[str, dict[str, int]] = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
    "xhigh": {"1024x1024": 6240, "1024x1536": 9360, "1536x1024": 9312},
    "max": {"1024x1024": 8320, "1024x1536": 12480, "1536x1024": 12416},
}
MAX_PROMPT_CHARS = 32000


def flexible_sizes(model: str) -> bool:
    """gpt-image-2 family: any WxH (multiples of 16, ratio 1:3..3:1, up to 3840x2160)."""
    return model.startswith("gpt-image-2")


def check_size(model: str, size: str) -> tuple[int, int]:
    """Validate `size` for `model`; return (width, height)."""
    if size == "auto":
        return 1024, 1024
    if size in STANDARD_SIZES:
        width, _, height = size.partition("x")
        return int(width), int(height)
    match = re.fullmatch(r"(\d+)x(\d+)", size)
    if flexible_sizes(model) and match:
        w, h = int(match.group(1)), int(match.group(2))
        if w % 16 or h % 16:
            raise ApiError(
                400, f"Invalid size '{size}'. Width and height must both be divisible by 16.", param="size"
            )
        if not (1 / 3 <= w / h <= 3) or max(w, h) > 3840 or w * h > 3840 * 2160 or min(w, h) < 16:
            raise ApiError(
                400,
                f"Invalid size '{size}'. The aspect ratio must be between 1:3 and 3:1 and the "
                "resolution at most 3840x2160.",
                param="size",
            )
        return w, h
    raise invalid_value("size", size, [*STANDARD_SIZES, "auto"])


def render_image(width: int, height: int, fmt: str, seed: str, target_bytes: int | None) -> bytes:
    """A valid image: a flat colour of `width`x`height`, or random noise of about `target_bytes`."""
    pil_format = PIL_FORMATS[fmt]
    if target_bytes is None:
        colour = tuple(int(255 * unit_hash(seed, k)) for k in range(3))
        img = Image.new("RGB", (width, height), colour)
        out = io.BytesIO()
        img.save(out, pil_format)
        return out.getvalue()
    rng = random.Random(seed)
    ratio = width / height
    pixels = max(64, target_bytes // 3)
    data = b""
    for _ in range(3):
        w = max(8, int(math.sqrt(pixels * ratio)))
        h = max(8, pixels // w)
        img = Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))
        out = io.BytesIO()
        options: dict[str, Any] = {
            "png": {"compress_level": 1},
            "jpeg": {"quality": 95},
            "webp": {"quality": 95, "method": 0},
        }
        img.save(out, pil_format, **options[fmt])
        data = out.getvalue()
        if abs(len(data) - target_bytes) <= target_bytes * 0.03:
            break
        pixels = max(64, int(pixels * target_bytes / max(1, len(data))))
    return data


MAX_EDIT_IMAGE_BYTES = 50 * 1024 * 1024
EDIT_IMAGE_TYPES: dict[str, str] = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}


def edited_image(source: bytes, width: int, height: int, fmt: str, mask: bytes | None) -> bytes:
    """The "edit": the source resized to the output size with its colours inverted where the mask is
    transparent (everywhere without a mask), so a test can tell an edit from a fresh image."""
    with Image.open(io.BytesIO(source)) as opened:
        base = opened.convert("RGB").resize((width, height))
    inverted = ImageOps.invert(base)
    if mask is not None:
        with Image.open(io.BytesIO(mask)) as opened_mask:
            alpha = opened_mask.convert("RGBA").getchannel("A").resize((width, height))
        # Transparent (alpha 0) is where the model may paint.
        inverted = Image.composite(base, inverted, alpha.point(lambda a: 255 if a else 0))
    out = io.BytesIO()
    inverted.save(out, PIL_FORMATS[fmt])
    return out.getvalue()


def _image_format(data: bytes) -> tuple[str, tuple[int, int], str] | None:
    """(format, size, mode) of an uploaded image, or None when it is not a PNG, JPEG or WebP."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in EDIT_IMAGE_TYPES:
                return None
            return EDIT_IMAGE_TYPES[image.format], image.size, image.mode
    except (OSError, ValueError, SyntaxError):
        return None


class ImagesMixin(FakeBase):
    """POST /v1/images/generations and /v1/images/edits."""

    image_latency: float
    image_revised_prompt: str | None
    image_size_bytes: int | None
    media_usage: bool

    def _init_images(self) -> None:
        # False: image and transcription answers come without their `usage` block (as older models'
        # and some proxies' do), so the bot must fall back to its per-image or per-minute estimate.
        self.media_usage = True
        self.image_latency = 0.0
        self.image_revised_prompt = None
        self.image_size_bytes = None

    def _validate_image_request(
        self, body: dict[str, Any]
    ) -> tuple[str, str, int, tuple[int, int], str, str]:
        model = self._require_model(body.get("model"))
        prompt = body.get("prompt")
        if prompt is None or prompt == "":
            raise missing_param("prompt")
        if not isinstance(prompt, str):
            raise ApiError(400, "Invalid type for 'prompt': expected a string.", param="prompt")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise too_long("prompt", MAX_PROMPT_CHARS, len(prompt))
        if body.get("response_format") is not None:
            raise ApiError(
                400,
                "Unknown parameter: 'response_format'.",
                param="response_format",
                code="unknown_parameter",
            )
        if body.get("stream"):
            raise ApiError(400, "The fake does not implement image streaming.", param="stream")
        n = body.get("n")
        n = 1 if n is None else n
        if not isinstance(n, int) or n < 1:
            raise ApiError(
                400,
                f"Invalid 'n': integer below minimum value. Expected a value >= 1, but got {n} instead.",
                param="n",
                code="integer_below_min_value",
            )
        if n > 10:
            raise ApiError(
                400,
                f"Invalid 'n': integer above maximum value. Expected a value <= 10, but got {n} instead.",
                param="n",
                code="integer_above_max_value",
            )
        size = check_size(model, str(body.get("size") or "auto"))
        qualities = ["low", "medium", "high", "auto"]
        if model.startswith("gpt-image-2.5"):
            qualities[3:3] = ["xhigh", "max"]
        quality = body.get("quality") or "auto"
        if quality not in qualities:
            raise invalid_value("quality", quality, qualities)
        fmt = body.get("output_format") or "png"
        if fmt not in FORMATS:
            raise invalid_value("output_format", fmt, list(FORMATS))
        return model, prompt, n, size, ("medium" if quality == "auto" else str(quality)), str(fmt)

    async def _handle_images(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        body = rec.json if isinstance(rec.json, dict) else {}
        model, prompt, n, (w, h), quality, fmt = self._validate_image_request(body)
        if self.image_latency:
            await asyncio.sleep(self.image_latency)
        lowered = prompt.lower()
        if "blockme" in lowered:
            raise ApiError(
                400,
                "Your request was rejected by the safety system. If you believe this is an error, contact us "
                f"at help.openai.com and include the request ID {rec.request_id}. safety_violations=[sexual].",
                type="image_generation_user_error",
                code="moderation_blocked",
                extra={"moderation_details": {"moderation_stage": "input", "categories": ["sexual"]}},
            )
        if "policyme" in lowered:
            raise ApiError(
                400,
                "Your request was rejected as a result of our safety system. Your prompt may contain text "
                "that is not allowed by our safety system.",
                code="content_policy_violation",
            )
        images = [
            await asyncio.to_thread(render_image, w, h, fmt, f"{prompt}\x00{i}", self.image_size_bytes)
            for i in range(n)
        ]
        data: list[dict[str, Any]] = []
        for raw in images:
            item: dict[str, Any] = {"b64_json": base64.b64encode(raw).decode()}
            if self.image_revised_prompt is not None:
                item["revised_prompt"] = self.image_revised_prompt
            data.append(item)
        text_tokens = estimate_tokens(prompt)
        table = OUTPUT_TOKENS[quality]
        per_image = table.get(f"{w}x{h}") or round(table["1024x1024"] * (w * h) / (1024 * 1024))
        output = per_image * n
        payload = {
            "created": int(time.time()),
            "data": data,
            "background": "opaque",
            "output_format": fmt,
            "quality": quality,
            "size": f"{w}x{h}",
            "usage": {
                "input_tokens": text_tokens,
                "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
                "output_tokens": output,
                "output_tokens_details": {"image_tokens": output, "text_tokens": 0},
                "total_tokens": text_tokens + output,
            },
        }
        if not self.media_usage:
            del payload["usage"]
        return self._json(rec, payload)

    async def _handle_image_edits(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        """Multipart: `image[]` (one or more; `image` for a single one), optional `mask`, and the
        generation fields as text. The mask must be a PNG with an alpha channel, the first image's size."""
        if not request.content_type.startswith("multipart/"):
            raise ApiError(400, "Invalid Content-Type header; expected multipart/form-data.")
        form: dict[str, Any] = dict(rec.form)
        if "n" in form:
            try:
                form["n"] = int(form["n"])
            except ValueError:
                raise invalid_value("n", form["n"], ["an integer"]) from None
        model, prompt, n, (w, h), quality, fmt = self._validate_image_request(form)
        images = [f for f in rec.files if f[0] in ("image[]", "image")]
        if not images:
            raise missing_param("image")
        if len(images) > 16:
            raise ApiError(400, "Too many images: at most 16.", param="image")
        first_size: tuple[int, int] | None = None
        for _field, filename, data, _type in images:
            if len(data) > MAX_EDIT_IMAGE_BYTES:
                raise ApiError(400, f"Image '{filename}' is larger than 50 MB.", param="image")
            found = _image_format(data)
            if found is None:
                raise ApiError(
                    400,
                    f"Invalid file '{filename}': unsupported mimetype. Supported file formats are "
                    "'image/jpeg', 'image/png', and 'image/webp'.",
                    param="image",
                    code="unsupported_file_mimetype",
                )
            first_size = first_size or found[1]
        mask_upload = next((f for f in rec.files if f[0] == "mask"), None)
        mask: bytes | None = None
        if mask_upload is not None:
            found = _image_format(mask_upload[2])
            if found is None or found[0] != "png" or found[2] not in ("RGBA", "LA", "PA"):
                raise ApiError(
                    400, "Invalid mask: it must be a PNG image with an alpha channel.", param="mask"
                )
            if found[1] != first_size:
                raise ApiError(400, "Invalid mask: it must be the same size as the image.", param="mask")
            mask = mask_upload[2]
        if self.image_latency:
            await asyncio.sleep(self.image_latency)
        if "blockme" in prompt.lower():
            raise ApiError(
                400,
                "Your request was rejected by the safety system.",
                type="image_generation_user_error",
                code="moderation_blocked",
            )
        if form.get("size") in (None, "", "auto") and first_size is not None:
            # "auto" keeps the source's shape: the standard size nearest its aspect ratio.
            aspect = first_size[0] / first_size[1]
            w, h = _dims(min(STANDARD_SIZES, key=lambda size: abs(_ratio(size) - aspect)))
        source = images[0][2]
        outputs = [await asyncio.to_thread(edited_image, source, w, h, fmt, mask) for _ in range(n)]
        text_tokens = estimate_tokens(prompt)
        table = OUTPUT_TOKENS[quality]
        per_image = table.get(f"{w}x{h}") or round(table["1024x1024"] * (w * h) / (1024 * 1024))
        input_image_tokens = 65 * len(images)
        payload = {
            "created": int(time.time()),
            "data": [{"b64_json": base64.b64encode(raw).decode()} for raw in outputs],
            "background": "opaque",
            "output_format": fmt,
            "quality": quality,
            "size": f"{w}x{h}",
            "usage": {
                "input_tokens": text_tokens + input_image_tokens,
                "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": input_image_tokens},
                "output_tokens": per_image * n,
                "output_tokens_details": {"image_tokens": per_image * n, "text_tokens": 0},
                "total_tokens": text_tokens + input_image_tokens + per_image * n,
            },
        }
        if not self.media_usage:
            del payload["usage"]
        return self._json(rec, payload)


def _dims(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)


def _ratio(size: str) -> float:
    width, height = _dims(size)
    return width / height

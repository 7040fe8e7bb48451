"""Moderations for the fake OpenAI server: string, list and multimodal inputs, term-driven scores."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import struct
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web

from .common import ApiError, FakeBase, RecordedRequest, missing_param, new_id

CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# The only categories images are scored for (others apply to text alone).
IMAGE_CATEGORIES: frozenset[str] = frozenset(
    {"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence", "violence/graphic"}
)
_PARTS = struct.Struct(f">{len(CATEGORIES)}I")
FLAG_SCORE = 0.97
FLAG_THRESHOLD = 0.5

DEFAULT_FLAG_TERMS: dict[str, str] = {
    "FLAGME": "harassment",
    "kill you": "violence",
    "selfharm-please": "self-harm",
    "NSFWIMG": "sexual",
}


def image_haystack(url: str) -> str:
    """What terms are searched in for an image: the URL, plus the decoded bytes of a data: URL."""
    hay = url
    if url.startswith("data:") and "," in url:
        meta, _, data = url.partition(",")
        try:
            raw = (
                base64.b64decode(data, validate=False) if meta.endswith(";base64") else unquote_to_bytes(data)
            )
        except (binascii.Error, ValueError):
            raw = b""
        hay += "\n" + raw.decode("latin-1")
    return hay.lower()


class ModerationMixin(FakeBase):
    """POST /v1/moderations."""

    flag_terms: dict[str, str]
    score_terms: dict[str, dict[str, float]]
    moderation_latency: float

    def _init_moderation(self) -> None:
        self.flag_terms = dict(DEFAULT_FLAG_TERMS)
        self.score_terms = {}
        self.moderation_latency = 0.0

    def _moderation_items(self, value: Any) -> list[tuple[list[str], list[str]]]:
        """Split `input` into results to produce: (texts, image URLs) per result."""
        if value is None:
            raise missing_param("input")
        if isinstance(value, str):
            return [([value], [])]
        if not isinstance(value, list):
            raise ApiError(400, "Invalid type for 'input': expected a string or an array.", param="input")
        if not value:
            raise ApiError(
                400,
                "Invalid 'input': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                param="input",
                code="empty_array",
            )
        if all(isinstance(v, str) for v in value):
            return [([v], []) for v in value]
        texts: list[str] = []
        images: list[str] = []
        for i, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "image_url" and isinstance(part.get("image_url"), dict):
                images.append(str(part["image_url"].get("url", "")))
            else:
                raise ApiError(
                    400,
                    f"Invalid value: '{kind}'. Supported values are: 'text' and 'image_url'.",
                    param=f"input[{i}].type",
                    code="invalid_value",
                )
        if len(images) > 1:
            raise ApiError(
                400,
                f"Number of images ({len(images)}) exceeds maximum of 1",
                param="input",
                code="too_many_images",
            )
        return [(texts, images)]

    def _moderation_result(self, texts: list[str], images: list[str]) -> dict[str, Any]:
        text_hay = "\n".join(texts).lower()
        image_hay = "\n".join(image_haystack(u) for u in images)
        seed = text_hay + "\x00" + image_hay
        # One digest for all categories: the capacity bench sends thousands of texts a second, and this
        # process shares the machine's cores with the bot it measures.
        digest = hashlib.blake2b(seed.encode("utf-8", "surrogatepass"), digest_size=4 * len(CATEGORIES))
        # 0.0001 to 0.01, six decimals
        scores = {
            c: (100 + (9900 * part >> 32)) / 1_000_000
            for c, part in zip(CATEGORIES, _PARTS.unpack(digest.digest()), strict=True)
        }
        for term, category in self.flag_terms.items():
            t = term.lower()
            if t in text_hay or (t in image_hay and category in IMAGE_CATEGORIES):
                scores[category] = max(scores.get(category, 0.0), FLAG_SCORE)
        for term, exact in self.score_terms.items():
            t = term.lower()
            if t in text_hay or t in image_hay:
                scores.update(exact)
        applied: dict[str, list[str]] = {}
        for c in CATEGORIES:
            kinds = ["text"] if texts else []
            if images and c in IMAGE_CATEGORIES:
                kinds.append("image")
            applied[c] = kinds
        categories = {c: scores[c] >= FLAG_THRESHOLD for c in CATEGORIES}
        return {
            "flagged": any(categories.values()),
            "categories": categories,
            "category_scores": {c: scores[c] for c in CATEGORIES},
            "category_applied_input_types": applied,
        }

    async def _handle_moderation(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        body = rec.json if isinstance(rec.json, dict) else {}
        model = self._require_model(body.get("model") or "omni-moderation-latest")
        items = self._moderation_items(body.get("input"))
        if self.moderation_latency:
            await asyncio.sleep(self.moderation_latency)
        payload = {
            "id": new_id("modr-"),
            "model": model,
            "results": [self._moderation_result(texts, images) for texts, images in items],
        }
        return self._json(rec, payload)

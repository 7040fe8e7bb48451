"""A fake Discord (REST v10 + gateway + CDN) that the real discord.py talks to; see ``fake`` for usage."""

from .fake import (
    FakeDiscord,
    FakeInteraction,
    GatewaySession,
    RecordedRequest,
    UploadedFile,
    message_text,
    patched_discord_py,
    running_bot,
    walk_components,
)

__all__ = [
    "FakeDiscord",
    "FakeInteraction",
    "GatewaySession",
    "RecordedRequest",
    "UploadedFile",
    "message_text",
    "patched_discord_py",
    "running_bot",
    "walk_components",
]

"""Fake Discord and OpenAI servers for offline tests and the bench."""

from .discord import (
    FakeDiscord,
    FakeInteraction,
    message_text,
    patched_discord_py,
    running_bot,
    walk_components,
)
from .openai import FakeOpenAI

__all__ = [
    "FakeDiscord",
    "FakeInteraction",
    "FakeOpenAI",
    "message_text",
    "patched_discord_py",
    "running_bot",
    "walk_components",
]

"""Drive the bot through the fake Discord: a member invokes a command in a channel, and the caller waits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from .discord import FakeDiscord, FakeInteraction
from .openai import FakeOpenAI

CURSOR = "▌"  # the bot's streaming cursor: an answer ending with it is still being written
EPHEMERAL = 1 << 6


class Place(Protocol):
    """Where a command is invoked by default: a guild, a channel in it and a member of it."""

    @property
    def guild_id(self) -> int: ...

    @property
    def channel_id(self) -> int: ...

    @property
    def member_id(self) -> int: ...


@dataclass(frozen=True)
class Seat:
    """One place to invoke from (the bench spreads its asks over many)."""

    guild_id: int
    channel_id: int
    member_id: int


async def invoke(
    fake: FakeDiscord,
    place: Place,
    name: str,
    options: dict[str, Any] | None = None,
    *,
    channel: int | None = None,
    user: int | None = None,
    locale: str = "en-US",
) -> FakeInteraction:
    """Send the slash command ``name`` from a client in ``locale``; returns at once, before the bot answers."""
    return await fake.invoke(
        name,
        options or {},
        guild_id=place.guild_id,
        channel_id=channel or place.channel_id,
        user_id=user or place.member_id,
        locale=locale,
    )


async def run(
    fake: FakeDiscord,
    place: Place,
    name: str,
    options: dict[str, Any] | None = None,
    *,
    channel: int | None = None,
    user: int | None = None,
    timeout: float = 10,  # noqa: ASYNC109
    settle: float = 0.2,
    locale: str = "en-US",
) -> FakeInteraction:
    """Send the slash command ``name`` and wait until it is answered and quiet for ``settle`` seconds."""
    interaction = await invoke(fake, place, name, options, channel=channel, user=user, locale=locale)
    return await interaction.wait_done(timeout=timeout, settle=settle)


async def invoke_ask(
    fake: FakeDiscord,
    place: Place,
    prompt: str,
    *,
    channel: int | None = None,
    user: int | None = None,
    **options: Any,
) -> FakeInteraction:
    """Send /ask; returns at once."""
    return await invoke(fake, place, "ask", {"prompt": prompt, **options}, channel=channel, user=user)


async def ask_settled(
    fake: FakeDiscord,
    place: Place,
    prompt: str,
    *,
    channel: int | None = None,
    user: int | None = None,
    timeout: float = 10,  # noqa: ASYNC109
    **options: Any,
) -> FakeInteraction:
    """/ask, waited for until acknowledged and quiet for 0.2 s, whatever the outcome (answer or failure)."""
    return await run(
        fake, place, "ask", {"prompt": prompt, **options}, channel=channel, user=user, timeout=timeout
    )


def answered(interaction: FakeInteraction) -> bool:
    """The answer shows finished (no streaming cursor), or a private failure replaced it."""
    if (
        interaction.followups
        and interaction.followups[-1].get("flags", 0) & EPHEMERAL
        and interaction.original is None
    ):
        return True
    original = interaction.original or {}
    content = original.get("content") or ""
    return bool(content) and not content.endswith(CURSOR) and not interaction.loading


async def ask(
    fake: FakeDiscord, place: Place, prompt: str, *, channel: int | None = None, **options: Any
) -> FakeInteraction:
    """/ask, waited for until the answer shows finished, then quiet for 0.1 s."""
    interaction = await invoke_ask(fake, place, prompt, channel=channel, **options)
    # A pause mid-stream looks quiet; waiting for the finished answer first keeps it from ending the wait.
    await interaction.wait_for(answered, timeout=10)
    return await interaction.wait_done(timeout=10, settle=0.1)


def chat_bodies(fake_openai: FakeOpenAI) -> list[Any]:
    """The JSON body of every chat completion request, in order."""
    return [r.json for r in fake_openai.calls("/chat/completions")]


QUOTE_LINE = re.compile(r"\A> .*? — <@\d+>\n")


def answer_text(content: str | None) -> str:
    """A public answer's text without the quote of the question above it ("> question — @asker")."""
    return QUOTE_LINE.sub("", content or "", count=1)

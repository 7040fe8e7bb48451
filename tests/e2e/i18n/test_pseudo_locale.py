"""Nothing bypasses the catalog: with every catalog message pseudo-translated (wrapped in ⟦…⟧), a tour of
moderation, settings, /help, refusals and the welcome leaves no word on the fake Discord outside the brackets,
apart from what members and the model wrote and the data a message carries (mentions, numbers, names)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bot.discord_io.client import OpenAIBot
from bot.errors import CATEGORY_IDS
from bot.i18n import catalogs
from testkit.discord import FakeDiscord
from testkit.driver import run
from testkit.openai import FakeOpenAI
from tests.support.moderation import bot_posts, set_policy
from tests.support.server import BotFactory, World

OPEN, CLOSE = "⟦", "⟧"


@dataclass(frozen=True)
class PseudoTranslations(catalogs.Translations):
    """Every language's text of every message, bracketed: a word outside brackets never came from here."""

    def text(self, message_id: str, locale: str | None, count: int | None = None) -> str:
        return OPEN + super().text(message_id, locale, count) + CLOSE


@pytest.fixture
def pseudo(monkeypatch: pytest.MonkeyPatch) -> None:
    real = catalogs.translations()
    monkeypatch.setattr(catalogs, "translations", lambda: PseudoTranslations(real.by_language))


# What a message carries that is data, not wording: mentions, channels, roles, timestamps, links, ids.
DATA = re.compile(r"<(?:@[!&]?|#)\d+>|<t:\d+(?::[tTdDfFR])?>|https?://\S+?(?=\)|\s|$)|\d+(?:\.\d+)?")
# Names, not wording: the servers the tour makes, and the moderation categories by their API names (the
# mod-log and /moderation show them so, as admins tune them).
NAMES = ("Test Guild", "New Server", *sorted(CATEGORY_IDS, key=len, reverse=True))


def outside_brackets(text: str) -> str:
    """The text with every bracketed (catalog) span removed, nested ones included."""
    depth, kept = 0, []
    for char in text:
        if char == OPEN:
            depth += 1
        elif char == CLOSE:
            depth = max(0, depth - 1)
        elif depth == 0:
            kept.append(char)
    return "".join(kept)


def bypasses(text: str, user_content: tuple[str, ...]) -> bool:
    """True when `text` has wording that came from no catalog message."""
    rest = text
    for allowed in (*user_content, *NAMES):
        rest = rest.replace(allowed, " ")
    rest = DATA.sub(" ", outside_brackets(rest))
    return bool(re.search(r"[^\W\d_]", rest))


def texts_of(body: Any) -> Iterator[str]:
    """Every text a member can read in a message, interaction response, modal or channel edit body."""
    if not isinstance(body, dict):
        return
    if isinstance(body.get("data"), dict) and "type" in body:
        body = body["data"]  # an interaction callback
    for key in ("content", "title", "name", "label", "placeholder", "description"):
        if isinstance(body.get(key), str):
            yield body[key]
    for embed in body.get("embeds") or []:
        yield from (embed.get(k) or "" for k in ("title", "description"))
        for field in embed.get("fields") or []:
            yield from (field.get("name") or "", field.get("value") or "")
        yield (embed.get("footer") or {}).get("text") or ""
        yield (embed.get("author") or {}).get("name") or ""
    for component in body.get("components") or []:
        yield from texts_of(component)
    for option in body.get("options") or []:
        yield from texts_of(option)


def received_texts(fake: FakeDiscord) -> list[tuple[str, str]]:
    """(request, text) for every text the bot sent or edited on the fake Discord."""
    out: list[tuple[str, str]] = []
    for request in fake.rest.requests:
        if request.method not in ("POST", "PATCH"):
            continue
        if not re.search(r"/messages|/callback|/webhooks/|^/channels/\d+$", request.path):
            continue
        where = f"{request.method} {request.path}"
        out += [(where, text) for text in texts_of(request.json) if text.strip()]
    return out


def test_the_check_itself_catches_a_bypass() -> None:
    assert bypasses("Flagged message", ())
    assert bypasses(f"{OPEN}policy: {OPEN}delete{CLOSE}{CLOSE} · deleted", ())
    assert not bypasses(f"{OPEN}Author{CLOSE}", ())
    assert not bypasses(f"<@123> (`123`) {OPEN}strike 1 of 2{CLOSE}", ())
    assert not bypasses(f"||you are a FLAGME idiot|| {OPEN}x{CLOSE}", ("you are a FLAGME idiot",))
    assert bypasses(f"{OPEN}ok{CLOSE}; 0 messages queued", ())


async def test_a_tour_of_moderation_settings_help_refusals_and_welcome_uses_only_the_catalog(
    pseudo: None,
    start_bot: BotFactory,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    modlog_id: int,
) -> None:
    bot: OpenAIBot = await start_bot()
    await set_policy(bot, world.guild_id, modlog_channel_id=modlog_id)
    user_content = ("you are a FLAGME idiot", "FLAGME again", "FLAGME thread", "FLAGME test")

    async def admin(name: str, options: dict[str, Any] | None = None, locale: str = "en-US") -> None:
        await run(fake_discord, world, name, options, user=world.moderator_id, locale=locale)

    # /moderation, every subcommand, in both languages.
    for locale in ("en-US", "ko"):
        await admin("moderation status", locale=locale)
        await admin("moderation enable", {"enabled": True}, locale)
        await admin("moderation threshold", {"category": "hate", "value": 0.4}, locale)
        await admin("moderation threshold", {"category": "hate"}, locale)
        await admin("moderation action", {"category": "default", "action": "warn"}, locale)
        await admin("moderation escalation", {"strikes": 3, "window_minutes": 60}, locale)
        await admin("moderation exempt-role", {"role": world.moderator_role_id}, locale)
        await admin("moderation exempt-channel", {"channel": world.other_channel_id, "exempt": False}, locale)
        await admin("moderation fail-open", {"enabled": False}, locale)
        await admin("moderation test", {"text": "FLAGME test"}, locale)
        await admin("moderation log-channel", {"channel": modlog_id}, locale)
        await admin("settings language", None, locale)
    await admin("settings language", {"language": "ko"})
    await admin("settings language", {"language": "auto"})
    await admin("moderation status")  # the footer with the batcher's figures, after moderation ran

    # Refusals: permissions in code, the catalog's input errors, /help (the chat and media commands have
    # their own tour below).
    await run(fake_discord, world, "settings language", {"language": "ko"})
    await run(fake_discord, world, "moderation status", locale="ko")
    await run(fake_discord, world, "help")
    await run(fake_discord, world, "help", user=world.moderator_id, locale="ko")
    await run(fake_discord, world, "ask", {"prompt": "\u200b"})
    tool = fake_discord.add_attachment("tool.exe", b"MZ\x90\x00\x03\x00\x00\x00" * 10)
    await run(fake_discord, world, "ask", {"prompt": "Read this", "file": tool}, locale="ko")

    # Automatic moderation: the mod-log entry, its buttons, the warning by DM and in the channel.
    await fake_discord.post_message(world.channel_id, world.member_id, "you are a FLAGME idiot")
    await fake_discord.wait_until(lambda: len(fake_discord.dms) >= 1, what="the warning DM")
    await fake_discord.wait_until(lambda: bool(bot_posts(fake_discord, modlog_id)), what="a mod-log entry")
    entry = bot_posts(fake_discord, modlog_id)[-1]
    buttons = [c["custom_id"] for row in entry["components"] for c in row["components"]]
    for custom_id in buttons:
        for locale in ("en-US", "ko"):
            clicked = await fake_discord.click(
                int(entry["id"]), custom_id, user_id=world.moderator_id, locale=locale
            )
            await clicked.wait_done(timeout=5)
    denied = await fake_discord.click(int(entry["id"]), buttons[0], user_id=world.member_id, locale="ko")
    await denied.wait_done(timeout=5)
    fake_discord.block_dms_from(world.member_id)
    posted = len(fake_discord.messages_in(world.channel_id))
    await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME again")
    await fake_discord.wait_until(
        lambda: len(fake_discord.messages_in(world.channel_id)) > posted, what="the channel notice"
    )
    fake_discord.fail_next("DELETE", r"/channels/\d+/messages/\d+", 403)
    await fake_discord.post_message(world.channel_id, world.member_id, "FLAGME again")
    await fake_discord.wait_until(
        lambda: any(
            "Manage Messages" in (p.get("content") or "") for p in bot_posts(fake_discord, modlog_id)
        ),
        what="the missing permission report",
    )
    await fake_discord.member_creates_thread(world.channel_id, world.member_id, "FLAGME thread")
    await fake_discord.wait_until(
        lambda: len(fake_discord.requests_to("PATCH", r"^/channels/\d+$")) >= 1, what="the thread renamed"
    )

    # The first day in a new server, in Korean.
    await fake_discord.join_guild("New Server", locale="ko")
    await fake_discord.wait_until(
        lambda: any("New Server" in t for _, t in received_texts(fake_discord)), what="the welcome"
    )

    received = received_texts(fake_discord)
    assert len(received) > 60, received
    leaks = [(where, text) for where, text in received if bypasses(text, user_content)]
    assert leaks == [], "texts that bypass the catalog:\n" + "\n".join(f"{w}: {t!r}" for w, t in leaks)


async def test_a_tour_of_the_chat_and_media_commands_uses_only_the_catalog(
    pseudo: None, bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    answers = ("Model answer one.", "Model answer two.", "Model summary.")
    fake_openai.queue_chat_replies(*answers)
    prompts = ("what is a pseudo locale", "and a private one", "a picture of a cat", "read this aloud")
    # /usage lists spend per model: model names are names, not wording.
    models = tuple(
        str(value) for name, value in bot.settings.model_dump().items() if name.endswith("_model") and value
    )
    user_content = (*prompts, *answers, *sorted(models, key=len, reverse=True))
    for locale in ("en-US", "ko"):
        await run(fake_discord, world, "ask", {"prompt": prompts[0]}, locale=locale)
        await run(fake_discord, world, "ask", {"prompt": prompts[1], "private": True}, locale=locale)
        await run(fake_discord, world, "model show", locale=locale)
        await run(fake_discord, world, "limits show", user=world.moderator_id, locale=locale)
        await run(fake_discord, world, "usage", locale=locale)
        await run(fake_discord, world, "tldr", locale=locale)
        await run(fake_discord, world, "imagine", {"prompt": prompts[2]}, locale=locale)
        await run(fake_discord, world, "speak", {"text": prompts[3]}, locale=locale)
        await run(fake_discord, world, "forget me", locale=locale)
        fake_openai.queue_chat_replies(*answers)

    received = received_texts(fake_discord)
    assert len(received) > 20, received
    leaks = [(where, text) for where, text in received if bypasses(text, user_content)]
    assert leaks == [], "texts that bypass the catalog:\n" + "\n".join(f"{w}: {t!r}" for w, t in leaks)

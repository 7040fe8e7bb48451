"""Files as context: /ask's `file` and a mention's attachments, as images or documents, moderated and capped."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.chat.conversation import FILE_ONLY_PROMPT
from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import answer_text, ask, chat_bodies
from testkit.openai import FakeOpenAI
from tests.support.files import pdf_bytes
from tests.support.server import BotFactory, World


def last_user_text(fake_openai: FakeOpenAI) -> str:
    content = chat_bodies(fake_openai)[-1]["messages"][-1]["content"]
    return content if isinstance(content, str) else content[0]["text"]


async def test_a_text_file_is_read_and_the_memory_notes_it(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    paste = fake_discord.add_attachment("message.txt", b"def add(a, b):\n    return a + b\n", "text/plain")
    fake_openai.queue_chat_replies("It adds two numbers.")
    done = await ask(fake_discord, world, "What does this do?", file=paste)
    assert answer_text(done.original["content"]) == "It adds two numbers."
    text = last_user_text(fake_openai)
    assert text.startswith("What does this do?") and "Attached file `message.txt`" in text
    assert "return a + b" in text
    # The file's text went through moderation like a prompt.
    moderated = str([r.json["input"] for r in fake_openai.calls("/moderations")])
    assert "return a + b" in moderated
    rows = await bot.services.store.fetchall("SELECT content FROM turns WHERE role = 'user'")
    assert rows[0]["content"] == "What does this do?\n[file attached: message.txt]"


async def test_legacy_encodings_json_and_pdf_are_read(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    korean = "회의록: 다음 주 화요일에 출시합니다. " * 4
    files: list[tuple[dict[str, Any], str]] = [
        (fake_discord.add_attachment("notes.txt", korean.encode("euc-kr"), "text/plain"), "다음 주 화요일"),
        (fake_discord.add_attachment("data.json", b'{"status": "green"}', "application/json"), '"status"'),
        (
            fake_discord.add_attachment("report.pdf", pdf_bytes("Revenue rose 12 percent"), None),
            "Revenue rose",
        ),
    ]
    for attachment, expected in files:
        await ask(fake_discord, world, "Summarise it", file=attachment)
        assert expected in last_user_text(fake_openai), attachment["filename"]
    assert "```json" in chat_bodies(fake_openai)[1]["messages"][-1]["content"]
    assert "[page 1]" in last_user_text(fake_openai)


async def test_unreadable_files_are_refused_naming_the_limit(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot(file_max_pages=2, file_max_mb=0.01)
    cases = [
        (fake_discord.add_attachment("locked.pdf", pdf_bytes("secret", password="pw")), "encrypted"),
        (fake_discord.add_attachment("long.pdf", pdf_bytes("a", "b", "c")), "at most 2 pages"),
        (fake_discord.add_attachment("broken.pdf", b"%PDF-1.7\n garbage"), "damaged"),
        (
            fake_discord.add_attachment("tool.exe", b"MZ\x90\x00\x03\x00\x00\x00" * 10),
            "I can't read `tool.exe`",
        ),
        (fake_discord.add_attachment("big.txt", b"x" * 20_000, "text/plain"), "MiB"),
    ]
    for attachment, expected in cases:
        done = await ask(fake_discord, world, "Read this", file=attachment)
        assert expected in done.all_text(), (attachment["filename"], done.all_text())
    assert chat_bodies(fake_openai) == []


async def test_a_flagged_file_stops_everything_before_the_chat(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    attachment = fake_discord.add_attachment("story.md", b"# Chapter 1\nFLAGME", "text/markdown")
    done = await ask(fake_discord, world, "Continue the story", file=attachment)
    assert "story.md" in done.all_text()
    assert chat_bodies(fake_openai) == []
    assert await bot.services.history.count(world.channel_id) == 0


async def test_a_long_file_is_cut_to_the_budget_with_a_note(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot(file_max_tokens=50)
    body = " ".join(f"word{i}" for i in range(2000)).encode()
    attachment = fake_discord.add_attachment("long.txt", body, "text/plain")
    fake_openai.queue_chat_replies("Summary.")
    done = await ask(fake_discord, world, "Summarise", file=attachment)
    text = last_user_text(fake_openai)
    assert "word0" in text and "word1999" not in text and "the rest of the file was cut" in text
    assert "longer than the 50 tokens" in done.original["content"]


async def test_a_mention_with_only_a_file_gets_a_summary_not_a_scolding(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    assert bot.user is not None
    attachment = fake_discord.add_attachment("minutes.txt", b"Decision: ship on Friday.", "text/plain")
    fake_openai.queue_chat_replies("They decided to ship on Friday.")
    message = await fake_discord.post_message(
        world.channel_id, world.member_id, "", attachments=[attachment], mentions_bot=True
    )
    reply = await reply_to(fake_discord, world.channel_id, int(message["id"]))
    assert reply["content"] == "They decided to ship on Friday."
    text = last_user_text(fake_openai)
    assert text.startswith(FILE_ONLY_PROMPT) and "Decision: ship on Friday." in text


async def test_a_mention_replying_to_an_image_sends_it_for_vision(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    from tests.e2e.ask.test_ask import png_bytes

    image = fake_discord.add_attachment("cat.png", png_bytes(), "image/png")
    posted = await fake_discord.post_message(world.channel_id, world.member_id, "look", attachments=[image])
    fake_openai.queue_chat_replies("A red square.")
    message = await fake_discord.post_message(
        world.channel_id,
        world.member_id,
        "what is in it?",
        mentions_bot=True,
        reference_message_id=int(posted["id"]),
    )
    await reply_to(fake_discord, world.channel_id, int(message["id"]))
    content = chat_bodies(fake_openai)[-1]["messages"][-1]["content"]
    assert content[0]["text"] == "what is in it?"
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


async def reply_to(fake_discord: FakeDiscord, channel_id: int, message_id: int) -> dict[str, Any]:
    for _ in range(300):
        for sent in fake_discord.messages_in(channel_id):
            reference = sent.get("message_reference") or {}
            if str(reference.get("message_id")) == str(message_id) and not sent["content"].endswith("▌"):
                return sent
        await asyncio.sleep(0.02)
    raise AssertionError("no reply")

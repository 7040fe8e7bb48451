"""/transcribe translate:<language>: English from whisper-1, other languages from a chat-model translation."""

from __future__ import annotations

from bot.discord_io.client import OpenAIBot
from testkit import FakeDiscord, FakeOpenAI
from tests.e2e.transcribe.test_transcribe import ogg_opus, transcribe
from tests.support.server import World


async def test_translate_into_french_goes_through_the_chat_model_and_is_moderated(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.chat_reply = "Bonjour du faux transcripteur."
    done = await transcribe(fake_discord, world, "memo.ogg", ogg_opus(1.0), translate="fr")
    assert fake_openai.calls("/audio/translations") == []
    (upload,) = fake_openai.calls("/audio/transcriptions")
    (chat,) = fake_openai.calls("/chat/completions")
    assert chat.json["model"] == "gpt-5-mini"
    system, user = chat.json["messages"]
    assert "French" in system["content"] and user["content"] == "hello from the fake transcriber."
    assert "Translation (French)" in done.all_text() and "Bonjour du faux transcripteur." in done.all_text()
    assert "hello from the fake transcriber." not in done.all_text()
    checks = [(r.time, str(r.json["input"])) for r in fake_openai.calls("/moderations")]
    # The transcript is checked before it reaches the chat model, the translation before it is posted.
    assert any(t < chat.time and "hello from the fake transcriber." in i for t, i in checks)
    assert any(t > chat.time and "Bonjour du faux transcripteur." in i for t, i in checks)
    assert upload.time < chat.time
    rows = await bot.services.store.fetchall(
        "SELECT command, kind, model FROM usage_events WHERE kind != 'moderation' ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [
        ("transcribe", "transcription", "gpt-4o-mini-transcribe"),
        ("transcribe", "chat", "gpt-5-mini"),
    ]


async def test_a_flagged_transcript_is_never_translated(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.transcript_text = "FLAGME said the speaker"
    done = await transcribe(fake_discord, world, "memo.ogg", ogg_opus(1.0), translate="de")
    assert "flagged by moderation" in done.all_text()
    assert fake_openai.calls("/chat/completions") == []


async def test_a_flagged_translation_is_not_posted(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.chat_reply = "Ich werde FLAGME sagen"
    done = await transcribe(fake_discord, world, "memo.ogg", ogg_opus(1.0), translate="de")
    assert "flagged by moderation" in done.all_text() and "FLAGME" not in done.all_text()
    assert len(fake_openai.calls("/chat/completions")) == 1


async def test_without_translate_the_original_language_stays(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await transcribe(fake_discord, world, "memo.ogg", ogg_opus(1.0))
    assert "Transcript" in done.all_text() and "hello from the fake transcriber." in done.all_text()
    assert fake_openai.calls("/chat/completions") == [] and fake_openai.calls("/audio/translations") == []

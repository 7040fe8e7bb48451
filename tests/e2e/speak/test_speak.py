"""/speak and "Read aloud" against the fakes: what OpenAI was asked, the voice message Discord got, the ledger."""

from __future__ import annotations

import base64
import io
from typing import Any

import av

from bot.discord_io.client import OpenAIBot
from bot.openai_api.calls import CallContext, UsageEvent
from testkit import FakeDiscord, FakeInteraction, FakeOpenAI
from testkit.discord.model import DEFAULT_BOT_PERMISSIONS
from testkit.driver import run
from tests.support.server import BotFactory, World

VOICE_FLAG = 1 << 13
SEND_VOICE_MESSAGES = 1 << 46


async def speak(fake: FakeDiscord, world: World, text: str, **options: object) -> FakeInteraction:
    return await run(fake, world, "speak", {"text": text, **options}, timeout=20, settle=0.3)


def voice_messages(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [m for m in fake.sent_messages() if m["kind"] == "channel" and m.get("flags", 0) & VOICE_FLAG]


def ogg_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus" and container.format.name == "ogg"
        samples = sum(frame.samples for frame in container.decode(audio=0))
        return samples / 48000


async def usage_rows(bot: OpenAIBot) -> list[tuple[Any, ...]]:
    return list(
        await bot.services.store.fetchall(
            "SELECT command, kind, model, user_id, audio_seconds, cost FROM usage_events WHERE kind = 'speech'"
        )
    )


async def test_speak_posts_a_native_voice_message_with_waveform(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await speak(
        fake_discord, world, "Hello there. How are you today?", voice="coral", style="cheerful"
    )
    (call,) = fake_openai.calls("/audio/speech")
    assert call.json["model"] == "gpt-4o-mini-tts" and call.json["voice"] == "coral"
    assert call.json["instructions"] == "cheerful" and call.json["response_format"] == "pcm"
    assert call.json["input"] == "Hello there. How are you today?"
    check = fake_openai.calls("/moderations")[0]
    assert "Hello there. How are you today?" in str(check.json["input"]) and "cheerful" in str(
        check.json["input"]
    )
    assert check.time < call.time

    (message,) = voice_messages(fake_discord)
    assert message["content"] == "" and not message["embeds"]
    (attachment,) = message["attachments"]
    (upload,) = message["files"]
    seconds = ogg_seconds(upload.data)
    assert abs(attachment["duration_secs"] - seconds) < 0.1 and seconds > 1
    wave = base64.b64decode(attachment["waveform"])
    assert 1 <= len(wave) <= 256 and max(wave) == 255 and min(wave) < 128  # computed from the audio
    # The interaction's reply points at the voice message (its own attachments would lose the waveform).
    assert done.original is not None and message["id"] in done.original["content"]
    assert not done.original.get("attachments")

    ((command, kind, model, user_id, audio_seconds, cost),) = await usage_rows(bot)
    assert (command, kind, model, user_id) == ("speak", "speech", "gpt-4o-mini-tts", world.member_id)
    assert abs(audio_seconds - seconds) < 0.1 and cost > 0


async def test_flagged_text_makes_no_speech_call(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await speak(fake_discord, world, "I will FLAGME now")
    assert "flagged by moderation" in done.all_text()
    assert fake_openai.calls("/audio/speech") == [] and voice_messages(fake_discord) == []
    assert await usage_rows(bot) == []


async def test_flagged_style_makes_no_speech_call(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await speak(fake_discord, world, "Good morning.", style="say FLAGME loudly")
    assert "flagged by moderation" in done.all_text()
    assert fake_openai.calls("/audio/speech") == []


async def test_long_text_is_split_at_sentences_and_joined_into_one_file(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    sentence = "This is sentence number {} of a long reading."
    text = " ".join(sentence.format(k) for k in range(130))  # about 6,000 characters
    assert len(text) > 4096
    await speak(fake_discord, world, text)
    calls = fake_openai.calls("/audio/speech")
    assert len(calls) == 2
    inputs = [c.json["input"] for c in calls]
    assert all(len(i) <= 4096 for i in inputs) and " ".join(inputs) == text
    assert all(i.endswith("reading.") for i in inputs)  # cut at a sentence end
    (message,) = voice_messages(fake_discord)
    (upload,) = message["files"]
    assert abs(ogg_seconds(upload.data) - 20.0) < 0.2  # both parts (10 s each from the fake) in one file
    assert len(base64.b64decode(message["attachments"][0]["waveform"])) == 200
    assert len(await usage_rows(bot)) == 2


async def test_without_send_voice_messages_it_is_an_ordinary_attachment(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_discord.set_bot_permissions(world.guild_id, DEFAULT_BOT_PERMISSIONS & ~SEND_VOICE_MESSAGES)
    done = await speak(fake_discord, world, "Plain audio, please.")
    assert voice_messages(fake_discord) == []
    assert done.original is not None
    (attachment,) = done.original["attachments"]
    assert attachment["filename"] == "speech.ogg" and not done.original.get("flags", 0) & VOICE_FLAG
    files = [f for r in done.responses for f in r["files"]]
    assert ogg_seconds(files[0].data) > 1


async def test_the_fake_refuses_voice_messages_without_the_permission_or_metadata(
    bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    import discord
    from discord.http import handle_message_parameters

    from bot.discord_io.voice import VoiceFile

    def params(**kwargs: Any) -> Any:
        return handle_message_parameters(flags=discord.MessageFlags._from_value(VOICE_FLAG), **kwargs)

    audio = b"OggS" + bytes(100)
    with params(content="hi", file=VoiceFile(audio, "v.ogg", seconds=1.0, waveform_base64="AAA=")) as p:
        try:
            await bot.http.send_message(world.channel_id, params=p)
            raise AssertionError("content beside a voice message was accepted")
        except discord.HTTPException as exc:
            assert exc.code == 50159
    with params(file=discord.File(io.BytesIO(audio), "v.ogg")) as p:
        try:
            await bot.http.send_message(world.channel_id, params=p)
            raise AssertionError("a voice message without duration and waveform was accepted")
        except discord.HTTPException as exc:
            assert exc.code == 50161
    fake_discord.set_bot_permissions(world.guild_id, DEFAULT_BOT_PERMISSIONS & ~SEND_VOICE_MESSAGES)
    with params(file=VoiceFile(audio, "v.ogg", seconds=1.0, waveform_base64="AAA=")) as p:
        try:
            await bot.http.send_message(world.channel_id, params=p)
            raise AssertionError("a voice message without Send Voice Messages was accepted")
        except discord.Forbidden as exc:
            assert exc.code == 50013


async def test_read_aloud_reads_the_message_after_moderating_it(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    posted = await fake_discord.post_message(world.channel_id, world.moderator_id, "The meeting is at noon.")
    interaction = await fake_discord.invoke_context_menu(
        "Read aloud", target_message_id=int(posted["id"]), user_id=world.member_id
    )
    await interaction.wait_done(timeout=20, settle=0.3)
    (call,) = fake_openai.calls("/audio/speech")
    assert call.json["input"] == "The meeting is at noon." and "instructions" not in call.json
    assert len(voice_messages(fake_discord)) == 1

    flagged = await fake_discord.post_message(world.channel_id, world.moderator_id, "FLAGME right here")
    interaction = await fake_discord.invoke_context_menu(
        "Read aloud", target_message_id=int(flagged["id"]), user_id=world.member_id
    )
    done = await interaction.wait_done(timeout=20, settle=0.3)
    assert "That message was flagged by moderation" in done.all_text()
    assert len(fake_openai.calls("/audio/speech")) == 1


async def test_limits_off_refuses_speak_and_read_aloud(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await run(
        fake_discord, world, "limits command", {"command": "speak", "enabled": False}, user=world.moderator_id
    )
    done = await speak(fake_discord, world, "Anyone there?")
    assert done.ephemeral and "`/speak` is turned off in this server" in done.all_text()
    posted = await fake_discord.post_message(world.channel_id, world.moderator_id, "Read me.")
    interaction = await fake_discord.invoke_context_menu(
        "Read aloud", target_message_id=int(posted["id"]), user_id=world.member_id
    )
    refused = await interaction.wait_done(timeout=10)
    assert refused.ephemeral and "turned off" in refused.all_text()
    assert fake_openai.calls("/audio/speech") == []


async def test_speak_is_refused_over_budget(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(user_daily_budget=0.10)
    context = CallContext(world.guild_id, world.channel_id, world.member_id, "speak")
    await bot.services.ledger.record(UsageEvent(context, "speech", "gpt-4o-mini-tts", audio_seconds=398))
    done = await speak(fake_discord, world, "One more sentence to read, please.")
    assert done.ephemeral and "daily budget" in done.all_text()
    assert fake_openai.calls("/audio/speech") == []


async def test_tts_1_is_billed_per_character_and_gets_no_instructions(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(speech_model="tts-1")
    text = "Exactly forty-two characters are read out."
    await speak(fake_discord, world, text, voice="nova", style="whisper")
    (call,) = fake_openai.calls("/audio/speech")
    assert call.json["model"] == "tts-1" and "instructions" not in call.json
    ((*_, cost),) = await usage_rows(bot)
    assert abs(cost - len(text) * 15.0 / 1_000_000) < 1e-12

    refused = await speak(fake_discord, world, "Hello.", voice="marin")
    assert "needs a newer speech model" in refused.all_text()
    assert len(fake_openai.calls("/audio/speech")) == 1

"""/transcribe file, /transcribe auto, the "Transcribe" menu and voice messages, against the fakes."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord, FakeInteraction
from testkit.openai import FakeOpenAI, RecordedRequest
from tests.support.server import BotFactory, World

VOICE_FLAG = 1 << 13
BOT_ID = 1000


def ogg_opus(seconds: float, *, tone: bool = True) -> bytes:
    """Real Ogg Opus, mono 48 kHz like a Discord voice message: a noisy tone (so it does not compress away)."""
    samples = int(48000 * seconds)
    if tone:
        t = np.arange(samples) / 48000
        noise = np.random.default_rng(7).normal(0, 1500, samples)
        wave = (np.sin(2 * np.pi * 440 * t) * 6000 + noise).astype(np.int16)
    else:
        wave = np.zeros(samples, dtype=np.int16)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.rate = 48000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buffer.getvalue()


def uploads(fake_openai: FakeOpenAI) -> list[RecordedRequest]:
    return fake_openai.calls("/audio/transcriptions") + fake_openai.calls("/audio/translations")


async def transcribe(
    fake: FakeDiscord,
    world: World,
    filename: str,
    data: bytes,
    content_type: str | None = None,
    **options: object,
) -> FakeInteraction:
    attachment = fake.add_attachment(filename, data, content_type)
    interaction = await fake.invoke(
        "transcribe file",
        {"file": attachment, **options},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.member_id,
    )
    return await interaction.wait_done(timeout=15, settle=0.3)


def sent_files(interaction: FakeInteraction) -> list[tuple[str, bytes]]:
    return [(f.filename, f.data) for r in interaction.responses for f in r["files"]]


async def test_happy_path_transcribes_and_moderates(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await transcribe(fake_discord, world, "memo.ogg", ogg_opus(2.0), language="fr")
    assert done.deferred
    assert "hello from the fake transcriber." in done.all_text()
    assert "Transcript" in done.all_text() and "memo.ogg" in done.all_text()
    (call,) = uploads(fake_openai)
    assert call.files[0][1] == "memo.ogg"
    assert call.form["model"] == "gpt-4o-mini-transcribe" and call.form["language"] == "fr"
    moderated = [r.json["input"] for r in fake_openai.calls("/moderations")]
    assert any("hello from the fake transcriber." in str(inputs) for inputs in moderated)
    assert fake_openai.calls("/moderations")[-1].time > call.time  # moderated after, before posting


async def test_translate_uses_the_translation_endpoint(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await transcribe(fake_discord, world, "talk.wav", _wav(1.0), translate="en")
    (call,) = fake_openai.calls("/audio/translations")
    assert call.form["model"] == "whisper-1" and call.files[0][1] == "talk.wav"
    assert "Translation (English)" in done.all_text()


def _wav(seconds: float) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, int(16000 * seconds)), dtype=np.int16), format="s16", layout="mono"
        )
        frame.rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buffer.getvalue()


async def test_opus_named_file_is_uploaded_as_ogg(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    # The API refuses `.opus` and accepts the same bytes named `.ogg` (the fake does the same).
    done = await transcribe(fake_discord, world, "recording.opus", ogg_opus(1.0), "audio/opus")
    assert "hello from the fake transcriber." in done.all_text()
    assert [c.files[0][1] for c in uploads(fake_openai)] == ["recording.ogg"]


async def test_non_audio_file_is_refused(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await transcribe(fake_discord, world, "notes.txt", b"just some notes, no sound here\n" * 20)
    assert "is not an audio or video file" in done.all_text() and "ogg" in done.all_text()
    assert not uploads(fake_openai)
    png = b"\x89PNG\r\n\x1a\n" + bytes(200)
    done = await transcribe(fake_discord, world, "picture.png", png)
    assert "is not an audio or video file" in done.all_text()
    assert not uploads(fake_openai)


async def test_corrupt_file_is_refused(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    garbage = b"OggS" + np.random.default_rng(1).bytes(4000)
    done = await transcribe(fake_discord, world, "broken.ogg", garbage)
    assert "corrupt" in done.all_text() and "broken.ogg" in done.all_text()
    truncated = ogg_opus(2.0)[:120]
    done = await transcribe(fake_discord, world, "cut.ogg", truncated)
    assert "corrupt" in done.all_text()
    assert not uploads(fake_openai)


async def test_oversized_file_is_split_and_transcribed_in_order(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    limit = 30_000
    await start_bot(transcription_upload_limit=limit)
    audio = ogg_opus(20.0)
    assert len(audio) > 3 * limit
    fake_openai.transcript_text = lambda rec: f"Words of {rec.files[0][1]}."
    done = await transcribe(fake_discord, world, "lecture.ogg", audio)
    calls = uploads(fake_openai)
    names = [c.files[0][1] for c in calls]
    assert len(names) >= 3
    assert names == [f"lecture-part{i}.ogg" for i in range(1, len(names) + 1)]
    assert all(len(c.files[0][2]) <= limit for c in calls)
    text = done.all_text()
    positions = [text.index(f"Words of {name}.") for name in names]
    assert positions == sorted(positions)
    assert f"{len(names)} parts" in text
    # each part after the first is told what was said before it
    assert "prompt" not in calls[0].form and "Words of lecture-part1.ogg." in calls[1].form["prompt"]


async def test_flagged_transcript_is_not_posted(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.transcript_text = "I will FLAGME everyone here."
    done = await transcribe(fake_discord, world, "memo.ogg", ogg_opus(1.0))
    assert "transcript was flagged by moderation" in done.all_text()
    assert "I will FLAGME" not in done.all_text()
    assert all("FLAGME" not in str(m.get("content")) for m in fake_discord.messages_in(world.channel_id))


async def test_long_transcript_is_split_at_sentences_without_loss(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    sentences = [f"This is sentence number {i} of a long talk about nothing much." for i in range(80)]
    fake_openai.transcript_text = " ".join(sentences)
    done = await transcribe(fake_discord, world, "talk.ogg", ogg_opus(1.0))
    # The pieces are sent one after another: the last sentence comes with the last of them.
    await done.wait_for(lambda i: sentences[-1] in i.all_text())
    messages = [done.original, *done.followups]
    contents = [str(m["content"]) for m in messages if m is not None]
    assert 2 <= len(contents) <= 3 and all(len(c) <= 2000 for c in contents)
    assert all(c.rstrip().endswith(".") for c in contents)  # cut at sentence ends
    joined = " ".join(contents)
    assert all(s in joined for s in sentences)  # nothing cut off


async def test_very_long_transcript_is_attached_as_text(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    text = " ".join(f"Sentence {i} goes on and on for a while, as lectures do." for i in range(400))
    fake_openai.transcript_text = text
    done = await transcribe(fake_discord, world, "lecture.ogg", ogg_opus(1.0))
    files = sent_files(done)
    assert [name for name, _ in files] == ["lecture-transcript.txt"]
    assert files[0][1].decode() == text
    assert "text file" in done.all_text() and len(done.followups) == 0


async def test_context_menu_transcribes_a_voice_message(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    voice = fake_discord.add_attachment(
        "voice-message.ogg", ogg_opus(1.5, tone=False), "audio/ogg", duration_secs=1.5, waveform="AAAA"
    )
    posted = await fake_discord.post_message(
        world.channel_id, world.member_id, attachments=[voice], flags=VOICE_FLAG
    )
    interaction = await fake_discord.invoke_context_menu(
        "Transcribe", target_message_id=int(posted["id"]), user_id=world.moderator_id
    )
    done = await interaction.wait_done(timeout=15, settle=0.3)
    assert "hello from the fake transcriber." in done.all_text()
    assert [c.files[0][1] for c in uploads(fake_openai)] == ["voice-message.ogg"]

    plain = await fake_discord.post_message(world.channel_id, world.member_id, "no audio here")
    interaction = await fake_discord.invoke_context_menu(
        "Transcribe", target_message_id=int(plain["id"]), user_id=world.moderator_id
    )
    refused = await interaction.wait_done(timeout=10)
    assert refused.ephemeral and "no audio or video attachment" in refused.all_text()


async def test_auto_needs_manage_channels(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    interaction = await fake_discord.invoke(
        "transcribe auto",
        {"enabled": True},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.member_id,
    )
    done = await interaction.wait_done(timeout=10)
    assert done.ephemeral and "Manage Channels" in done.all_text()
    rows = await bot.services.store.fetchall("SELECT * FROM auto_transcribe_channels")
    assert rows == []


async def _post_voice(fake: FakeDiscord, channel_id: int, author_id: int) -> dict:
    voice = fake.add_attachment(
        "voice-message.ogg", ogg_opus(1.0, tone=False), "audio/ogg", duration_secs=1.0, waveform="AAAA"
    )
    return await fake.post_message(channel_id, author_id, attachments=[voice], flags=VOICE_FLAG)


def _bot_replies(fake: FakeDiscord, channel_id: int) -> list[dict]:
    return [m for m in fake.messages_in(channel_id) if int(m["author"]["id"]) == BOT_ID]


@pytest.mark.parametrize("restart", [False, True])
async def test_auto_transcribes_voice_messages_in_enabled_channels(
    start_bot: BotFactory,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    restart: bool,
) -> None:
    bot = await start_bot()
    interaction = await fake_discord.invoke(
        "transcribe auto",
        {"enabled": True},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.moderator_id,
    )
    assert "will now be transcribed" in (await interaction.wait_done(timeout=10)).all_text()
    if restart:  # the setting lives in the database
        await bot.close()
        await start_bot()

    await _post_voice(fake_discord, world.channel_id, world.member_id)
    await fake_discord.wait_until(lambda: len(_bot_replies(fake_discord, world.channel_id)) >= 2, timeout=10)
    reply = _bot_replies(fake_discord, world.channel_id)[-1]
    assert "hello from the fake transcriber." in reply["content"]
    assert reply.get("message_reference") or reply.get("referenced_message")
    assert [c.files[0][1] for c in uploads(fake_openai)] == ["voice-message.ogg"]

    # A channel without auto mode, and ordinary attachments, are left alone.
    await _post_voice(fake_discord, world.other_channel_id, world.member_id)
    plain = fake_discord.add_attachment("song.ogg", ogg_opus(1.0), "audio/ogg")
    await fake_discord.post_message(world.channel_id, world.member_id, attachments=[plain])

    off = await fake_discord.invoke(
        "transcribe auto",
        {"enabled": False},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.moderator_id,
    )
    assert "no longer" in (await off.wait_done(timeout=10)).all_text()
    await _post_voice(fake_discord, world.channel_id, world.member_id)
    await off.wait_done(timeout=10, settle=0.3)
    assert len(uploads(fake_openai)) == 1


async def test_bad_language_and_huge_files_are_refused_before_any_upload(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await transcribe(fake_discord, world, "memo.ogg", ogg_opus(1.0), language="français")
    assert "is not a language code" in done.all_text()
    assert bot.services.transcriber is not None
    bot.services.transcriber.max_file_bytes = 10_000  # stands in for the 500 MiB memory guard
    done = await transcribe(fake_discord, world, "long.ogg", ogg_opus(5.0))
    assert done.ephemeral and "I transcribe files up to" in done.all_text()
    assert not uploads(fake_openai)


async def test_auto_mode_covers_threads_of_the_channel(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    thread_id = fake_discord.add_channel(world.guild_id, "voice notes", type=11, parent_id=world.channel_id)
    on = await fake_discord.invoke(
        "transcribe auto",
        {"enabled": True},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.moderator_id,
    )
    await on.wait_done(timeout=10)
    await fake_discord.wait_until(lambda: bot.get_channel(thread_id) is not None, timeout=5)
    await _post_voice(fake_discord, thread_id, world.member_id)
    await fake_discord.wait_until(lambda: bool(_bot_replies(fake_discord, thread_id)), timeout=10)
    assert "hello from the fake transcriber." in _bot_replies(fake_discord, thread_id)[0]["content"]

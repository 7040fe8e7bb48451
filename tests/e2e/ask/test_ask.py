"""/ask end to end: streaming, per-channel memory, budgets, images, private answers, the mention trigger."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
from PIL import Image

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import answer_text, ask, chat_bodies
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    return buffer.getvalue()


async def test_round_trip_defers_then_answers(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("Paris is the capital of France.")
    done = await ask(fake_discord, world, "What is the capital of France?")
    assert done.responses[0]["kind"] == "callback"
    assert done.responses[0]["json"]["type"] == 5  # deferred before any slow call
    assert (
        done.original is not None
        and answer_text(done.original["content"]) == "Paris is the capital of France."
    )
    body = chat_bodies(fake_openai)[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"][-1]["content"] == "What is the capital of France?"
    assert body["messages"][0]["role"] == "system"
    # moderation ran on the prompt before the chat request was made
    moderation = fake_openai.calls("/moderations")[0]
    assert moderation.time < fake_openai.calls("/chat/completions")[0].time


async def test_streaming_edits_are_throttled(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot(stream_edit_interval=0.2)
    answer = " ".join(f"word{i}" for i in range(120))
    fake_openai.queue_chat_replies(answer)
    fake_openai.stream_chunk_chars = 6
    fake_openai.stream_chunk_delay = 0.01  # ~100 chunks over ~1 s
    done = await ask(fake_discord, world, "count for me")
    edits = done.edits()
    assert done.original is not None and answer_text(done.original["content"]) == answer
    # At most one edit per interval: a loaded machine stretches the stream, so the bound follows its length.
    span = edits[-1]["time"] - edits[0]["time"]
    assert 3 <= len(edits) <= min(25, 2 + span / 0.2), f"{len(edits)} edits over {span:.2f} s for ~100 chunks"
    intermediate = [answer_text(e["json"]["content"]) for e in edits[:-1]]
    assert any(answer.startswith(text.removesuffix(" ▌")) and text != answer for text in intermediate)
    gaps = [b["time"] - a["time"] for a, b in zip(edits, edits[1:-1], strict=False)]
    assert all(gap >= 0.15 for gap in gaps), gaps


async def test_long_answer_is_split_with_balanced_code_fences(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    code = "\n".join(f"print({i})  # a line of code that makes this long" for i in range(80))
    answer = f"Here you go:\n```python\n{code}\n```\nDone."
    fake_openai.queue_chat_replies(answer)
    done = await ask(fake_discord, world, "write code")
    # The first part can show finished a moment before the last is sent; a loaded machine stretches that.
    await done.wait_for(lambda i: bool(i.followups) and i.followups[-1]["content"].endswith("Done."))
    messages = [done.original["content"]] + [f["content"] for f in done.followups]
    assert len(messages) >= 2
    for text in messages:
        assert len(text) <= 2000
        assert text.count("```") % 2 == 0
    assert messages[1].startswith("```python\n")
    rejoined = "".join(messages).replace("\n``````python\n", "\n")
    assert "print(79)" in rejoined and rejoined.endswith("Done.")


async def test_history_is_per_channel_and_survives_restart(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot()
    fake_openai.queue_chat_replies("Noted: your favourite colour is teal.")
    await ask(fake_discord, world, "My favourite colour is teal.")
    fake_openai.queue_chat_replies("Hello in the other channel.")
    await ask(fake_discord, world, "Hi there", channel=world.other_channel_id)
    await bot.close()

    await start_bot()
    fake_openai.queue_chat_replies("It is teal.")
    await ask(fake_discord, world, "What is my favourite colour?")
    last = chat_bodies(fake_openai)[-1]["messages"]
    contents = [m["content"] for m in last]
    assert "My favourite colour is teal." in contents
    assert "Noted: your favourite colour is teal." in contents
    assert "Hi there" not in contents and "Hello in the other channel." not in contents


async def test_context_is_trimmed_to_the_token_budget(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(history_token_budget=400)
    for i in range(8):
        fake_openai.queue_chat_replies(f"answer {i} " + "filler " * 30)
        await ask(fake_discord, world, f"question {i} " + "padding " * 30)
    messages = chat_bodies(fake_openai)[-1]["messages"]
    counter = bot.services.conversations.counter
    total = sum(counter.count_message(m["content"]) for m in messages)
    assert total <= 400
    texts = [m["content"] for m in messages if isinstance(m["content"], str)]
    assert any(t.startswith("answer 6") for t in texts), "the newest exchange is kept"
    assert not any(t.startswith("question 0") for t in texts), "the oldest exchange is dropped"
    assert messages[1]["role"] == "user", "history never starts with half an exchange"


async def test_context_length_error_trims_and_retries_once(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    for i in range(3):
        fake_openai.queue_chat_replies(f"answer {i}")
        await ask(fake_discord, world, f"question {i}")
    fake_openai.inject(
        "/chat/completions",
        400,
        code="context_length_exceeded",
        message="This model's maximum context length is 10 tokens.",
        type="invalid_request_error",
    )
    fake_openai.queue_chat_replies("fits now")
    done = await ask(fake_discord, world, "question 3")
    assert answer_text(done.original["content"]) == "fits now"
    first, second = chat_bodies(fake_openai)[-2:]
    assert len(second["messages"]) < len(first["messages"])


async def test_image_goes_to_the_model_as_vision_input(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    attachment = fake_discord.add_attachment("cat.png", png_bytes(), "image/png")
    fake_openai.queue_chat_replies("A red square.")
    done = await ask(fake_discord, world, "What is this?", file=attachment)
    assert answer_text(done.original["content"]) == "A red square."
    content = chat_bodies(fake_openai)[0]["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What is this?"}
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == png_bytes()
    # the image itself went through moderation, one image per request
    image_moderations = [
        r
        for r in fake_openai.calls("/moderations")
        if isinstance(r.json["input"], list)
        and any(isinstance(p, dict) and p.get("type") == "image_url" for p in r.json["input"])
    ]
    assert len(image_moderations) == 1


async def test_non_image_attachment_is_refused(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    attachment = fake_discord.add_attachment("notes.png", b"this is not an image", "image/png")
    done = await ask(fake_discord, world, "What is this?", file=attachment)
    assert "not an image" in done.all_text()
    assert done.followups and done.followups[-1]["flags"] & 64  # ephemeral
    assert chat_bodies(fake_openai) == []


async def test_private_answer_is_ephemeral_and_remembered(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("secret answer")
    done = await ask(fake_discord, world, "secret question", private=True)
    assert done.ephemeral
    assert done.original["content"] == "secret answer"
    assert await bot.services.history.count(world.channel_id) == 2


async def test_mention_and_reply_continue_the_channel_conversation(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("Hi alice!")
    message = await fake_discord.post_message(
        world.channel_id, world.member_id, f"<@{bot.user.id}> hello bot", mentions_bot=True
    )

    async def reply_to(message_id: int) -> dict:
        for _ in range(200):
            for sent in fake_discord.messages_in(world.channel_id):
                reference = sent.get("message_reference") or {}
                if str(reference.get("message_id")) == str(message_id) and not sent["content"].endswith("▌"):
                    return sent
            await asyncio.sleep(0.02)
        raise AssertionError("no reply")

    first = await reply_to(message["id"])
    assert first["content"] == "Hi alice!"
    assert chat_bodies(fake_openai)[0]["messages"][-1]["content"] == "hello bot"

    fake_openai.queue_chat_replies("Still here.")
    follow = await fake_discord.post_message(
        world.channel_id, world.member_id, "are you there?", reference_message_id=int(first["id"])
    )
    second = await reply_to(follow["id"])
    assert second["content"] == "Still here."
    contents = [m["content"] for m in chat_bodies(fake_openai)[1]["messages"]]
    assert "hello bot" in contents and "Hi alice!" in contents and contents[-1] == "are you there?"


async def test_messages_not_addressed_to_the_bot_get_no_answer(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await fake_discord.post_message(world.channel_id, world.member_id, "just chatting")
    await asyncio.sleep(0.2)
    assert chat_bodies(fake_openai) == []


@pytest.mark.parametrize("prompt", ["", "   "])
async def test_empty_prompt_is_refused(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, prompt: str
) -> None:
    done = await ask(fake_discord, world, prompt)
    assert "empty" in done.all_text()
    assert chat_bodies(fake_openai) == []


async def test_a_mention_is_moderated_once_with_the_channel_message(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    """The mention's text is judged once (its channel check and its prompt check share one verdict)."""
    fake_openai.queue_chat_replies("Sunny all week.")
    text = f"<@{bot.user.id}> what is the weather like"
    message = await fake_discord.post_message(world.channel_id, world.member_id, text, mentions_bot=True)

    def answered() -> bool:
        return any(
            str((sent.get("message_reference") or {}).get("message_id")) == str(message["id"])
            and sent["content"] == "Sunny all week."
            for sent in fake_discord.messages_in(world.channel_id)
        )

    await fake_discord.wait_until(answered, timeout=10, what="the answer")
    await asyncio.sleep(0.2)  # the channel check, had it been separate, would have been sent by now
    inputs = [
        item
        for request in fake_openai.calls("/moderations")
        for item in (
            request.json["input"] if isinstance(request.json["input"], list) else [request.json["input"]]
        )
    ]
    assert inputs.count(text) == 1
    assert "what is the weather like" not in inputs  # the prompt is not moderated again on its own
    assert "Sunny all week." in inputs
    assert chat_bodies(fake_openai)[0]["messages"][-1]["content"] == "what is the weather like"
    rows = await bot.services.store.fetchall("SELECT COUNT(*) FROM usage_events WHERE kind = 'moderation'")
    assert rows[0][0] == len(fake_openai.calls("/moderations")) == 2


async def test_a_flagged_mention_makes_no_chat_request(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await fake_discord.post_message(
        world.channel_id, world.member_id, f"<@{bot.user.id}> I will kill you", mentions_bot=True
    )

    def refused() -> bool:
        return any(
            "flagged" in m["content"] and int(m["author"]["id"]) == fake_discord.bot_user_id
            for m in fake_discord.messages_in(world.channel_id)
        )

    await fake_discord.wait_until(refused, timeout=10, what="the refusal")
    assert chat_bodies(fake_openai) == []


async def test_answers_streaming_at_once_share_the_edit_budget(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    # Four answers at once with 4 edits a second between them: each is edited about once a second instead of
    # every 0.05 s, and still shows its first text at once and its whole text at the end.
    await start_bot(stream_edit_interval=0.05, stream_edits_per_second=4)
    answers = [" ".join(f"a{n}w{i}" for i in range(100)) for n in range(4)]
    fake_openai.queue_chat_replies(*answers)
    fake_openai.stream_chunk_chars = 6
    fake_openai.stream_chunk_delay = 0.012  # ~100 chunks over ~1.2 s
    users = [world.member_id] + [fake_discord.add_member(world.guild_id, name=f"asker{n}") for n in range(3)]
    done = await asyncio.gather(
        *(ask(fake_discord, world, f"count {n}", user=user) for n, user in enumerate(users))
    )
    assert sorted(answer_text(d.original["content"]) for d in done if d.original) == sorted(answers)
    edits = [d.edits() for d in done]
    assert all(len(e) >= 2 for e in edits)  # a first streamed text, then the whole answer
    first = min(e[0]["time"] for e in edits)
    last = max(e[-2]["time"] for e in edits)
    streamed = sum(len(e) - 1 for e in edits)  # every edit but the final ones
    # Unpaced, 4 answers of ~1.2 s edited every 0.05 s make about 90 edits. Paced: a first edit each, then at
    # most 4 a second in all (plus one each as the others end and the share grows).
    assert streamed <= 4 + 4 * (last - first) + 4, f"{streamed} streaming edits over {last - first:.2f} s"

"""/imagine end to end: progress line, result with prompt, upload limit, refusals, image moderation, Again."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord, FakeInteraction
from testkit.openai import FakeOpenAI
from testkit.openai import images as openai_images
from tests.support.server import BotFactory, World


def has_image(interaction: FakeInteraction) -> bool:
    return interaction.original is not None and bool(interaction.original.get("attachments"))


async def imagine(
    fake: FakeDiscord, world: World, prompt: str, *, user: int | None = None, **options: object
) -> FakeInteraction:
    interaction = await fake.invoke(
        "imagine",
        {"prompt": prompt, **options},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=user or world.member_id,
    )
    return interaction


async def finished(interaction: FakeInteraction) -> FakeInteraction:
    """Done: the image is posted, or the failure was sent (a progress edit alone is not the end)."""
    await interaction.wait_for(
        lambda i: (
            has_image(i)
            or i.callback_type == 4  # refused at once, before deferring
            or any(f.get("flags", 0) & 64 for f in i.followups)
        )
    )
    return await interaction.wait_done(timeout=10, settle=0.2)


def posted_file(interaction: FakeInteraction) -> tuple[str, bytes]:
    files = [f for r in interaction.responses for f in r["files"]]
    assert len(files) == 1, files
    return files[0].filename, files[0].data


def image_moderations(fake_openai: FakeOpenAI) -> list[dict[str, Any]]:
    found = []
    for request in fake_openai.calls("/moderations"):
        inputs = request.json["input"]
        if isinstance(inputs, list):
            found += [p for p in inputs if isinstance(p, dict) and p.get("type") == "image_url"]
    return found


async def test_happy_path_posts_the_image_with_its_prompt(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.image_revised_prompt = "A red fox sitting in fresh snow, soft morning light"
    done = await finished(
        await imagine(fake_discord, world, "a red fox in the snow", size="1536x1024", quality="low")
    )
    assert done.deferred
    (request,) = fake_openai.calls("/images/generations")
    assert request.json["model"] == "gpt-image-1.5"
    assert (request.json["size"], request.json["quality"], request.json["n"]) == ("1536x1024", "low", 1)
    prompt_check = fake_openai.calls("/moderations")[0]
    assert prompt_check.json["input"] == ["a red fox in the snow"] and prompt_check.time < request.time
    name, data = posted_file(done)
    assert name == "imagine.png"
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (1536, 1024)
    assert done.original is not None
    embed = done.original["embeds"][0]
    assert embed["description"] == "a red fox in the snow"
    assert embed["fields"][0]["value"] == "A red fox sitting in fresh snow, soft morning light"
    assert embed["image"]["url"] == "attachment://imagine.png"
    # the posted bytes themselves went through image moderation
    (checked,) = image_moderations(fake_openai)
    assert checked["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(data).decode()


async def test_progress_line_shows_elapsed_time(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot(imagine_progress_interval=0.1)
    fake_openai.image_latency = 0.8
    done = await finished(await imagine(fake_discord, world, "a lighthouse at dusk"))
    progress = [e["json"]["content"] for e in done.edits() if e["json"].get("content")]
    assert len(progress) >= 3, progress
    assert all("Generating your image" in line and "elapsed" in line for line in progress)
    assert has_image(done) and done.original is not None and not done.original["content"]


@pytest.mark.parametrize("prompt", ["BLOCKME a statue", "POLICYME a statue"])
async def test_policy_refusal_gets_a_friendly_explanation(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, prompt: str
) -> None:
    done = await finished(await imagine(fake_discord, world, prompt))
    assert "declined to draw this prompt" in done.all_text()
    assert not has_image(done) and len(fake_openai.calls("/images/generations")) == 1


async def test_flagged_prompt_is_refused_before_generation(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await finished(await imagine(fake_discord, world, "FLAGME the neighbours"))
    assert "Your prompt was flagged by moderation (Harassment)" in done.all_text()
    assert fake_openai.calls("/images/generations") == []


async def test_no_credit_gets_its_own_message(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.inject_insufficient_quota("/images/generations", times=1)
    done = await finished(await imagine(fake_discord, world, "a cat"))
    assert "no credit left" in done.all_text() and not has_image(done)


async def test_outage_gets_its_own_message(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.inject("/images/generations", 500, times=-1)
    done = await finished(await imagine(fake_discord, world, "a cat"))
    assert "OpenAI is having trouble" in done.all_text()


async def test_upload_limit_reencodes_the_image(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_discord.upload_limit = 300_000
    fake_openai.image_size_bytes = 1_200_000  # a noisy PNG that does not fit
    done = await finished(await imagine(fake_discord, world, "television static"))
    name, data = posted_file(done)
    assert len(data) <= 300_000
    with Image.open(io.BytesIO(data)) as image:
        assert image.format in {"WEBP", "JPEG"}
    assert name in {"imagine.webp", "imagine.jpg"}
    assert done.original is not None and "re-encoded" in done.original["embeds"][0]["footer"]["text"]
    (checked,) = image_moderations(fake_openai)
    assert base64.b64decode(checked["image_url"]["url"].split(",", 1)[1]) == data


def _watermarked(original: Any) -> Any:
    """render_image whose PNGs carry a text chunk the fake moderation flags as sexual."""

    def render(width: int, height: int, fmt: str, seed: str, target_bytes: int | None) -> bytes:
        raw = original(width, height, fmt, seed, target_bytes)
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", "NSFWIMG")
        out = io.BytesIO()
        with Image.open(io.BytesIO(raw)) as image:
            image.save(out, "PNG", pnginfo=info)
        return out.getvalue()

    return render


async def test_flagged_generated_image_is_not_posted(
    bot: OpenAIBot,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(openai_images, "render_image", _watermarked(openai_images.render_image))
    done = await finished(await imagine(fake_discord, world, "a beach at noon"))
    assert "generated image was flagged by moderation (Sexual)" in done.all_text()
    assert not has_image(done)
    assert all(not m.get("attachments") for m in fake_discord.messages_in(world.channel_id))


async def test_image_moderation_can_be_turned_off(
    start_bot: BotFactory,
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot(image_output_moderation=False)
    monkeypatch.setattr(openai_images, "render_image", _watermarked(openai_images.render_image))
    done = await finished(await imagine(fake_discord, world, "a beach at noon"))
    assert has_image(done) and image_moderations(fake_openai) == []


async def test_again_button_reruns_for_the_same_user_only(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    first = await finished(
        await imagine(fake_discord, world, "a paper boat", size="1024x1536", quality="high")
    )
    assert first.original is not None
    message_id = int(first.original["id"])

    stranger = await fake_discord.click(message_id, 0, user_id=world.moderator_id)
    refused = await stranger.wait_done(timeout=10)
    assert refused.ephemeral and "Only the person who asked" in refused.all_text()
    assert len(fake_openai.calls("/images/generations")) == 1

    again = await finished(await fake_discord.click(message_id, 0, user_id=world.member_id))
    requests = fake_openai.calls("/images/generations")
    assert len(requests) == 2
    assert {k: requests[1].json[k] for k in ("prompt", "size", "quality")} == {
        "prompt": "a paper boat",
        "size": "1024x1536",
        "quality": "high",
    }
    assert has_image(again) and again.original is not None
    assert int(again.original["id"]) != message_id
    assert again.original["embeds"][0]["description"] == "a paper boat"


async def test_a_shutdown_during_again_tells_the_user(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(shutdown_grace=0.3)
    first = await finished(await imagine(fake_discord, world, "a paper boat"))
    assert first.original is not None
    fake_openai.image_latency = 5.0
    again = await fake_discord.click(int(first.original["id"]), 0, user_id=world.member_id)
    await fake_discord.wait_until(lambda: again.deferred, what="Again deferred")
    await bot.close()
    done = await again.wait_done(timeout=5)
    assert "restarting" in done.all_text(), done.all_text()

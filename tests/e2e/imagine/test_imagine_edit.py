"""/imagine with a picture: an edit through /v1/images/edits, the picture moderated first, and Again."""

from __future__ import annotations

import base64
import io

from PIL import Image, PngImagePlugin

from bot.discord_io.client import OpenAIBot
from testkit import FakeDiscord, FakeInteraction, FakeOpenAI
from tests.e2e.imagine.test_imagine import finished, has_image, image_moderations, posted_file
from tests.support.server import World


def png(
    size: tuple[int, int], colour: tuple[int, ...], *, mode: str = "RGB", text: str | None = None
) -> bytes:
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_text("Comment", text)
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, "PNG", pnginfo=info)
    return out.getvalue()


async def edit(
    fake: FakeDiscord,
    world: World,
    prompt: str,
    image: bytes,
    *,
    mask: bytes | None = None,
    **options: object,
) -> FakeInteraction:
    picture = fake.add_attachment("photo.png", image, "image/png")
    extra: dict[str, object] = {"image": picture}
    if mask is not None:
        extra["mask"] = fake.add_attachment("mask.png", mask, "image/png")
    interaction = await fake.invoke(
        "imagine",
        {"prompt": prompt, **extra, **options},
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.member_id,
    )
    return await finished(interaction)


async def test_a_picture_turns_imagine_into_an_edit(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    source = png((300, 300), (200, 0, 0))
    done = await edit(fake_discord, world, "make it blue", source, quality="low")
    assert fake_openai.calls("/images/generations") == []
    (request,) = fake_openai.calls("/images/edits")
    assert request.form["model"] == "gpt-image-1.5" and request.form["prompt"] == "make it blue"
    assert request.form["quality"] == "low" and request.form["size"] == "auto"
    ((field, _name, data, content_type),) = request.files
    assert (field, data, content_type) == ("image[]", source, "image/png")
    # The prompt, then the picture itself, were moderated before the edit.
    moderations = fake_openai.calls("/moderations")
    assert moderations[0].json["input"] == ["make it blue"] and moderations[0].time < request.time
    (first_image, output_image) = image_moderations(fake_openai)
    assert first_image["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(source).decode()
    picture_check = next(m for m in moderations if "image_url" in str(m.json["input"]))
    assert picture_check.time < request.time
    # Discord received the edit: the fake inverts the picture's colours (red becomes cyan).
    name, posted = posted_file(done)
    assert name == "imagine.png"
    with Image.open(io.BytesIO(posted)) as image:
        assert image.size == (1024, 1024) and image.convert("RGB").getpixel((10, 10)) == (55, 255, 255)
    rows = await bot.services.store.fetchall(
        "SELECT command, kind, model, images FROM usage_events WHERE kind = 'image'"
    )
    assert [tuple(r) for r in rows] == [("imagine", "image", "gpt-image-1.5", 1)]


async def test_a_flagged_picture_makes_no_edit_call(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await edit(fake_discord, world, "add a hat", png((64, 64), (0, 0, 0), text="NSFWIMG"))
    assert "Your picture was flagged by moderation" in done.all_text()
    assert fake_openai.calls("/images/edits") == [] and not has_image(done)


async def test_the_mask_goes_with_the_picture_and_must_match_it(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    source = png((256, 256), (0, 200, 0))
    wrong = png((128, 128), (0, 0, 0, 0), mode="RGBA")
    refused = await edit(fake_discord, world, "a door here", source, mask=wrong)
    assert "must be the same size" in refused.all_text()
    opaque = png((256, 256), (0, 0, 0))
    refused = await edit(fake_discord, world, "a door here", source, mask=opaque)
    assert "PNG with transparency" in refused.all_text()
    assert fake_openai.calls("/images/edits") == []

    mask = png((256, 256), (0, 0, 0, 0), mode="RGBA")
    done = await edit(fake_discord, world, "a door here", source, mask=mask)
    (request,) = fake_openai.calls("/images/edits")
    assert [(f[0], f[2]) for f in request.files] == [("image[]", source), ("mask", mask)]
    assert has_image(done)


async def test_not_a_picture_is_refused_clearly(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    done = await edit(fake_discord, world, "brighter", b"GIF89a not really")
    assert "is not a PNG, JPEG or WebP picture" in done.all_text()
    assert fake_openai.calls("/images/edits") == []


async def test_again_edits_the_same_picture_once_more(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    source = png((200, 300), (10, 20, 30))
    done = await edit(fake_discord, world, "in watercolour", source)
    assert done.original is not None
    again = await fake_discord.click(int(done.original["id"]), 0, user_id=world.member_id)
    # Again answers in a message of its own: the new picture is posted after both its moderations.
    await again.wait_for(has_image, timeout=15)
    await again.wait_done(timeout=15, settle=0.3)
    first, second = fake_openai.calls("/images/edits")
    assert first.files[0][2] == second.files[0][2] == source
    assert second.form["prompt"] == "in watercolour"
    # The same picture and the same output again: their verdicts come from the moderation cache.
    assert len(image_moderations(fake_openai)) == 2
    assert (
        bot.services.moderation.batcher is not None and bot.services.moderation.batcher.stats.cache_hits >= 2
    )

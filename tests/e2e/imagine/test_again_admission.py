"""Buttons that spend money pass the same admission as their command: allowlist, /limits rules, budgets, rate."""

from __future__ import annotations

from bot.discord_io.client import OpenAIBot
from bot.openai_api.calls import CallContext, UsageEvent
from testkit import FakeDiscord, FakeInteraction, FakeOpenAI
from testkit.driver import run
from tests.e2e.imagine.test_imagine import finished, has_image, imagine
from tests.support.server import VIEW_AND_SEND, BotFactory, World


async def first_image(fake: FakeDiscord, world: World) -> int:
    done = await finished(await imagine(fake, world, "a paper boat"))
    assert has_image(done) and done.original is not None
    return int(done.original["id"])


async def press_again(fake: FakeDiscord, world: World, message_id: int) -> FakeInteraction:
    return await (await fake.click(message_id, 0, user_id=world.member_id)).wait_done(timeout=10, settle=0.2)


async def test_again_is_refused_once_the_command_is_turned_off(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    message_id = await first_image(fake_discord, world)
    await run(
        fake_discord,
        world,
        "limits command",
        {"command": "imagine", "enabled": False},
        user=world.moderator_id,
    )
    again = await press_again(fake_discord, world, message_id)
    assert again.ephemeral and "`/imagine` is turned off in this server" in again.all_text()
    assert len(fake_openai.calls("/images/generations")) == 1


async def test_again_needs_the_commands_role(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    message_id = await first_image(fake_discord, world)
    artists = fake_discord.add_role(world.guild_id, "Artists", permissions=VIEW_AND_SEND)
    await run(
        fake_discord, world, "limits role", {"command": "imagine", "role": artists}, user=world.moderator_id
    )
    again = await press_again(fake_discord, world, message_id)
    assert again.ephemeral and "needs the **Artists** role" in again.all_text()
    assert len(fake_openai.calls("/images/generations")) == 1


async def test_again_is_refused_over_budget(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(user_daily_budget=0.50)
    message_id = await first_image(fake_discord, world)
    # Fifty more images' worth of spend today, through the ledger as any metered call records it.
    context = CallContext(world.guild_id, world.channel_id, world.member_id, "imagine")
    await bot.services.ledger.record(
        UsageEvent(
            context,
            "image",
            bot.settings.image_model,
            images=50,
            image_size="1024x1024",
            image_quality="high",
        )
    )
    again = await press_again(fake_discord, world, message_id)
    assert again.ephemeral and "daily budget" in again.all_text()
    assert len(fake_openai.calls("/images/generations")) == 1


async def test_again_is_rate_limited_like_the_command(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await start_bot(user_burst=1, user_requests_per_minute=1)
    message_id = await first_image(fake_discord, world)
    again = await press_again(fake_discord, world, message_id)
    assert again.ephemeral and "Slow down" in again.all_text()
    assert len(fake_openai.calls("/images/generations")) == 1

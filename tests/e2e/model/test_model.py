"""/model: admins choose the chat model per server and channel from CHAT_MODELS; calls are priced by it."""

from __future__ import annotations

from bot.cost.limits import plan_for_command
from testkit.discord import FakeDiscord
from testkit.driver import ask, chat_bodies
from testkit.openai import FakeOpenAI
from tests.support.server import BotFactory, World

MODELS = "gpt-5-mini,gpt-5"


async def model_command(
    fake_discord: FakeDiscord, world: World, sub: str, user: int, **options: object
) -> str:
    done = await (
        await fake_discord.invoke(
            f"model {sub}", dict(options), guild_id=world.guild_id, channel_id=world.channel_id, user_id=user
        )
    ).wait_done()
    return done.all_text()


async def test_admin_sets_a_channel_model_that_answers_and_is_billed(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(chat_models=MODELS)
    await ask(fake_discord, world, "before")
    assert chat_bodies(fake_openai)[-1]["model"] == "gpt-5-mini"  # the first listed is the default

    text = await model_command(fake_discord, world, "set", world.moderator_id, name="gpt-5")
    assert "gpt-5" in text and "this channel" in text
    await ask(fake_discord, world, "after")
    assert chat_bodies(fake_openai)[-1]["model"] == "gpt-5"
    await ask(fake_discord, world, "elsewhere", channel=world.other_channel_id)
    assert chat_bodies(fake_openai)[-1]["model"] == "gpt-5-mini"

    rows = await bot.services.store.fetchall(
        "SELECT model FROM usage_events WHERE kind = 'chat' AND channel_id = ? ORDER BY id",
        (world.channel_id,),
    )
    assert [r["model"] for r in rows] == ["gpt-5-mini", "gpt-5"]
    stored = await bot.services.store.fetchall(
        "SELECT guild_id, channel_id, model, set_by FROM chat_model_choices"
    )
    assert [tuple(r) for r in stored] == [(world.guild_id, world.channel_id, "gpt-5", world.moderator_id)]
    assert "**gpt-5**" in await model_command(fake_discord, world, "show", world.member_id)

    # The server's choice applies where a channel has none; clearing the channel's falls back to it.
    await model_command(fake_discord, world, "set", world.moderator_id, name="gpt-5", scope="server")
    await ask(fake_discord, world, "elsewhere again", channel=world.other_channel_id)
    assert chat_bodies(fake_openai)[-1]["model"] == "gpt-5"
    await model_command(fake_discord, world, "clear", world.moderator_id, scope="server")
    text = await model_command(fake_discord, world, "clear", world.moderator_id)
    assert "gpt-5-mini" in text
    assert await bot.services.store.fetchall("SELECT * FROM chat_model_choices") == []


async def test_model_set_needs_manage_server_and_a_listed_model(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(chat_models=MODELS)
    assert "Manage Server" in await model_command(fake_discord, world, "set", world.member_id, name="gpt-5")
    text = await model_command(fake_discord, world, "set", world.moderator_id, name="gpt-4-32k")
    assert "not one of the models" in text and "`gpt-5-mini`" in text
    assert await bot.services.store.fetchall("SELECT * FROM chat_model_choices") == []


async def test_forget_me_keeps_the_choice_without_the_admins_id(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(chat_models=MODELS)
    await model_command(fake_discord, world, "set", world.moderator_id, name="gpt-5")
    await (
        await fake_discord.invoke(
            "forget me", guild_id=world.guild_id, channel_id=world.channel_id, user_id=world.moderator_id
        )
    ).wait_done()
    rows = await bot.services.store.fetchall("SELECT model, set_by FROM chat_model_choices")
    assert [tuple(r) for r in rows] == [("gpt-5", 0)]


async def test_admission_estimates_the_chosen_model(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    bot = await start_bot(chat_models=MODELS)
    settings = bot.services.settings
    plan = plan_for_command(
        "ask", {"prompt": "hi"}, settings, world.guild_id, world.member_id, chat_model="gpt-5"
    )
    assert plan is not None and plan.model == "gpt-5"
    await bot.services.chat_models.set(world.guild_id, world.channel_id, "gpt-5", world.moderator_id)
    seen: list[str] = []
    original = bot.services.admission.limits.admit_request

    async def spy(guild_id: int, user_id: int, planned: object) -> None:
        seen.append(getattr(planned, "model", ""))
        await original(guild_id, user_id, planned)  # type: ignore[arg-type]

    bot.services.admission.limits.admit_request = spy  # type: ignore[method-assign]
    await ask(fake_discord, world, "hi")
    assert seen == ["gpt-5"]

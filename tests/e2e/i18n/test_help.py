"""/help lists what this member can use here: Discord's default permissions, the code checks, /limits rules."""

from __future__ import annotations

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord, FakeInteraction
from testkit.driver import run
from tests.support.server import BotFactory, World


def help_lines(done: FakeInteraction) -> list[str]:
    assert done.ephemeral
    [embed] = (done.original or done.followups[-1])["embeds"]
    return str(embed["description"]).splitlines()


def commands_in(lines: list[str]) -> set[str]:
    return {line.split("`")[1] for line in lines}


async def test_help_shows_a_member_only_what_they_can_use(
    bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    member = commands_in(help_lines(await run(fake_discord, world, "help")))
    assert {"/ask", "/tldr", "/forget me", "/recall search", "/help"} <= member
    # Admin commands (default permissions) and those whose code check needs a permission are left out.
    assert not {c for c in member if c.startswith(("/limits", "/moderation", "/persona"))}
    assert "/forget channel" not in member and "/recall enable" not in member

    moderator = commands_in(help_lines(await run(fake_discord, world, "help", user=world.moderator_id)))
    assert {"/limits show", "/moderation log-channel", "/forget channel", "/recall enable"} <= moderator
    assert member < moderator


async def test_help_follows_the_servers_limits_rules(
    bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    await run(
        fake_discord,
        world,
        "limits command",
        {"command": "imagine", "enabled": False},
        user=world.moderator_id,
    )
    member = commands_in(help_lines(await run(fake_discord, world, "help")))
    assert "/imagine" not in member and "/ask" in member


async def test_help_is_in_the_members_language_one_line_each(
    bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    done = await run(fake_discord, world, "help", locale="ko")
    lines = help_lines(done)
    assert "`/요약`: 이 채널의 최근 대화를 요약합니다." in lines
    assert "`/잊기 나`: 이 서버에서 봇이 나에 대해 저장한 내용을 지웁니다" in lines
    [embed] = (done.original or done.followups[-1])["embeds"]
    assert embed["title"] == "여기서 쓸 수 있는 명령어"
    assert embed["footer"]["text"] == f"여기서 명령어 {len(lines)}개를 쓸 수 있습니다."


async def test_commands_are_not_offered_in_dms_while_dms_are_off(
    bot: OpenAIBot, fake_discord: FakeDiscord
) -> None:
    commands = fake_discord.application.synced_commands["global"]
    assert commands and all(c["contexts"] == [0] for c in commands), [
        (c["name"], c["contexts"]) for c in commands
    ]
    admin = {c["name"]: c["default_member_permissions"] for c in commands}
    assert admin["limits"] and admin["moderation"] and admin["persona"]


async def test_with_dms_allowed_only_server_commands_stay_out_of_dms(
    start_bot: BotFactory, fake_discord: FakeDiscord
) -> None:
    await start_bot(allow_dms=True)
    contexts = {c["name"]: c["contexts"] for c in fake_discord.application.synced_commands["global"]}
    assert contexts["help"] == [0, 1, 2]
    assert contexts["tldr"] == [0]

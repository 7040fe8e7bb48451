"""`/settings language`: admins force the language of the server's public posts; moderation in Korean."""

from __future__ import annotations

from typing import Any

from bot.discord_io.client import OpenAIBot
from testkit.discord import FakeDiscord
from testkit.driver import run
from testkit.openai import FakeOpenAI
from tests.support.moderation import bot_posts, rows, set_policy
from tests.support.server import World


async def _language(fake: FakeDiscord, world: World, value: str | None, **kw: Any) -> Any:
    options = {"language": value} if value is not None else {}
    return await run(fake, world, "settings language", options, **kw)


async def test_only_a_server_manager_may_force_the_language_and_it_is_stored(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    refused = await _language(fake_discord, world, "ko", locale="ko")
    assert refused.ephemeral and "서버 관리" in refused.all_text()
    assert await rows(mod_bot, "SELECT * FROM server_languages") == []

    shown = await _language(fake_discord, world, None, user=world.moderator_id)
    assert shown.ephemeral and "follow the server's own language, now English" in shown.all_text()

    forced = await _language(fake_discord, world, "ko", user=world.moderator_id)
    assert "are in Korean" in forced.all_text()
    # The reply is the admin's own (English client); only public posts change language.
    [row] = await rows(mod_bot, "SELECT guild_id, language, set_by FROM server_languages")
    assert row == {"guild_id": world.guild_id, "language": "ko", "set_by": world.moderator_id}
    korean = await _language(fake_discord, world, None, user=world.moderator_id, locale="ko")
    assert "한국어로 씁니다" in korean.all_text()

    back = await _language(fake_discord, world, "auto", user=world.moderator_id)
    assert "follow the server's own language" in back.all_text()
    assert await rows(mod_bot, "SELECT * FROM server_languages") == []


async def test_a_forced_language_outlives_a_restart_and_forget_me_keeps_it_anonymously(
    start_bot: Any, fake_discord: FakeDiscord, world: World
) -> None:
    bot = await start_bot()
    await _language(fake_discord, world, "ko", user=world.moderator_id)
    await run(fake_discord, world, "forget me", user=world.moderator_id)
    [row] = await rows(bot, "SELECT language, set_by FROM server_languages")
    assert row == {"language": "ko", "set_by": 0}
    await bot.services.server_languages.load()  # read back from the database, as after a restart
    assert bot.services.server_languages.forced(world.guild_id) == "ko"


async def test_a_server_forced_to_korean_gets_its_mod_log_warnings_and_buttons_in_korean(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, modlog_id: int
) -> None:
    await set_policy(mod_bot, world.guild_id, strikes_to_timeout=2)
    await _language(fake_discord, world, "ko", user=world.moderator_id)
    await fake_discord.post_message(world.channel_id, world.member_id, "you are a FLAGME idiot")
    await fake_discord.wait_until(lambda: bool(bot_posts(fake_discord, modlog_id)), what="a mod-log entry")
    await fake_discord.wait_until(lambda: bool(fake_discord.dms), what="the warning")

    dm = fake_discord.dms[-1]["content"]
    assert "메시지가 삭제되었습니다" in dm and "괴롭힘" in dm and "누적 경고 1/2회" in dm
    assert "harassment" not in dm  # members read category names, not API names
    entry = bot_posts(fake_discord, modlog_id)[-1]
    embed = entry["embeds"][0]
    assert embed["title"] == "검열에 걸린 메시지"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert "harassment: 0.97 (엔드포인트 판정)" in fields["분류"]
    assert "삭제함" in fields["조치"] and "DM으로 경고함" in fields["조치"]
    assert embed["footer"]["text"].startswith("조치 #")
    labels = [c["label"] for row in entry["components"] for c in row["components"]]
    assert labels == ["작성자 타임아웃", "오탐"]

    # A moderator with an English client presses a button: their reply is English, the entry stays Korean.
    fp = next(
        c["custom_id"] for row in entry["components"] for c in row["components"] if "fp" in c["custom_id"]
    )
    clicked = await fake_discord.click(int(entry["id"]), fp, user_id=world.moderator_id)
    await clicked.wait_done(timeout=5)
    assert "1 strike cleared" in clicked.all_text()
    edited = fake_discord.requests_to("PATCH", rf"/channels/{modlog_id}/messages/{entry['id']}")[-1].json
    review = {f["name"]: f["value"] for f in edited["embeds"][0]["fields"]}
    assert review["검토"] == f"오탐(검토: <@{world.moderator_id}>)"


async def test_moderation_commands_answer_a_korean_admin_in_korean(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    escalation = await run(
        fake_discord,
        world,
        "moderation escalation",
        {"strikes": 3, "window_minutes": 90, "timeout_minutes": 60},
        user=world.moderator_id,
        locale="ko",
    )
    assert escalation.all_text() == "1시간 30분 안에 경고가 3회 쌓이면 1시간 타임아웃합니다."
    status = await run(fake_discord, world, "moderation status", user=world.moderator_id, locale="ko")
    text = status.all_text()
    assert "검열 정책" in text and "기본값: 삭제하고 작성자에게 경고" in text and "명령어를 거부" in text
    tested = await run(
        fake_discord, world, "moderation test", {"text": "FLAGME"}, user=world.moderator_id, locale="ko"
    )
    assert "정책에 따른 조치: **삭제하고 작성자에게 경고** (괴롭힘)." in tested.all_text()


async def test_refusals_of_input_and_files_follow_the_members_language(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    tool = fake_discord.add_attachment("tool.exe", b"MZ\x90\x00\x03\x00\x00\x00" * 10)
    korean = await run(fake_discord, world, "ask", {"prompt": "읽어 줘", "file": tool}, locale="ko")
    assert "`tool.exe`은(는) 읽을 수 없습니다" in korean.all_text()
    english = await run(fake_discord, world, "ask", {"prompt": "Read this", "file": tool})
    assert "I can't read `tool.exe`" in english.all_text()
    blank = await run(fake_discord, world, "ask", {"prompt": "\u200b"}, locale="ko")
    assert "질문이 비어 있습니다" in blank.all_text()


async def test_the_quota_notice_reaches_the_mod_log_in_the_servers_language(
    start_bot: Any, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, modlog_id: int
) -> None:
    bot = await start_bot(quota_cooldown=60)
    await set_policy(bot, world.guild_id, modlog_channel_id=modlog_id)
    await _language(fake_discord, world, "ko", user=world.moderator_id)
    fake_openai.inject_insufficient_quota("/chat/completions")
    refused = await run(fake_discord, world, "ask", {"prompt": "hello"})
    assert "The admins have been told" in refused.all_text()  # the member's own (English) client
    [notice] = [p["content"] for p in bot_posts(fake_discord, modlog_id)]
    assert notice.startswith("봇의 OpenAI 계정에 크레딧이 떨어져") and "1분마다" in notice


async def test_a_korean_server_gets_korean_moderation_without_any_setting(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
) -> None:
    guild_id, general = await fake_discord.join_guild("한국 서버", locale="ko")
    modlog = fake_discord.add_channel(guild_id, "검열-로그")
    member = fake_discord.add_member(guild_id, name="bob")
    await fake_discord.wait_until(lambda: mod_bot.get_channel(modlog) is not None, what="the channel")
    await set_policy(mod_bot, guild_id, modlog_channel_id=modlog)
    await fake_discord.post_message(general, member, "FLAGME")
    await fake_discord.wait_until(lambda: bool(bot_posts(fake_discord, modlog)), what="a mod-log entry")
    assert bot_posts(fake_discord, modlog)[-1]["embeds"][0]["title"] == "검열에 걸린 메시지"
    await fake_discord.wait_until(lambda: bool(fake_discord.dms), what="the warning")
    assert "메시지가 삭제되었습니다" in fake_discord.dms[-1]["content"]


async def test_a_forced_language_also_frames_public_answers_and_outlives_a_restart(
    start_bot: Any, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    from testkit.driver import answered, invoke

    bot = await start_bot()
    await _language(fake_discord, world, "ko", user=world.moderator_id)
    fake_openai.queue_chat_replies("Public answer.", "Another answer.")
    # An English server and an English member: the answer is public, so its buttons follow the forced Korean.
    asked = await invoke(fake_discord, world, "ask", {"prompt": "a public question"}, locale="en-US")
    await asked.wait_for(answered, timeout=10)
    done = await asked.wait_done(timeout=10, settle=0.1)
    assert done.original is not None
    labels = [c.get("label") for row in done.original.get("components") or [] for c in row["components"]]
    assert labels == ["다시 생성"]

    # A new process reads the choice back at start-up.
    await bot.close()
    await start_bot()
    again = await invoke(fake_discord, world, "ask", {"prompt": "and again"}, locale="en-US")
    await again.wait_for(answered, timeout=10)
    done = await again.wait_done(timeout=10, settle=0.1)
    assert done.original is not None
    labels = [c.get("label") for row in done.original.get("components") or [] for c in row["components"]]
    assert labels == ["다시 생성"]

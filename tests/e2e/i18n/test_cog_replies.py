"""Each chat and media cog answers a Korean member in Korean and an English one in English; public posts
follow the server's language, ephemeral replies the member's."""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
from matplotlib import image as mpimg

from bot.chat.inflight import Orphan
from bot.cost.chart import BACKGROUND, CAP
from bot.discord_io.client import OpenAIBot
from bot.discord_io.interrupted import tell_interrupted
from testkit.discord import FakeDiscord, FakeInteraction
from testkit.driver import answered, invoke, run
from testkit.openai import FakeOpenAI
from tests.e2e.transcribe.test_transcribe import ogg_opus
from tests.support.server import BotFactory, World


def korean_server(fake_discord: FakeDiscord, world: World) -> None:
    """The server's Community language is Korean (Discord sends it as every interaction's guild_locale)."""
    fake_discord.world.guild(world.guild_id).locale = "ko"


def button_labels(message: dict[str, Any] | None) -> list[str]:
    assert message is not None
    return [c.get("label") for row in message.get("components") or [] for c in row.get("components", [])]


async def ask_in(
    fake_discord: FakeDiscord, world: World, prompt: str, *, locale: str, **options: Any
) -> FakeInteraction:
    asked = await invoke(fake_discord, world, "ask", {"prompt": prompt, **options}, locale=locale)
    await asked.wait_for(answered, timeout=10)
    return await asked.wait_done(timeout=10, settle=0.1)


async def test_answer_buttons_speak_the_readers_language(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("비밀 답변", "Public answer.", "공개 답변")
    private = await ask_in(fake_discord, world, "비밀 질문", locale="ko", private=True)
    assert button_labels(private.original) == ["다시 생성"]
    # A public answer is read by the whole server: its buttons follow the server (English here).
    public = await ask_in(fake_discord, world, "공개 질문", locale="ko")
    assert button_labels(public.original) == ["Regenerate"]
    korean_server(fake_discord, world)
    public_ko = await ask_in(fake_discord, world, "a public question", locale="en-US")
    assert button_labels(public_ko.original) == ["다시 생성"]


async def test_a_button_refusal_is_in_the_clickers_language(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    fake_openai.queue_chat_replies("Paris.")
    asked = await ask_in(fake_discord, world, "capital of France?", locale="en-US")
    assert asked.original is not None
    other = fake_discord.add_member(world.guild_id, name="bystander")
    message_id, regen = int(asked.original["id"]), f"ask:regen:{asked.id}"
    korean = await (await fake_discord.click(message_id, regen, user_id=other, locale="ko")).wait_done()
    assert korean.ephemeral and "질문한 사람만 이 답변을 다시 생성할 수 있습니다" in korean.all_text()
    english = await (await fake_discord.click(message_id, regen, user_id=other, locale="en-GB")).wait_done()
    assert "Only the person who asked can regenerate this answer" in english.all_text()
    assert len(fake_openai.calls("/chat/completions")) == 1, "a refused Regenerate asks nothing"


async def test_model_and_threads_answer_in_the_members_language(
    bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    model = bot.settings.chat_model
    korean = await run(fake_discord, world, "model show", locale="ko")
    assert korean.ephemeral and f"여기서는 **{model}** 모델이 답합니다(봇 기본값)." in korean.all_text()
    english = await run(fake_discord, world, "model show", locale="en-US")
    assert f"Answers here come from **{model}** (the bot's default)." in english.all_text()
    threads = await run(fake_discord, world, "threads", user=world.moderator_id, locale="ko")
    assert "제가 연 스레드" in threads.all_text() and "mention" not in threads.all_text()


async def test_limits_show_and_refusals_in_korean(
    bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    shown = await run(fake_discord, world, "limits show", user=world.moderator_id, locale="ko")
    text = shown.all_text()
    assert "멤버별 하루 예산" in text and "서버 월 예산" in text and "모든 명령어를 누구나" in text
    refused = await run(
        fake_discord,
        world,
        "limits command",
        {"command": "nope", "enabled": False},
        user=world.moderator_id,
        locale="ko",
    )
    assert refused.ephemeral and "규칙을 정할 수 있는 `nope` 명령어가 없습니다" in refused.all_text()
    english = await run(fake_discord, world, "limits show", user=world.moderator_id, locale="en-GB")
    assert "Per-user daily budget" in english.all_text()


async def test_forget_and_persona_in_korean(bot: OpenAIBot, fake_discord: FakeDiscord, world: World) -> None:
    forgot = await run(fake_discord, world, "forget me", locale="ko")
    assert forgot.ephemeral and forgot.all_text().startswith("완료했습니다.")
    persona = await run(fake_discord, world, "persona clear", user=world.moderator_id, locale="ko")
    assert "이 채널에는 페르소나가 없었습니다." in persona.all_text()
    # /forget channel is posted for everyone: the server's language, whatever the moderator's client.
    korean_server(fake_discord, world)
    channel = await run(fake_discord, world, "forget channel", user=world.moderator_id, locale="en-US")
    assert not channel.ephemeral and "이 채널의 대화 0턴을 잊었습니다." in channel.all_text()


async def test_recall_enable_in_korean(bot: OpenAIBot, fake_discord: FakeDiscord, world: World) -> None:
    done = await run(fake_discord, world, "recall enable", user=world.moderator_id, locale="ko", timeout=20)
    assert done.ephemeral and "찾기를 켰습니다" in done.all_text()
    again = await run(fake_discord, world, "recall enable", user=world.moderator_id, locale="en-US")
    assert "Recall is already on in this server." in again.all_text()


async def test_imagine_result_follows_the_server(
    bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    korean_server(fake_discord, world)
    done = await run(fake_discord, world, "imagine", {"prompt": "a red fox"}, locale="en-US", timeout=20)
    assert done.original is not None
    [embed] = done.original["embeds"]
    assert embed["title"] == "프롬프트" and "크기" in embed["footer"]["text"]
    assert button_labels(done.original) == ["다시"]


async def test_speak_and_transcribe_post_in_the_servers_language(
    bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    korean_server(fake_discord, world)
    spoken = await run(fake_discord, world, "speak", {"text": "안녕하세요"}, locale="en-US", timeout=20)
    assert spoken.original is not None and "목소리" in spoken.original["content"]
    attachment = fake_discord.add_attachment("memo.ogg", ogg_opus(2.0), "audio/ogg")
    heard = await run(
        fake_discord, world, "transcribe file", {"file": attachment}, locale="en-US", timeout=20
    )
    assert "`memo.ogg`의 **받아쓰기**" in heard.all_text() and "Transcript" not in heard.all_text()


async def test_private_tldr_and_its_refusals_in_the_members_language(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    empty = await run(fake_discord, world, "tldr", {"since": "30분"}, locale="ko")
    assert "최근 30분 동안 아무도 글을 쓰지 않았습니다." in empty.all_text()
    english = await run(fake_discord, world, "tldr", {"since": "30m"}, locale="en-US")
    assert "nobody wrote anything in the last 30m." in english.all_text()
    fake_discord.seed_history(world.channel_id, [{"author_id": world.member_id, "content": "회의는 3시"}])
    fake_openai.queue_chat_replies("회의는 3시입니다.")
    done = await run(fake_discord, world, "tldr", {"private": True}, locale="ko", timeout=20)
    assert done.ephemeral and "**요약** 메시지 1개" in done.all_text() and "**참여자:**" in done.all_text()


def decoded(png: bytes) -> np.ndarray:
    return np.asarray(mpimg.imread(io.BytesIO(png), format="png"))


def has_colour(pixels: np.ndarray, hex_colour: str) -> bool:
    wanted = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(pixels[..., :3] - wanted).max(axis=-1) < 0.02).any())


def usage_files(interaction: FakeInteraction) -> list[Any]:
    return [f for r in interaction.responses for f in r.get("files") or []]


async def test_usage_without_spending_says_so_in_korean_instead_of_an_empty_chart(
    bot: OpenAIBot, fake_discord: FakeDiscord, world: World
) -> None:
    done = await run(fake_discord, world, "usage", locale="ko")
    text = done.all_text()
    assert done.ephemeral and "나의 오늘 사용량" in text and "아직 없음" in text
    assert "최근 30일 동안 사용 기록이 없어 그릴 차트가 없습니다" in text
    assert usage_files(done) == []
    english = await run(fake_discord, world, "usage", locale="en-US")
    assert "No usage in the last 30 days yet" in english.all_text() and usage_files(english) == []


async def test_usage_chart_is_an_opaque_card_with_the_members_daily_cap(
    start_bot: BotFactory, fake_discord: FakeDiscord, world: World
) -> None:
    bot = await start_bot(user_daily_budget=0.50)
    await bot.services.store.execute(
        "INSERT INTO usage_events (created_at, guild_id, channel_id, user_id, command, kind, model, cost) "
        "VALUES (?, ?, ?, ?, 'ask', 'chat', 'gpt-5-mini', ?)",
        (time.time(), world.guild_id, world.channel_id, world.member_id, 0.2),
    )
    done = await run(fake_discord, world, "usage", locale="ko")
    assert "나의 오늘 사용량" in done.all_text() and "**$0.2000**" in done.all_text()
    [chart] = usage_files(done)
    pixels = decoded(chart.data)
    assert pixels.shape[:2] == (400, 800)
    # Opaque everywhere (no theme shows through), a light card behind dark text, and the cap line drawn.
    assert pixels[..., 3].min() == 1.0
    assert has_colour(pixels[:5, :5], BACKGROUND)
    assert has_colour(pixels, CAP)
    # A server without a cap draws no cap line.
    await bot.services.limits.store.set_budgets(
        world.guild_id, user_daily=0, server_monthly=None, by=world.moderator_id, reset=False
    )
    uncapped = await run(fake_discord, world, "usage", locale="ko")
    assert not has_colour(decoded(usage_files(uncapped)[0].data), CAP)


async def test_the_interrupted_notice_is_in_the_servers_language(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    korean_server(fake_discord, world)  # before the bot connects: its guild cache holds the language
    bot = await start_bot()
    fake_openai.queue_chat_replies("half an answer")
    asked = await ask_in(fake_discord, world, "a question", locale="en-US")
    # As at start-up after a crash: the row names only the application and the token.
    edited = await tell_interrupted(bot, [Orphan(int(fake_discord.world.application_id), asked.token, None)])
    assert edited == 1
    await asked.wait_for(lambda i: "중단" in (i.original or {}).get("content", ""), timeout=5)
    assert asked.original is not None and "다시 질문해 주세요" in asked.original["content"]


async def test_a_refused_mention_is_answered_in_the_servers_language(
    start_bot: BotFactory, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    korean_server(fake_discord, world)  # before the bot connects: its guild cache holds the language
    bot = await start_bot()
    await bot.services.limits.store.set_enabled(world.guild_id, "ask", False, world.moderator_id)
    assert bot.user is not None
    message = await fake_discord.post_message(
        world.channel_id, world.member_id, f"<@{bot.user.id}> 안녕", mentions_bot=True
    )

    def refusal() -> str:
        return next(
            (
                sent["content"]
                for sent in fake_discord.messages_in(world.channel_id)
                if str((sent.get("message_reference") or {}).get("message_id")) == str(message["id"])
            ),
            "",
        )

    await fake_discord.wait_until(lambda: bool(refusal()), timeout=10, what="the refusal")
    assert "이 서버의 관리자가 `/ask`을(를) 꺼 두었습니다." in refusal()
    assert fake_openai.calls("/chat/completions") == []

"""Words hidden from moderation by invisible characters, marks, lookalikes and markdown are still caught."""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator

import pytest

from bot.discord_io.client import OpenAIBot
from bot.moderation.batcher import ModerationBatcher
from bot.moderation.gate import ModerationGate
from bot.moderation.normalize import (
    DEFAULT_IGNORABLE_RANGES,
    moderation_inputs,
    normalize,
    render_markdown,
    skeleton,
)
from bot.openai_api.calls import CallContext
from bot.openai_api.gateway import OpenAIGateway
from bot.settings import Settings
from testkit import FakeDiscord, FakeOpenAI
from testkit.driver import ask_settled as ask
from tests.support.moderation import moderated_texts
from tests.support.server import World

CONTEXT = CallContext(1, 2, 3, "test")
WORD = "FLAGME"  # the fake moderation endpoint's harassment term


def between_letters(separator: str) -> str:
    return separator.join(WORD)


def marked(*marks: str) -> str:
    return "".join(letter + "".join(marks) for letter in WORD)


# Each way of hiding WORD from a substring match that the gate used to let through.
HIDDEN: dict[str, str] = {
    "isolates U+2066/U+2069": "FL\u2066AG\u2069ME",
    "grapheme joiner U+034F": between_letters("\u034f"),
    "tag characters": "FLA\U000e0066\U000e006c\U000e0061GME",
    "variation selector U+FE0F": between_letters("\ufe0f"),
    "arabic letter mark U+061C": between_letters("\u061c"),
    "mongolian selector U+180B": between_letters("\u180b"),
    "hangul filler U+3164": "FLAG\u3164ME",
    "zalgo, one composing mark": marked("\u0301"),
    "zalgo, one other mark": marked("\u0337"),
    "zalgo, two marks": marked("\u0336", "\u0315"),
    "hebrew points": marked("\u05b8"),
    "fullwidth": "\uff26\uff2c\uff21\uff27\uff2d\uff25",
    "cyrillic lookalikes": "FL\u0410G\u041c\u0415",
    "bold": "FL**AG**ME",
    "italic": "F*LAG*ME",
    "spoiler": "F||L||AGME",
    "inline code": "F`L`AGME",
    "strikethrough": "FL~~AG~~ME",
    "underline": "FL__AG__ME",
    "masked link": "[FLA](https://example.com)GME",
    "heading and bold": "# FL**AGME**",
}


# -- normalize() ------------------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", HIDDEN.values(), ids=HIDDEN.keys())
def test_each_hiding_technique_is_undone(hidden: str) -> None:
    assert WORD not in hidden  # what got past before
    assert WORD in normalize(f"you are a {hidden} idiot")


@pytest.mark.parametrize(
    "point", [0x2066, 0x2069, 0x034F, 0xE0001, 0xE0041, 0xE007F, 0xFE0F, 0x061C, 0x180B, 0x3164, 0xFFA0]
)
def test_each_listed_code_point_is_removed(point: int) -> None:
    assert normalize(f"ab{chr(point)}cd") == "abcd"


def test_every_default_ignorable_and_format_character_is_removed() -> None:
    ignorable = [p for start, end in DEFAULT_IGNORABLE_RANGES for p in range(start, end + 1)]
    formats = [p for p in range(0x20000) if unicodedata.category(chr(p)) == "Cf"]
    assert 0x200B in ignorable and 0xE0FFF in ignorable and 0x0600 in formats
    for point in ignorable + formats:
        assert normalize(f"x{chr(point)}y") == "xy", hex(point)


@pytest.mark.parametrize(
    "text",
    [
        "안녕하세요, 오늘 날씨가 정말 좋네요. 같이 산책할까요?",
        "ᄒᆞᆫ글 옛 자모도 그대로",  # conjoining jamo that NFC leaves as they are
        "नमस्ते, आप कैसे हैं? मैं ठीक हूँ, धन्यवाद।",
        "مَرْحَبًا، كَيْفَ حَالُكَ اليوم؟ أنا بخير شكرا.",
        "こんにちは、今日はいい天気ですね。がぎぐげご パピプペポ",
        "שָׁלוֹם עֲלֵיכֶם",
        "สวัสดีครับ ยินดีที่ได้รู้จัก",
        "plain English, nothing to change: 42 (ok).",
    ],
)
def test_scripts_that_need_their_marks_come_out_identical(text: str) -> None:
    assert normalize(text) == text
    assert moderation_inputs(text) == [text]


def test_nfkc_folds_fullwidth_and_compatibility_forms() -> None:
    assert (
        normalize("\uff48\uff45\uff4c\uff4c\uff4f \U0001d41b\U0001d428\U0001d425\U0001d41d") == "hello bold"
    )
    assert normalize("\ufb01ne") == "fine"


def test_a_cyrillic_a_in_a_latin_word_reads_as_latin() -> None:
    assert normalize("fl\u0430gme and p\u0430yp\u0430l") == "flagme and paypal"
    # A Russian word keeps its letters; one made only of Latin lookalikes is read as Latin.
    assert normalize("\u043f\u0440\u0438\u0432\u0435\u0442") == "\u043f\u0440\u0438\u0432\u0435\u0442"
    assert normalize("\u041a\u041e\u0421\u0410") == "KOCA"


def test_zalgo_is_flattened_over_latin_letters_and_spaces() -> None:
    zalgo = "h\u0337\u0322\u031be\u0335\u034el\u0338\u0330l\u0336o\u0335 \u0489w\u0300o\u0301rld"
    assert normalize(zalgo) == "hello world"
    assert normalize("Voil\u00e0, \u00e7a marche") == "Voila, ca marche"  # accents go in the copy only


def test_markdown_renders_out() -> None:
    assert render_markdown("> quoted\n### title\n-# small\n- item\n```py\ncode\n```") == (
        "quoted\ntitle\nsmall\nitem\npy\ncode\n"
    )
    assert render_markdown("FL\\*\\*AG\\*\\*ME") == "FLAGME"


def test_skeleton_follows_tr39() -> None:
    assert skeleton("p\u0430yp\u0430l") == skeleton("paypal")
    assert skeleton("m") == "rn" and skeleton("I") == "l" and skeleton("0") == "O"
    assert skeleton("\u2113") == "l" and skeleton("\u0399") == skeleton("I")


def test_moderation_inputs_are_the_original_then_the_normalized_text() -> None:
    assert moderation_inputs("nothing hidden") == ["nothing hidden"]
    assert moderation_inputs("F\u200bLAGME") == ["F\u200bLAGME", "FLAGME"]
    assert moderation_inputs("\u200b\u2060") == ["\u200b\u2060"]  # nothing readable left: the original alone


# -- through the fakes ------------------------------------------------------------------------------


@pytest.fixture
async def gateway(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIGateway]:
    settings = Settings(
        openai_api_key=fake_openai.api_key, openai_base_url=fake_openai.base_url, openai_max_retries=0
    )
    gateway = OpenAIGateway.from_settings(settings)
    yield gateway
    await gateway.close()


@pytest.mark.parametrize("urgent", [True, False], ids=["command", "channel"])
async def test_one_request_carries_both_texts_only_when_they_differ(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI, urgent: bool
) -> None:
    gate = ModerationGate(gateway, batcher=ModerationBatcher(gateway, window=0.0))
    hidden = "you are a F||L||AGME idiot"
    verdict = await gate.check_text(hidden, context=CONTEXT, urgent=urgent)
    assert verdict.flagged and verdict.categories == ["harassment"]
    [request] = fake_openai.calls("/moderations")
    assert request.json["input"] == [hidden, "you are a FLAGME idiot"]

    clean = await gate.check_text("a plain message", context=CONTEXT, urgent=urgent)
    assert not clean.flagged
    assert fake_openai.calls("/moderations")[1].json["input"] == ["a plain message"]
    assert len(fake_openai.calls("/moderations")) == 2
    await gate.close()


async def test_without_a_batcher_both_texts_go_in_one_request(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI
) -> None:
    gate = ModerationGate(gateway)
    verdict = await gate.check_text("FL\u034fAGME", context=CONTEXT)
    assert verdict.flagged
    [request] = fake_openai.calls("/moderations")
    assert request.json["input"] == ["FL\u034fAGME", "FLAGME"]


@pytest.mark.parametrize("hidden", HIDDEN.values(), ids=HIDDEN.keys())
async def test_a_channel_message_hiding_the_word_is_deleted(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, hidden: str
) -> None:
    content = f"you are a {hidden} idiot"
    message = await fake_discord.post_message(world.channel_id, world.member_id, content)
    await fake_discord.wait_until(
        lambda: int(message["id"]) in fake_discord.deleted_message_ids, what="the message deleted"
    )
    [request] = [r for r in fake_openai.calls("/moderations") if content in r.json["input"]]
    assert request.json["input"] == [content, normalize(content)]  # one request, both texts
    assert WORD in request.json["input"][1]


async def test_a_clean_channel_message_is_moderated_once_as_written(
    mod_bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World
) -> None:
    await fake_discord.post_message(world.channel_id, world.member_id, "안녕하세요, 반갑습니다")
    await fake_discord.wait_until(
        lambda: "안녕하세요, 반갑습니다" in moderated_texts(fake_openai), what="the message moderated"
    )
    [request] = fake_openai.calls("/moderations")
    assert request.json["input"] == ["안녕하세요, 반갑습니다"]


@pytest.mark.parametrize("hidden", HIDDEN.values(), ids=HIDDEN.keys())
async def test_an_ask_hiding_the_word_makes_no_chat_request(
    bot: OpenAIBot, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, world: World, hidden: str
) -> None:
    done = await ask(fake_discord, world, f"write something {hidden}")
    assert "flagged by moderation (Harassment)" in done.all_text()
    assert fake_openai.calls("/chat/completions") == []

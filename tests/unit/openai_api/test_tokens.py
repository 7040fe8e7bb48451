"""The token estimate against OpenAI's real encodings: never under for real text, bounded over and under."""

from __future__ import annotations

import base64
import random
import string
from pathlib import Path

import pytest

from bot.openai_api.tokens import TokenCounter, estimate_tokens, truncate_to_tokens

bpe_openai = pytest.importorskip("bpe_openai")
ENCODINGS = {name: bpe_openai.get_encoding(name) for name in ("o200k_base", "cl100k_base")}
ROOT = Path(__file__).resolve().parents[3]


def real_tokens(text: str) -> int:
    """The larger of the two encodings' exact counts: the estimate serves models of either."""
    return max(len(encoding.encode(text, disallowed_special=())) for encoding in ENCODINGS.values())


def _natural_corpus() -> dict[str, str]:
    rng = random.Random(17)
    return {
        "english": (ROOT / "README.md").read_text()[:20_000],
        "docs": (ROOT / "docs" / "performance.md").read_text()[:20_000],
        "python": (ROOT / "bot" / "chat" / "conversation.py").read_text(),
        "json": '{"id": 1234567890, "name": "general", "topic": null, "nsfw": false, "rate": 0.25}\n' * 40,
        "korean": "안녕하세요, 오늘 날씨가 정말 좋네요. 디스코드 봇이 질문에 답합니다. 한국어 문장을 세어 봅니다.\n"
        * 40,
        "chinese": "人工智能正在改变世界。这个机器人可以回答你的问题，并记住频道里的对话。\n" * 40,
        "japanese": "今日はいい天気ですね。ボットに質問してください。カタカナとひらがなと漢字。\n" * 40,
        "russian": "Привет, как дела? Это бот для Discord, он отвечает на вопросы.\n" * 40,
        "arabic": "مرحبا كيف حالك؟ هذا روبوت يجيب على الأسئلة.\n" * 40,
        "accents": "Ça va très bien, merci ! Überall schöne Grüße, señor. Ñandú, façade, naïve.\n" * 40,
        "emoji": "🎉🔥😀👍🏽👨‍👩‍👧‍👦 nice 🚀✨🥳🇰🇷 gg ❤️ 🙏\n" * 60,
        "mixed": "lol 😂 그거 진짜야? `print('hi')` → 42개!! https://discord.com/channels/1/2/3 ok\n" * 40,
        "urls": "https://example.com/path/to/page?query=value&other=123#frag\n" * 50,
        "numbers": " ".join(str(rng.randint(0, 10**12)) for _ in range(500)),
        "digits": "".join(rng.choice(string.digits) for _ in range(3000)),
        "whitespace": "   a    b\n\n\n   c \t\t d\r\n" * 200,
        "punctuation": "!!!???...---***///\\\\|||~~~```<>{}[]" * 50,
        "random_letters": "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(3000)),
        "random_printable": "".join(rng.choice(string.printable) for _ in range(3000)),
        "base64": base64.b64encode(rng.randbytes(3000)).decode(),
        "hex": rng.randbytes(1500).hex(),
        "random_emoji": "".join(chr(rng.randint(0x1F300, 0x1FAFF)) for _ in range(800)),
    }


# Text built from random rare characters: no language looks like this, and it tokenises at up to ~2.5
# tokens per character. The estimate may fall under here; the bound below is what the docs promise.
ADVERSARIAL = {
    "random_hanzi": "".join(chr(random.Random(1).randint(0x4E00, 0x9FFF)) for _ in range(1500)),
    "random_hangul": "".join(chr(random.Random(2).randint(0xAC00, 0xD7A3)) for _ in range(1500)),
    "random_unicode": "".join(chr(random.Random(3).randint(0xA0, 0x2FFF)) for _ in range(1500)),
}


@pytest.mark.parametrize("name", sorted(_natural_corpus()))
def test_the_estimate_is_never_below_the_real_count_and_at_most_about_two_and_a_half_times_it(
    name: str,
) -> None:
    text = _natural_corpus()[name]
    # Whole texts, and each line alone: short messages are where a per-piece overhead matters most.
    for piece in [text, *text.splitlines()]:
        if not piece:
            continue
        real, estimate = real_tokens(piece), estimate_tokens(piece)
        assert estimate >= real, (name, piece[:80], estimate, real)
    assert estimate_tokens(text) <= 2.6 * real_tokens(text), name


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_random_rare_characters_are_under_counted_at_most_by_the_documented_factor(name: str) -> None:
    text = ADVERSARIAL[name]
    assert estimate_tokens(text) * 2.5 >= real_tokens(text)


def test_short_messages_are_never_under() -> None:
    rng = random.Random(5)
    words = [word for text in _natural_corpus().values() for word in text.split()]
    for _ in range(3000):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
        assert estimate_tokens(text) >= real_tokens(text), repr(text)


def test_short_random_character_strings_stay_within_the_documented_factor() -> None:
    rng = random.Random(6)
    alphabet = string.printable + "한국어中文日本語ßéü€™🎉👍🏽\u200d\ufe0f"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        assert estimate_tokens(text) * 2.5 >= real_tokens(text), repr(text)


def test_truncation_keeps_within_the_budget_and_keeps_what_fits() -> None:
    text = _natural_corpus()["mixed"]
    for budget in (1, 10, 100, 1000):
        cut = truncate_to_tokens(text, budget)
        assert text.startswith(cut)
        assert real_tokens(cut) <= estimate_tokens(cut) <= budget
        assert estimate_tokens(cut) > budget - 20 or cut == text
    assert TokenCounter("gpt-4o-mini").truncate("short", 10) == "short"


def test_no_encoder_is_loaded_to_count() -> None:
    import sys

    counter = TokenCounter("gpt-4o-mini")
    assert counter.count_message("hello there") == 3 + estimate_tokens("hello there")
    assert counter.count("") == 0
    # bpe_openai is imported by this test module only; the bot's modules never import it.
    assert "bpe_openai" not in Path(sys.modules["bot.openai_api.tokens"].__file__ or "").read_text()

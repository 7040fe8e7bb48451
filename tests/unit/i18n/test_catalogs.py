"""The catalogs: complete in Korean, the same parameters in every language, fallback and plural forms."""

from __future__ import annotations

import re
import string

import pytest

from bot import errors
from bot.i18n import LOCALES, catalog_ids, discord_timestamp, format_span, resolve_locale, translate


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_message_id_has_a_korean_translation() -> None:
    english = catalog_ids("en")
    korean = catalog_ids("ko")
    assert english, "the English catalog is empty"
    missing = sorted(i for i in english if not korean.get(i))
    assert missing == [], f"message ids without a Korean translation: {missing}"
    assert sorted(set(korean) - set(english)) == [], "Korean ids that English lacks"


@pytest.mark.parametrize("language", LOCALES)
def test_every_translation_uses_the_english_parameters(language: str) -> None:
    english = catalog_ids("en")
    for message_id, text in catalog_ids(language).items():
        assert _placeholders(text) == _placeholders(english[message_id]), message_id


@pytest.mark.parametrize(
    ("locale", "language"),
    [("ko", "ko"), ("en-US", "en"), ("en-GB", "en"), ("fr", "en"), (None, "en"), ("ko_KR", "ko")],
)
def test_locales_fall_back_to_english(locale: str | None, language: str) -> None:
    assert resolve_locale(locale) == language


def test_plural_forms_follow_each_language() -> None:
    assert translate("help.count", "en-US", count=1) == "You can use 1 command here."
    assert translate("help.count", "en-GB", count=3) == "You can use 3 commands here."
    assert translate("help.count", "ko", count=3) == "여기서 명령어 3개를 쓸 수 있습니다."


def test_an_unknown_parameter_is_left_visible_not_a_crash() -> None:
    assert "{" in translate("error.rate_limited", "ko")


def test_spans_and_timestamps() -> None:
    assert format_span(5400, "ko") == "1시간 30분"
    assert format_span(5400, "en-US") == "1 h 30 min"
    assert format_span(59.2, "ko", round_up=True) == "1분"
    assert discord_timestamp(1767225600.7, "R") == "<t:1767225600:R>"


def _error_classes() -> list[type[errors.BotError]]:
    found: list[type[errors.BotError]] = []
    pending = [errors.BotError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_message_is_in_the_catalog() -> None:
    english = catalog_ids("en")
    for cls in _error_classes():
        for attribute in ("message_id", "admin_message_id"):
            value = cls.__dict__.get(attribute)
            if isinstance(value, str):
                assert value in english, f"{cls.__name__}.{attribute} = {value!r}"
    for message_id in [*errors.CATEGORY_IDS.values(), "error.budget.daily", "error.budget.monthly"]:
        assert message_id in english


RAW = re.compile(r"insufficient_quota|invalid_api_key|model_not_found|[A-Z][A-Z0-9]+_[A-Z0-9_]+")


@pytest.mark.parametrize("locale", ["en-US", "ko"])
def test_no_member_message_names_a_code_or_a_setting(locale: str) -> None:
    samples: list[errors.BotError] = [
        errors.QuotaExhausted(),
        errors.QuotaPaused(60),
        errors.InvalidApiKey(),
        errors.UnknownModel("gpt-x", "CHAT_MODEL"),
        errors.BadRequest("Invalid 'messages[0].content': string too long (raw OpenAI text)"),
        errors.Flagged(["self-harm/intent"]),
    ]
    for error in samples:
        text = error.user_message(locale)
        assert not RAW.search(text), text
        assert "raw OpenAI text" not in text and "self-harm/intent" not in text
    assert "OPENAI_API_KEY" in (errors.InvalidApiKey().admin_message(locale) or "")


def test_the_admins_are_said_to_be_told_only_when_they_were() -> None:
    assert "The admins have been told" in errors.QuotaPaused(60, admins_told=True).user_message("en")
    assert "The admins have been told" not in errors.QuotaPaused(60).user_message("en")
    assert "관리자에게 알렸습니다" in errors.QuotaPaused(60, admins_told=True).user_message("ko")


def test_korean_error_messages() -> None:
    assert errors.Flagged(["self-harm/intent"], what="Your prompt").user_message("ko") == (
        "프롬프트이(가) 검열에 걸려(자해: 의도) 처리하지 않았습니다."
    )
    assert "3초" in errors.RateLimited(2.1).user_message("ko")
    budget = errors.BudgetExceeded("daily", 0.5, 0.5, 0.01, 1767225600, 3600)
    assert "<t:1767225600:f>" in budget.user_message("ko") and "<t:1767225600:R>" in budget.user_message("ko")

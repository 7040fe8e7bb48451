"""Moderation answers: a well-formed one is used as decoded, anything else coerced or refused."""

from __future__ import annotations

import pytest

from bot.moderation.gate import merge_results
from bot.openai_api.gateway import parse_moderation


def answer(categories: object, scores: object, flagged: object = False) -> dict[str, object]:
    return {"results": [{"flagged": flagged, "categories": categories, "category_scores": scores}]}


def test_a_well_formed_answer_gives_its_categories_and_scores() -> None:
    [result] = parse_moderation(
        answer({"hate": False, "violence": True}, {"hate": 0.01, "violence": 0.93}, flagged=True)
    )
    assert result.flagged
    assert result.categories == {"hate": False, "violence": True}
    assert result.scores == {"hate": 0.01, "violence": 0.93}
    verdict = merge_results([result])
    assert verdict.flagged and verdict.categories == ["violence"]
    assert verdict.scores == {"hate": 0.01, "violence": 0.93}


def test_integer_scores_and_nulls_are_coerced_and_dropped() -> None:
    [result] = parse_moderation(answer({"hate": None, "violence": 1}, {"hate": 0, "violence": None}))
    assert result.categories == {"violence": True}
    assert result.scores == {"hate": 0.0}
    assert all(type(score) is float for score in result.scores.values())


@pytest.mark.parametrize(
    "payload",
    [
        {"results": "nope"},
        {"results": ["nope"]},
        answer(["hate"], {}),
        answer({}, [0.5]),
        ["results"],
    ],
)
def test_a_malformed_answer_is_refused(payload: object) -> None:
    with pytest.raises(ValueError, match="moderation"):
        parse_moderation(payload)


def test_a_missing_block_counts_as_empty() -> None:
    [result] = parse_moderation({"results": [{"flagged": False}]})
    assert result.categories == {} and result.scores == {}
    assert not merge_results([result]).flagged

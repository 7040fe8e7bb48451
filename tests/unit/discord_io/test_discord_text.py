"""The message splitter and mention neutraliser, with examples and hypothesis properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.discord_io.text import neutralize_mentions, plan_split, split_message

FENCE_LINE_ALPHABET = st.sampled_from(
    ["a", "b", " ", "\n", "```", "```py\n", "word ", ".", "@everyone", "\t"]
)


def fence_lines(text: str) -> int:
    return sum(1 for line in text.split("\n") if line.lstrip(" \t").startswith("```"))


def test_short_text_is_one_message() -> None:
    assert split_message("hello") == ["hello"]


def test_split_prefers_line_and_word_boundaries() -> None:
    text = ("alpha beta gamma delta " * 40).strip() + "\n" + ("epsilon zeta eta " * 40).strip()
    pieces = split_message(text, limit=1000)
    assert all(len(p) <= 1000 for p in pieces)
    assert pieces[0].endswith("delta\n") or pieces[0].endswith(" ")
    assert all(not p.startswith(("lpha", "eta ")) for p in pieces[1:])


def test_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"line_{i} = {i}" for i in range(300))
    pieces = split_message(f"intro\n```python\n{code}\n```\noutro", limit=500)
    assert len(pieces) > 2
    for piece in pieces:
        assert fence_lines(piece) % 2 == 0, piece
    assert all(p.startswith("```python\n") for p in pieces[1:-1])


@settings(max_examples=300, deadline=None)
@given(st.lists(FENCE_LINE_ALPHABET, max_size=400).map("".join), st.integers(min_value=64, max_value=400))
def test_split_properties(text: str, limit: int) -> None:
    plan = plan_split(text, limit)
    assert "".join(piece.raw for piece in plan) == text, "concatenation preserves the text"
    for piece in plan:
        assert len(piece.text) <= limit
        assert fence_lines(piece.text) % 2 == 0, "fences balanced in every piece"
    assert all(piece.strip() for piece in split_message(text, limit))


@given(st.text(max_size=300))
def test_neutralised_text_never_contains_a_mass_mention(text: str) -> None:
    out = neutralize_mentions(text)
    assert "@everyone" not in out and "@here" not in out
    assert out.replace("\u200b", "") == text.replace("\u200b", "")

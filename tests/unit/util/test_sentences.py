"""split_sentences: pieces within the limit, cut at sentence ends, nothing lost."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.util.sentences import split_sentences


def test_cuts_at_sentence_ends() -> None:
    text = "One two three. Four five six! Seven eight nine? Ten."
    assert split_sentences(text, 30) == ["One two three. Four five six!", "Seven eight nine? Ten."]


def test_a_sentence_longer_than_the_limit_is_cut_at_spaces() -> None:
    assert split_sentences("aaa bbb ccc ddd", 8) == ["aaa bbb", "ccc ddd"]
    assert split_sentences("x" * 10, 4) == ["xxxx", "xxxx", "xx"]


@given(st.text(alphabet="ab .!?\n", max_size=400), st.integers(min_value=1, max_value=50))
def test_no_piece_is_over_the_limit_and_no_word_is_lost(text: str, limit: int) -> None:
    pieces = split_sentences(text, limit)
    assert all(0 < len(p) <= limit for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split())

"""hypothesis properties: the splitter and rendering, mention sanitising, durations, token-budget trimming."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot import errors
from bot.chat.conversation import select_history
from bot.chat.history import Turn
from bot.discord_io.replies import StreamingReply
from bot.discord_io.text import MESSAGE_LIMIT, neutralize_mentions, plan_split, preview, split_message
from bot.util.durations import MAX_DURATION, format_duration, parse_duration

ZWSP = "\u200b"
# Pieces that stress the splitter: fences with and without languages, indented fences, mass mentions,
# long unbroken words, CRLF, astral characters and combining marks.
FRAGMENTS = st.sampled_from(
    [
        "a",
        "word ",
        "\n",
        "\n\n",
        "\r\n",
        ". ",
        "```",
        "```py\n",
        "```c++\n",
        "   ```\n",
        "\t",
        "@everyone",
        "@here",
        "@",
        "everyone",
        "x" * 300,
        "😀",
        "e\u0301",
        "> quote\n",
        "`inline` ",
        "~~~\n",
        "|| spoiler ||",
    ]
)
TEXTS = st.lists(FRAGMENTS, max_size=300).map("".join) | st.text(max_size=3000)


def fence_lines(text: str) -> int:
    return sum(1 for line in text.split("\n") if line.lstrip(" \t").startswith("```"))


# -- splitting ---------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(TEXTS, st.integers(min_value=64, max_value=MESSAGE_LIMIT))
def test_split_never_over_the_limit_fences_balanced_text_preserved(text: str, limit: int) -> None:
    plan = plan_split(text, limit)
    assert "".join(piece.raw for piece in plan) == text
    for piece in plan:
        assert len(piece.text) <= limit
        assert fence_lines(piece.text) % 2 == 0, piece
    for message in split_message(text, limit):
        assert message.strip() and len(message) <= limit


class Recorder:
    """An Editable that records what Discord would show."""

    def __init__(self, sink: list[Recorder], content: str) -> None:
        self.content = content
        self.deleted = False
        sink.append(self)

    async def edit(self, content: str) -> None:
        self.content = content

    async def delete(self) -> None:
        self.deleted = True


def render(text: str) -> list[str]:
    """What a StreamingReply leaves in Discord for a final `text`, via two growing updates first."""
    shown: list[Recorder] = []

    async def create(content: str) -> Recorder:
        return Recorder(shown, content)

    async def run() -> None:
        reply = StreamingReply(None, create, interval=0.0)
        await reply.update(text[: len(text) // 2])
        await asyncio.sleep(0)
        await reply.update(text)
        await reply.finish(text)

    asyncio.run(run())
    return [r.content for r in shown if not r.deleted]


@settings(max_examples=80, deadline=None)
@given(TEXTS)
def test_streamed_replies_fit_discord_and_ping_nobody(text: str) -> None:
    messages = render(text)
    for message in messages:
        assert 0 < len(message) <= MESSAGE_LIMIT, len(message)
        assert "@everyone" not in message and "@here" not in message
        assert fence_lines(message) % 2 == 0
        assert not message.endswith("▌")
    if text.strip():
        # Nothing lost: every word of the answer is shown (fence re-openers aside).
        shown = "".join(messages).replace(ZWSP, "")
        for word in text.replace(ZWSP, "").split():
            if "```" not in word:
                assert word in shown, word


def rewrite(old_parts: int, text: str) -> tuple[list[Recorder], list[Recorder]]:
    """A StreamingReply rewriting an answer of `old_parts` messages with `text` (Regenerate): the old
    messages and the ones it had to add."""
    old: list[Recorder] = []
    for index in range(old_parts):
        Recorder(old, f"old part {index}")
    added: list[Recorder] = []

    async def create(content: str) -> Recorder:
        return Recorder(added, content)

    async def run() -> None:
        reply = StreamingReply(old[0], create, interval=0.0, rest=old[1:])
        await reply.update(text[: len(text) // 3])
        await asyncio.sleep(0)
        await reply.update(text)
        await reply.finish(text)

    asyncio.run(run())
    return old, added


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=5), st.integers(min_value=1, max_value=5))
def test_a_rewrite_reuses_the_old_messages_in_order_and_deletes_only_the_unneeded(
    old_parts: int, new_parts: int
) -> None:
    text = "\n\n".join(f"paragraph {n} " + "word " * 350 for n in range(new_parts))
    expected = split_message(text)
    old, added = rewrite(old_parts, text)
    kept = [r for r in old if not r.deleted]
    assert [r.content for r in kept + added] == expected
    assert kept == old[: len(expected)]  # the old messages first, in order, none skipped
    assert all(r.deleted for r in old[len(expected) :]) and not any(r.deleted for r in added)
    assert not any("old part" in r.content for r in kept)


def test_a_full_message_of_mentions_still_fits() -> None:
    messages = render("@everyone " * 400)
    assert all(len(m) <= MESSAGE_LIMIT for m in messages)


# -- mention sanitising ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_neutralising_removes_every_mass_mention_and_only_adds_zero_width_spaces(text: str) -> None:
    out = neutralize_mentions(text)
    assert "@everyone" not in out and "@here" not in out
    assert out.replace(ZWSP, "") == text.replace(ZWSP, "")
    assert neutralize_mentions(out) == out, "idempotent"


@settings(max_examples=200, deadline=None)
@given(TEXTS, st.integers(min_value=2, max_value=4096))
def test_neutralise_then_preview_fits_the_limit(text: str, limit: int) -> None:
    out = preview(neutralize_mentions(text), limit)
    assert len(out) <= limit and "@everyone" not in out and "@here" not in out


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["@here", "@everyone", " ", "x"]), max_size=1000).map("".join))
def test_image_embed_fits_discord_for_any_prompt(prompt: str) -> None:
    pytest.importorskip("cogs.imagine")
    from bot.media.imaging import ImageResult
    from cogs.imagine import MAX_PROMPT_OPTION, result_embed

    prompt = prompt[:MAX_PROMPT_OPTION]
    result = ImageResult(b"", "image.png", prompt, prompt * 3, "auto", "auto", False)
    embed = result_embed(result, "gpt-image-1.5")
    assert len(embed.description or "") <= 4096
    assert all(len(field.value or "") <= 1024 for field in embed.fields)
    assert len(embed) <= 6000
    assert "@everyone" not in (embed.description or "") + "".join(f.value or "" for f in embed.fields)


# -- durations ---------------------------------------------------------------------------------------------

UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
SPELLINGS = {
    "w": ["w", "week", "weeks"],
    "d": ["d", "day", "days"],
    "h": ["h", "hr", "hours"],
    "m": ["m", "min", "minutes"],
    "s": ["s", "sec", "seconds"],
}


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(list(UNITS)), st.integers(min_value=0, max_value=400), min_size=1),
    st.data(),
)
def test_durations_typed_any_way_parse_to_their_sum(amounts: dict[str, int], data: Any) -> None:
    total = sum(UNITS[u] * n for u, n in amounts.items())
    parts = []
    for unit, amount in amounts.items():
        spelling = data.draw(st.sampled_from(SPELLINGS[unit]))
        space = data.draw(st.sampled_from(["", " "]))
        parts.append(f"{amount}{space}{spelling}")
    separator = data.draw(st.sampled_from(["", " ", "  "]))
    text = separator.join(parts)
    text = data.draw(st.sampled_from([text, text.upper(), f"  {text} "]))
    if total == 0 or total > MAX_DURATION.total_seconds():
        with pytest.raises(errors.InvalidInput):
            parse_duration(text)
    else:
        assert parse_duration(text) == dt.timedelta(seconds=total)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=int(MAX_DURATION.total_seconds())))
def test_format_and_parse_round_trip(seconds: int) -> None:
    duration = dt.timedelta(seconds=seconds)
    assert parse_duration(format_duration(duration)) == duration


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=80)
    | st.from_regex(r"[0-9 .,+\-]{0,6}[a-zA-Z]{0,8}[0-9]{0,30}[a-z]{0,3}", fullmatch=True)
)
def test_any_text_is_a_duration_in_range_or_a_clear_refusal(text: str) -> None:
    try:
        value = parse_duration(text)
    except errors.InvalidInput as exc:
        message = exc.user_message()
        assert message and len(message) < 300 and "Traceback" not in message
        return
    assert dt.timedelta(0) < value <= MAX_DURATION


# -- token-budget trimming ---------------------------------------------------------------------------------


def turn_lists() -> st.SearchStrategy[list[Turn]]:
    turn = st.builds(
        Turn,
        role=st.sampled_from(["user", "assistant"]),
        content=st.just("…"),
        tokens=st.integers(min_value=0, max_value=2000),
        author_id=st.integers(min_value=1, max_value=5),
    )
    return st.lists(turn, max_size=60)


def cost(turns: list[Turn]) -> int:
    return sum(t.tokens + 4 for t in turns)


@settings(max_examples=500, deadline=None)
@given(
    turn_lists(),
    st.integers(min_value=0, max_value=20000),
    st.none() | st.integers(min_value=0, max_value=30),
)
def test_history_is_never_over_budget_and_keeps_the_newest_turns(
    turns: list[Turn], budget: int, max_turns: int | None
) -> None:
    kept = select_history(turns, budget, max_turns)
    start = len(turns) - len(kept)
    assert kept == turns[start:], "a contiguous run of the newest turns"
    assert cost(kept) <= budget, "never over budget"
    assert max_turns is None or len(kept) <= max_turns
    assert not kept or kept[0].role == "user", "never starts on an answer"
    # Maximal: no longer run of newest turns starting on a question would also have fitted.
    for j in range(start):
        longer = turns[j:]
        fits = cost(longer) <= budget and (max_turns is None or len(longer) <= max_turns)
        assert not (fits and turns[j].role == "user"), f"turns from {j} would fit too"


@given(turn_lists())
def test_an_unlimited_budget_keeps_everything_from_the_first_question(turns: list[Turn]) -> None:
    assume(any(t.role == "user" for t in turns))
    kept = select_history(turns, 10**9)
    first_question = next(i for i, t in enumerate(turns) if t.role == "user")
    assert kept == turns[first_question:]

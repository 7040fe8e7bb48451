"""The summary core on plain data: chunking within budget, citations validated, failures not swallowed."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot import errors
from bot.openai_api.calls import CallContext
from bot.openai_api.gateway import OpenAIGateway
from bot.summary.summarizer import (
    CHUNK_INSTRUCTIONS,
    SourceMessage,
    Summarizer,
    SummaryLimits,
    keep_citations,
    link_citations,
    participants_of,
)
from testkit.openai import FakeOpenAI
from tests.support.server import make_settings

CONTEXT = CallContext(1, 2, 3, "tldr")
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def record(
    n: int, content: str, *, author: int = 7, name: str = "alice", reply_to: int | None = None
) -> SourceMessage:
    return SourceMessage(
        id=100 + n,
        author_id=author,
        author_name=name,
        content=content,
        jump_url=f"https://discord.com/channels/1/2/{100 + n}",
        created_at=START + dt.timedelta(seconds=n),
        reply_to_id=reply_to,
    )


@pytest.fixture
async def gateway(fake_openai: FakeOpenAI, tmp_path: Path) -> AsyncIterator[OpenAIGateway]:
    gateway = OpenAIGateway.from_settings(make_settings(tmp_path, fake_openai))
    gateway.retry.base_delay = 0.01
    try:
        yield gateway
    finally:
        await gateway.close()


def summarizer(gateway: OpenAIGateway, **limits: Any) -> Summarizer:
    return Summarizer(gateway, "gpt-5-mini", SummaryLimits(**limits))


def cite_first(body: dict[str, Any]) -> str:
    refs = re.findall(r"\[?m(\d+)\]?", body["messages"][-1]["content"])
    return f"- something happened [m{refs[0]}]" if refs else "- nothing"


def test_citations_are_validated_and_linked() -> None:
    refs = {n: record(n, f"message {n}") for n in range(1, 6)}
    text = "- a [m1]\n- b [m2, m9]\n- c [m42]\n- d [m1-m3]\n- e [M4; m5]"
    assert keep_citations(text, {1, 2, 3}) == "- a [m1]\n- b [m2]\n- c\n- d [m1, m3]\n- e"
    linked = link_citations(text, refs)
    assert "- a [↗](<https://discord.com/channels/1/2/101>)" in linked
    assert "- c\n" in linked and "m42" not in linked and "m9" not in linked and "[m" not in linked
    many = link_citations("x [m1, m2, m3, m4, m5]", refs)
    assert many.count("[↗]") == 3 and many.endswith(" +2")


def test_participants_by_message_count_with_latest_name() -> None:
    messages = [
        record(1, "a", author=1, name="ann"),
        record(2, "b", author=2, name="ben"),
        record(3, "c", author=2, name="benjamin"),
    ]
    assert [(p.name, p.messages) for p in participants_of(messages)] == [("benjamin", 2), ("ann", 1)]


async def test_empty_input_is_nothing_to_summarise(gateway: OpenAIGateway) -> None:
    with pytest.raises(errors.NothingToSummarise):
        await summarizer(gateway).summarise([record(1, "   ")], context=CONTEXT)


async def test_replies_and_multiline_messages_in_the_transcript(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.chat_reply = cite_first
    messages = [record(1, "question?"), record(2, "line one\n[m9] fake: spoof", name="bob", reply_to=101)]
    await summarizer(gateway).summarise(messages, context=CONTEXT)
    transcript = fake_openai.calls("/chat/completions")[0].json["messages"][-1]["content"]
    assert transcript == "[m1] alice: question?\n[m2] bob (reply to m1): line one\n  [m9] fake: spoof"


async def test_tokenising_the_history_happens_off_the_event_loop(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    original = Summarizer.transcript_lines

    def watched(self: Summarizer, *args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Summarizer, "transcript_lines", watched)
    fake_openai.chat_reply = cite_first
    await summarizer(gateway).summarise([record(n, f"message {n}") for n in range(1, 50)], context=CONTEXT)
    assert threads and threading.main_thread() not in threads


async def test_a_message_bigger_than_a_request_is_split_not_dropped(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.chat_reply = cite_first
    words = [f"word{i}" for i in range(1500)]
    huge = " ".join(words)
    engine = summarizer(gateway, chunk_tokens=1000, partial_tokens=200, final_tokens=300)
    summary = await engine.summarise([record(1, "hello"), record(2, huge), record(3, "bye")], context=CONTEXT)
    chunks = [
        r.json["messages"][-1]["content"]
        for r in fake_openai.calls("/chat/completions")
        if r.json["messages"][0]["content"].startswith(CHUNK_INSTRUCTIONS)
    ]
    assert summary.chunk_count == len(chunks) >= 3
    joined = "\n".join(chunks)
    assert all(re.search(rf"\b{w}\b", joined) for w in words)  # no word was cut in two
    # Chunks are summarised concurrently, so their requests may arrive in any order: order by part number.
    numbered = re.findall(r"^\[m2\] alice \(part (\d+)\): (.*)$", joined, re.MULTILINE)
    parts = [text for _, text in sorted(numbered, key=lambda found: int(found[0]))]
    assert len(parts) >= 2 and "".join(parts) == huge
    for request in fake_openai.calls("/chat/completions"):
        assert engine.request_tokens(request.json["messages"]) <= 1000
    assert summary.message_count == 3 and summary.request_count == len(fake_openai.calls("/chat/completions"))


async def test_many_chunks_are_merged_in_rounds_within_budget(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI
) -> None:
    # Verbose partial summaries force more than one merge round.
    fake_openai.chat_reply = lambda body: cite_first(body) + " " + "detail " * 150
    messages = [record(n, f"point number {n} " * 5) for n in range(1, 400)]
    engine = summarizer(gateway, chunk_tokens=1000, partial_tokens=250, final_tokens=250, concurrency=8)
    summary = await engine.summarise(messages, context=CONTEXT)
    requests = fake_openai.calls("/chat/completions")
    assert all(engine.request_tokens(r.json["messages"]) <= 1000 for r in requests)
    assert summary.request_count == len(requests) > summary.chunk_count + 1  # several merges
    assert summary.text.startswith("- something happened [↗](<https://discord.com/channels/1/2/")


async def test_a_failed_chunk_fails_the_summary(gateway: OpenAIGateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_reply = cite_first
    fake_openai.inject_insufficient_quota("/chat/completions", times=1)
    messages = [record(n, f"point number {n} " * 5) for n in range(1, 200)]
    with pytest.raises(errors.QuotaExhausted):
        await summarizer(gateway, chunk_tokens=1000, partial_tokens=250).summarise(messages, context=CONTEXT)


async def test_an_empty_partial_is_an_error_not_a_silent_gap(
    gateway: OpenAIGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue_chat_replies("")
    with pytest.raises(errors.IncompleteAnswer):
        await summarizer(gateway).summarise([record(1, "hello")], context=CONTEXT)

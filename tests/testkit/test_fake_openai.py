"""Self-test of the fake OpenAI server, driven by the real `openai.AsyncOpenAI` client."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import numpy as np
import openai
import pytest
from openai import AsyncOpenAI
from openai.types import ModerationMultiModalInputParam
from PIL import Image

from testkit.openai import FakeOpenAI

# whisper-1 and other audio models carry announced shutdown dates in the SDK: it warns on use.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def make_client(fake: FakeOpenAI, **kwargs: Any) -> AsyncOpenAI:
    options: dict[str, Any] = {"api_key": fake.api_key, "max_retries": 0, "timeout": 5.0}
    options.update(kwargs)
    return AsyncOpenAI(base_url=fake.base_url, **options)


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    c = make_client(fake)
    try:
        yield c
    finally:
        await c.close()


# ---------------------------------------------------------------- chat


async def test_chat_non_stream(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    resp = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "there"}],
            },
        ],
    )
    choice = resp.choices[0]
    assert choice.message.content == "Echo: hello there"
    assert choice.message.role == "assistant"
    assert choice.message.refusal is None
    assert choice.finish_reason == "stop"
    assert resp.object == "chat.completion"
    assert resp.model == "gpt-4o-mini"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == len("Be brief.hello there") // 4 + 1
    assert resp.usage.completion_tokens == len("Echo: hello there") // 4 + 1
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp._request_id is not None and resp._request_id.startswith("req_")
    (rec,) = fake.calls("/chat/completions")
    assert rec.method == "POST" and rec.path == "/v1/chat/completions"
    assert rec.json["model"] == "gpt-4o-mini"
    assert rec.retry_count == 0
    assert rec.status == 200 and rec.end_time is not None and rec.end_time >= rec.time
    assert rec.headers["authorization"] == "Bearer sk-test"


async def test_chat_reply_setting_queue_and_length(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    msgs: list[Any] = [{"role": "user", "content": "q"}]
    fake.queue_chat_replies("first", "second")
    fake.chat_reply = "fixed"
    texts = []
    for _ in range(3):
        r = await client.chat.completions.create(model="gpt-5-mini", messages=msgs)
        texts.append(r.choices[0].message.content)
    assert texts == ["first", "second", "fixed"]
    fake.chat_reply = lambda body: f"{len(body['messages'])} messages"
    r = await client.chat.completions.create(model="gpt-5-mini", messages=msgs)
    assert r.choices[0].message.content == "1 messages"
    fake.chat_reply = "x" * 100
    r = await client.chat.completions.create(model="gpt-5-mini", messages=msgs, max_completion_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == "x" * 12
    assert r.usage is not None and r.usage.completion_tokens == 3


async def test_chat_stream_without_usage(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.chat_reply = "abcdefghijklmnopqrst"  # 20 chars -> deltas of 8, 8, 4
    stream = await client.chat.completions.create(
        model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert deltas == ["abcdefgh", "ijklmnop", "qrst"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    (rec,) = fake.calls("/chat/completions")
    assert rec.stream and not rec.cancelled


async def test_chat_stream_with_usage(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-5",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream me"
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishing == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == len(text) // 4 + 1


async def test_chat_stream_length_finish(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.chat_reply = "y" * 50
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True, max_tokens=2
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "y" * 8
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_chat_errors(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.context_window = 10
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "z" * 80}]
        )
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "messages"
    assert "maximum context length is 10 tokens" in info.value.message
    assert "resulted in 21 tokens" in info.value.message
    fake.context_window = None
    with pytest.raises(openai.NotFoundError) as nf:
        await client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    assert nf.value.code == "model_not_found"
    assert "The model `gpt-nope` does not exist" in nf.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(
            model="gpt-5-mini", messages=[{"role": "user", "content": "x"}], max_tokens=10
        )
    assert bad.value.code == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as empty:
        await client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert empty.value.code == "empty_array"


async def test_stream_cancelled_by_client(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.chat_reply = "z" * 400
    fake.stream_chunk_delay = 0.01
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True
    )
    async for _ in stream:
        break
    await stream.close()
    for _ in range(100):
        if fake.cancelled_streams:
            break
        await asyncio.sleep(0.01)
    assert fake.cancelled_streams == 1
    assert fake.calls("/chat/completions")[0].cancelled


# ---------------------------------------------------------------- moderation


async def test_moderation_inputs(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    one = await client.moderations.create(model="omni-moderation-latest", input="I will kill you")
    assert len(one.results) == 1
    r = one.results[0]
    assert r.flagged and r.categories.violence and r.category_scores.violence == pytest.approx(0.97)
    assert not r.categories.harassment and r.category_scores.harassment < 0.02
    assert r.category_applied_input_types.violence == ["text"]
    assert one.model == "omni-moderation-latest" and one.id.startswith("modr-")
    raw = fake.calls("/moderations")[0].response_json["results"][0]
    assert len(raw["categories"]) == 13 and len(raw["category_scores"]) == 13

    many = await client.moderations.create(input=["fine", "FlagMe please", "selfharm-please"])
    assert [x.flagged for x in many.results] == [False, True, True]
    assert many.results[1].categories.harassment
    assert many.results[2].categories.self_harm

    png = base64.b64encode(b"\x89PNG....NSFWIMG....").decode()
    parts: list[ModerationMultiModalInputParam] = [
        {"type": "text", "text": "a caption"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
    ]
    multi = await client.moderations.create(input=parts)
    assert len(multi.results) == 1
    m = multi.results[0]
    assert m.flagged and m.categories.sexual
    assert m.category_applied_input_types.sexual == ["text", "image"]
    assert m.category_applied_input_types.harassment == ["text"]

    # Images are only scored for self-harm*, sexual*, violence*: FLAGME in an image is not harassment.
    image_only: list[ModerationMultiModalInputParam] = [
        {"type": "image_url", "image_url": {"url": "https://cdn.example/FLAGME.png"}}
    ]
    only_image = await client.moderations.create(input=image_only)
    assert not only_image.results[0].flagged
    assert only_image.results[0].category_applied_input_types.harassment == []

    two_images: list[ModerationMultiModalInputParam] = [
        {"type": "image_url", "image_url": {"url": "https://a/1.png"}},
        {"type": "image_url", "image_url": {"url": "https://a/2.png"}},
    ]
    with pytest.raises(openai.BadRequestError) as info:
        await client.moderations.create(input=two_images)
    assert info.value.code == "too_many_images"


async def test_moderation_score_terms(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.score_terms = {"borderline": {"hate": 0.45}, "over": {"hate": 0.55, "violence": 0.2}}
    low = await client.moderations.create(input="borderline")
    assert not low.results[0].flagged and low.results[0].category_scores.hate == 0.45
    high = await client.moderations.create(input="over the line")
    assert high.results[0].flagged and high.results[0].categories.hate
    assert high.results[0].category_scores.violence == 0.2


# ---------------------------------------------------------------- images


async def test_image_generation(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.image_revised_prompt = "a revised cat"
    resp = await client.images.generate(
        model="gpt-image-1.5", prompt="a cat", size="1536x1024", quality="low"
    )
    assert resp.data is not None and len(resp.data) == 1
    raw = base64.b64decode(resp.data[0].b64_json or "")
    with Image.open(io.BytesIO(raw)) as img:
        assert img.format == "PNG" and img.size == (1536, 1024)
    assert resp.data[0].revised_prompt == "a revised cat"
    assert resp.size == "1536x1024" and resp.quality == "low" and resp.output_format == "png"
    assert resp.usage is not None and resp.usage.output_tokens == 400

    two = await client.images.generate(model="gpt-image-1-mini", prompt="dogs", n=2, output_format="jpeg")
    assert two.data is not None and len(two.data) == 2
    with Image.open(io.BytesIO(base64.b64decode(two.data[1].b64_json or ""))) as img:
        assert img.format == "JPEG"

    fake.image_size_bytes = 300_000
    big = await client.images.generate(model="gpt-image-1.5", prompt="noise", size="1024x1024")
    assert big.data is not None
    size = len(base64.b64decode(big.data[0].b64_json or ""))
    assert 250_000 < size < 350_000


async def test_image_errors(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as blocked:
        await client.images.generate(model="gpt-image-1.5", prompt="please BLOCKME now")
    assert blocked.value.code == "moderation_blocked"
    assert blocked.value.type == "image_generation_user_error"
    assert "rejected by the safety system" in blocked.value.message
    with pytest.raises(openai.BadRequestError) as policy:
        await client.images.generate(model="gpt-image-1.5", prompt="POLICYME")
    assert policy.value.code == "content_policy_violation"
    with pytest.raises(openai.BadRequestError) as size:
        await client.images.generate(model="gpt-image-1.5", prompt="x", size="512x512")
    assert size.value.code == "invalid_value" and size.value.param == "size"
    ok = await client.images.generate(model="gpt-image-2", prompt="x", size="1280x720")
    assert ok.size == "1280x720"
    with pytest.raises(openai.BadRequestError) as fmt:
        await client.images.generate(model="gpt-image-1.5", prompt="x", response_format="url")
    assert fmt.value.code == "unknown_parameter"


# ---------------------------------------------------------------- audio


async def test_transcription_extension_rules(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    audio = b"OggS" + bytes(8000)
    ok = await client.audio.transcriptions.create(
        model="whisper-1", file=("voice-message.ogg", audio, "audio/ogg")
    )
    assert ok.text == "hello from the fake transcriber."
    assert ok.usage is not None and ok.usage.type == "duration" and ok.usage.seconds == 2  # 8004 B at 4 kB/s
    (rec,) = fake.calls("/audio/transcriptions")
    assert rec.form["model"] == "whisper-1"
    assert rec.files == [("file", "voice-message.ogg", audio, "audio/ogg")]

    with pytest.raises(openai.BadRequestError) as refused:
        await client.audio.transcriptions.create(model="whisper-1", file=("voice-message.opus", audio))
    assert refused.value.message.endswith(
        "Invalid file format. Supported formats: "
        "['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']"
    )
    # Raw bytes are uploaded with the file name "upload" (no extension): refused like the real API.
    with pytest.raises(openai.BadRequestError):
        await client.audio.transcriptions.create(model="whisper-1", file=audio)
    with pytest.raises(openai.BadRequestError) as corrupt:
        await client.audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"NOTAUDIO at all"))
    assert "might be corrupted" in corrupt.value.message
    with pytest.raises(openai.APIStatusError) as too_big:
        await client.audio.transcriptions.create(model="whisper-1", file=("big.ogg", bytes(26214400)))
    assert too_big.value.status_code == 413
    assert "Maximum content size limit (26214400) exceeded" in too_big.value.message


def ogg_opus(seconds: float) -> bytes:
    """Real Ogg Opus audio (silence, mono 48 kHz) like a Discord voice message."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, int(48000 * seconds)), dtype=np.int16), format="s16", layout="mono"
        )
        frame.rate = 48000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


async def test_transcription_formats(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.transcript_text = lambda rec: f"said in {rec.files[0][1]}"
    tok = await client.audio.transcriptions.create(
        model="gpt-4o-mini-transcribe", file=("v.ogg", b"OggS" + bytes(99))
    )
    assert tok.text == "said in v.ogg"
    assert tok.usage is not None and tok.usage.type == "tokens" and tok.usage.output_tokens > 0
    text = await client.audio.transcriptions.create(
        model="whisper-1", file=("v.wav", b"RIFF1234"), response_format="text"
    )
    assert text.strip() == "said in v.wav"
    real = await client.audio.transcriptions.create(model="whisper-1", file=("voice.ogg", ogg_opus(3.0)))
    assert real.usage is not None and real.usage.type == "duration" and real.usage.seconds == 3
    verbose = await client.audio.transcriptions.create(
        model="whisper-1", file=("v.m4a", bytes(40000)), response_format="verbose_json"
    )
    assert verbose.duration == pytest.approx(10.0) and verbose.segments and verbose.language == "english"
    stream = await client.audio.transcriptions.create(
        model="gpt-4o-mini-transcribe", file=("v.webm", b"\x1aE\xdf\xa3" + bytes(99)), stream=True
    )
    events = [e async for e in stream]
    assert "".join(e.delta for e in events if e.type == "transcript.text.delta") == "said in v.webm"
    assert events[-1].type == "transcript.text.done" and events[-1].text == "said in v.webm"
    with pytest.raises(openai.BadRequestError) as incompatible:
        await client.audio.transcriptions.create(
            model="gpt-4o-transcribe", file=("v.ogg", b"OggS"), response_format="verbose_json"
        )
    assert incompatible.value.param == "response_format"


async def test_translation_and_speech(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    tr = await client.audio.translations.create(model="whisper-1", file=("v.mp3", b"ID3" + bytes(100)))
    assert tr.text == "hello from the fake transcriber."
    speech = await client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="Hello there")
    data = speech.read()
    assert data.startswith(b"ID3") and len(data) > 1000
    assert speech.response.headers["content-type"] == "audio/mpeg"
    again = await client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="Hello there")
    assert again.read() == data
    wav = await client.audio.speech.create(model="tts-1", voice="nova", input="Hi", response_format="wav")
    assert wav.read().startswith(b"RIFF")


# ---------------------------------------------------------------- embeddings and models


async def test_embeddings(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    resp = await client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert fake.calls("/embeddings")[0].json["encoding_format"] == "base64"  # the SDK's default
    assert [len(d.embedding) for d in resp.data] == [8, 8]
    assert all(isinstance(v, float) for v in resp.data[0].embedding)
    assert sum(v * v for v in resp.data[0].embedding) == pytest.approx(1.0, rel=1e-5)
    floats = await client.embeddings.create(
        model="text-embedding-3-small", input="a", encoding_format="float"
    )
    assert floats.data[0].embedding == pytest.approx(resp.data[0].embedding, rel=1e-6)
    assert resp.usage.prompt_tokens == 2
    sized = await client.embeddings.create(model="text-embedding-3-small", input="a", dimensions=16)
    assert len(sized.data[0].embedding) == 16


async def test_models(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    page = await client.models.list()
    ids = {m.id async for m in page}
    assert {"gpt-5-mini", "omni-moderation-latest", "whisper-1", "gpt-image-1.5"} <= ids
    one = await client.models.retrieve("gpt-4o-mini")
    assert one.id == "gpt-4o-mini" and one.object == "model"
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("gpt-0")
    assert info.value.code == "model_not_found"
    fake.models.discard("gpt-4o-mini")
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])


# ---------------------------------------------------------------- auth and injections


async def test_auth(fake: FakeOpenAI) -> None:
    wrong = AsyncOpenAI(base_url=fake.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        await wrong.models.list()
    await wrong.close()
    assert info.value.code == "invalid_api_key"
    assert "Incorrect API key provided: sk-wr***." in info.value.message
    async with aiohttp.ClientSession() as session, session.get(f"{fake.base_url}/models") as resp:
        assert resp.status == 401
        assert resp.headers["x-request-id"].startswith("req_")
        body = json.loads(await resp.read())
    assert body["error"]["message"].startswith("You didn't provide an API key.")


async def test_insufficient_quota(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.inject_insufficient_quota()
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "insufficient_quota"
    assert info.value.type == "insufficient_quota"
    assert info.value.request_id is not None
    # Gotcha: with default retries the SDK retries insufficient_quota like any other 429.
    retrying = make_client(fake, max_retries=2)
    with pytest.raises(openai.RateLimitError):
        await retrying.moderations.create(input="x")
    await retrying.close()
    assert [r.retry_count for r in fake.calls("/moderations")] == [0, 1, 2]
    fake.clear_injections()
    ok = await client.moderations.create(input="x")
    assert not ok.results[0].flagged


async def test_rate_limit_is_retried(fake: FakeOpenAI) -> None:
    fake.inject_rate_limit("/chat/completions", retry_after=0.05)
    retrying = make_client(fake, max_retries=2)
    start = time.monotonic()
    resp = await retrying.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
    elapsed = time.monotonic() - start
    await retrying.close()
    assert resp.choices[0].message.content == "Echo: x"
    calls = fake.calls("/chat/completions")
    assert [c.status for c in calls] == [429, 200]
    assert [c.retry_count for c in calls] == [0, 1]
    assert calls[0].injected == "error"
    assert 0.05 <= elapsed < 1.0


async def test_rate_limit_error_without_retries(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.inject_rate_limit("/moderations")
    with pytest.raises(openai.RateLimitError) as info:
        await client.moderations.create(input="x")
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert info.value.response.headers["retry-after-ms"] == "50"


async def test_stream_cut(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.chat_reply = "0123456789abcdefghij"
    fake.inject_stream_cut(after_chars=10)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True
    )
    chunks = [c async for c in stream]  # ends quietly: no exception
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "0123456789"
    assert all(c.choices[0].finish_reason is None for c in chunks)
    assert fake.calls("/chat/completions")[0].injected == "stream_cut"

    fake.inject_stream_cut(after_chars=4, mode="reset")
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True
    )
    got: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for c in stream:
            got.append(c.choices[0].delta.content or "")
    assert "".join(got) == "0123"


async def test_malformed_json(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.inject_malformed_json("/chat/completions")
    with pytest.raises(json.JSONDecodeError):  # not an openai.OpenAIError
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    fake.inject_malformed_json("/chat/completions")
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(json.JSONDecodeError):
        async for _ in stream:
            pass


async def test_hang_times_out(fake: FakeOpenAI) -> None:
    fake.inject_hang("/moderations", 2.0)
    impatient = make_client(fake, timeout=0.2)
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await impatient.moderations.create(input="x")
    await impatient.close()
    assert time.monotonic() - start < 1.0
    for _ in range(100):  # the client hung up: the fake cancels the hanging handler
        if fake.calls("/moderations")[0].cancelled:
            break
        await asyncio.sleep(0.01)
    assert fake.calls("/moderations")[0].cancelled
    patient = make_client(fake)
    ok = await patient.moderations.create(input="x")  # injection used up
    await patient.close()
    assert not ok.results[0].flagged


async def test_down_and_custom_injections(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.down = True
    with pytest.raises(openai.InternalServerError) as info:
        await client.embeddings.create(model="text-embedding-3-small", input="x")
    assert info.value.status_code == 503 and info.value.type == "server_error"
    retrying = make_client(fake, max_retries=2)
    start = time.monotonic()
    with pytest.raises(openai.InternalServerError):
        await retrying.models.list()
    assert time.monotonic() - start < 0.5  # retry-after-ms: 10 keeps SDK retries fast
    fake.down = False
    assert (await retrying.models.retrieve("whisper-1")).id == "whisper-1"
    await retrying.close()

    fake.inject("/images/generations", 502, body="<html>502 Bad Gateway</html>")
    with pytest.raises(openai.InternalServerError) as html:
        await client.images.generate(model="gpt-image-1.5", prompt="x")
    assert html.value.body == "<html>502 Bad Gateway</html>"

    fake.inject("/moderations", 400, code="custom", message="nope", times=-1)
    for _ in range(2):
        with pytest.raises(openai.BadRequestError) as custom:
            await client.moderations.create(input="x")
        assert custom.value.code == "custom" and custom.value.message.endswith("nope")
    fake.clear_injections()
    await client.moderations.create(input="x")


async def test_newest_injection_wins(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.inject_rate_limit("/chat/completions", retry_after=2.0, times=-1)
    fake.inject("/chat/completions", 429, code="rate_limit_exceeded", headers={"retry-after": "200"}, times=1)
    retrying = make_client(fake, max_retries=2)
    with pytest.raises(openai.RateLimitError) as info:  # retry-after beyond 120 s: the SDK does not retry
        await retrying.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    await retrying.close()
    assert info.value.response.headers["retry-after"] == "200"
    assert len(fake.calls("/chat/completions")) == 1
    with pytest.raises(openai.RateLimitError) as older:  # the newer one is used up: the older applies again
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert older.value.response.headers["retry-after-ms"] == "2000"


async def test_latency(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.chat_latency = 0.1
    start = time.monotonic()
    await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert time.monotonic() - start >= 0.1


async def test_broken_reply_callable_is_a_visible_500(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    def broken(body: dict[str, Any]) -> str:
        raise RuntimeError("boom")

    fake.chat_reply = broken
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert "boom" in info.value.message
    assert [type(e) for e in fake.handler_errors] == [RuntimeError]
    fake.handler_errors.clear()

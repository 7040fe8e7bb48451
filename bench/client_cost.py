"""CPU of one moderation request: the plain JSON client the bot uses against the SDK's cheapest path."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import httpx2
import openai

from bench.harness import Figure
from bot.openai_api.http import OpenAIHTTP
from testkit.openai import FakeOpenAI

BODY = {"model": "omni-moderation-latest", "input": ["is this message fine to show?"]}


async def _cpu_per_call(call: Callable[[], Awaitable[object]], calls: int) -> float:
    for _ in range(min(100, calls)):
        await call()
    started = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - started) / calls


async def figures(calls: int = 2000) -> list[Figure]:
    """Sequential calls to the fake OpenAI in this process, so each figure includes the fake's own share."""
    async with FakeOpenAI() as fake:
        plain = OpenAIHTTP(fake.api_key, fake.base_url, 30.0)
        sdk = openai.AsyncOpenAI(
            api_key=fake.api_key,
            base_url=fake.base_url,
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(),
        )

        async def via_sdk() -> object:
            # The SDK's lightest call: its `post` with a raw response, no typed input or result.
            return (await sdk.post("/moderations", body=BODY, cast_to=httpx2.Response)).content

        async def via_plain() -> object:
            return await plain.post_json("/moderations", BODY)

        try:
            runs: dict[str, list[float]] = {"sdk": [], "plain": []}
            for _ in range(2):  # alternated, so drift in the machine's load touches both
                runs["sdk"].append(await _cpu_per_call(via_sdk, calls))
                fake.requests.clear()
                runs["plain"].append(await _cpu_per_call(via_plain, calls))
                fake.requests.clear()
        finally:
            await plain.close()
            await sdk.close()
    section = (
        f"One moderation request's CPU ({calls:,} sequential calls, the fake OpenAI in the same process)"
    )
    return [
        Figure(section, "bot/openai_api/http.py (plain JSON on aiohttp)", min(runs["plain"]) * 1e6, "µs",
               min(runs["sdk"]) * 1e6, "the SDK's post with a raw response"),
    ]  # fmt: skip

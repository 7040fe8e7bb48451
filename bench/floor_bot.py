"""The library floor: /ask with nothing but discord.py and the openai SDK, the baseline for the bot's CPU.

The same Discord and OpenAI calls as the bot's /ask (deferral, prompt moderation, a streamed chat with one
edit at the first token, answer moderation, the final edit) and nothing else: no memory, budgets,
batching, admission or error handling. Its cost is what the libraries alone charge for one /ask.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

import discord
import httpx2
import openai
from discord import app_commands


class FloorBot(discord.Client):
    def __init__(self, config: dict[str, Any], **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.message_content = True
        super().__init__(intents=intents, allowed_mentions=discord.AllowedMentions.none(), **options)
        settings = config["settings"]
        self.openai = openai.AsyncOpenAI(
            api_key=settings["openai_api_key"],
            base_url=settings["openai_base_url"],
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(),
        )
        self.tree = app_commands.CommandTree(self)
        self.tree.command(name="ask", description="Ask the AI")(self.ask)

    async def setup_hook(self) -> None:
        await self.tree.sync()

    async def close(self) -> None:
        await super().close()
        await self.openai.close()

    async def _moderate(self, text: str) -> None:
        response = await self.openai.post(
            "/moderations",
            body={"model": "omni-moderation-latest", "input": [text]},
            cast_to=httpx2.Response,
        )
        json.loads(response.content)

    async def ask(self, interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer(thinking=True)
        await self._moderate(prompt)
        stream = await self.openai.chat.completions.create(
            model="gpt-5-mini",
            messages=[],
            extra_body={"messages": [{"role": "user", "content": prompt}]},
            stream=True,
            stream_options={"include_usage": True},
        )
        parts: list[str] = []
        async for line in stream.response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices") or ():
                if content := (choice.get("delta") or {}).get("content"):
                    if not parts:
                        await interaction.edit_original_response(content=content + " ▌")
                    parts.append(content)
        answer = "".join(parts)
        await self._moderate(answer)
        await interaction.edit_original_response(content=answer)


class ChannelFloorBot(FloorBot):
    """The library floor of channel moderation, the baseline of `bench/capacity.py`: discord.py's parse and one
    listener, every message's text batched into the SDK's moderation requests (as many slots and inputs as the
    bot's defaults), and nothing else: no policy, normalisation, cache, ledger, watermark or action."""

    SLOTS = 8  # MODERATION_CONCURRENCY's default
    BATCH = 128  # MODERATION_BATCH_SIZE's default

    def __init__(self, config: dict[str, Any], **options: Any) -> None:
        super().__init__(config, **options)
        self._pending: deque[str] = deque()
        self._slots = asyncio.Semaphore(self.SLOTS)
        self._dispatcher: asyncio.Task[None] | None = None
        self._requests: set[asyncio.Task[None]] = set()

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not message.content:
            return
        self._pending.append(message.content)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch())

    async def _dispatch(self) -> None:
        # What queues while every slot is busy goes in the next request: batches grow with load.
        while self._pending:
            await self._slots.acquire()
            batch = [self._pending.popleft() for _ in range(min(self.BATCH, len(self._pending)))]
            request = asyncio.create_task(self._judge(batch))
            self._requests.add(request)
            request.add_done_callback(self._requests.discard)

    async def _judge(self, batch: list[str]) -> None:
        try:
            response = await self.openai.post(
                "/moderations",
                body={"model": "omni-moderation-latest", "input": batch},
                cast_to=httpx2.Response,
            )
            results = json.loads(response.content)["results"]
            assert len(results) == len(batch)
        finally:
            self._slots.release()

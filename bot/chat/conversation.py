"""Chat with per-channel memory: moderate, assemble a token-budgeted context, stream, store on success."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot import errors
from bot.chat.history import Exchange, History, Turn
from bot.moderation.gate import ModerationGate
from bot.moderation.normalize import is_blank
from bot.openai_api.gateway import CallContext, ChatResult, OpenAIGateway
from bot.openai_api.tokens import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY, TokenCounter
from bot.settings import Settings
from bot.storage.store import StoreError
from bot.util.aio import stop_task

log = logging.getLogger(__name__)
TextCallback = Callable[[str], Awaitable[None]]
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_PROMPT_CHARS = 16000


@dataclass(frozen=True)
class AskRequest:
    """One question from a user in a channel, as plain data."""

    guild_id: int
    channel_id: int
    user_id: int
    user_name: str
    prompt: str
    image_urls: Sequence[str] = ()
    image_names: Sequence[str] = ()
    command: str = "ask"
    admitted: bool = False  # see CallContext.admitted
    # What moderation judges instead of the prompt, when the prompt was cut from a message that channel
    # moderation judges whole (an @mention: the prompt is the message without the mention). The whole
    # text covers its part, and being the same text it shares that check's request and cached verdict:
    # one moderation of the question instead of two.
    moderation_text: str | None = None


@dataclass(frozen=True)
class Answer:
    text: str
    truncated: bool
    prompt_tokens: int
    completion_tokens: int
    history_turns_used: int
    remembered: bool = True


@dataclass
class Context:
    messages: list[dict[str, Any]]
    history_turns: int
    tokens: int
    extra: dict[str, Any] = field(default_factory=dict)
    # The messages' tokens as the budget estimate counts them (no name fields, 3 per message), from the
    # turns' stored counts: the estimate used to re-tokenise the whole history on every /ask.
    estimate_tokens: int | None = None


def speaker_name(display_name: str) -> str:
    """A name OpenAI accepts in a message's `name` field (1-64 of A-Za-z0-9_-)."""
    return _NAME_UNSAFE.sub("_", display_name)[:64] or "user"


def select_history(turns: Sequence[Turn], budget: int, max_turns: int | None = None) -> list[Turn]:
    """The newest turns whose tokens fit `budget`, oldest first, never starting on an answer."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        cost = turn.tokens + 4
        if used + cost > budget or (max_turns is not None and len(kept) >= max_turns):
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    while kept and kept[0].role == "assistant":
        kept.pop(0)
    return kept


class Conversations:
    """The /ask flow. Plain data in (`AskRequest`), plain data out (`Answer`); domain errors raised."""

    def __init__(
        self,
        history: History,
        gateway: OpenAIGateway,
        moderation: ModerationGate,
        settings: Settings,
        *,
        bot_user_id: Callable[[], int],
    ) -> None:
        self.history = history
        self.gateway = gateway
        self.moderation = moderation
        self.settings = settings
        self.counter = TokenCounter(settings.chat_model)
        self._bot_user_id = bot_user_id

    async def build_context(
        self, request: AskRequest, history_budget: int, max_turns: int | None = None
    ) -> Context:
        system = self.settings.system_prompt
        persona = await self.history.persona(request.channel_id)
        if persona:
            system = f"{system}\n\nThis channel's persona, set by its moderators:\n{persona}"
        prompt_content: str | list[dict[str, Any]] = request.prompt
        if request.image_urls:
            prompt_content = [{"type": "text", "text": request.prompt}] + [
                {"type": "image_url", "image_url": {"url": url}} for url in request.image_urls
            ]
        fixed = (
            self.counter.count_message(system) + self.counter.count_message(prompt_content) + TOKENS_PER_REPLY
        )
        turns = await self.history.window(request.channel_id)
        kept = select_history(turns, max(0, history_budget - fixed), max_turns)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        for turn in kept:
            message: dict[str, Any] = {"role": turn.role, "content": turn.content}
            if turn.role == "user" and turn.author_name:
                message["name"] = speaker_name(turn.author_name)
            messages.append(message)
        messages.append({"role": "user", "content": prompt_content, "name": speaker_name(request.user_name)})
        used = fixed + sum(t.tokens + 4 for t in kept)
        estimate = fixed + sum(t.tokens + TOKENS_PER_MESSAGE for t in kept)
        return Context(messages, len(kept), used, estimate_tokens=estimate)

    async def check_input(self, request: AskRequest, context: CallContext) -> None:
        if is_blank(request.prompt):
            raise errors.InvalidInput("Your prompt is empty. Write a question after `/ask`.")
        if len(request.prompt) > MAX_PROMPT_CHARS:
            raise errors.InvalidInput(
                f"Your prompt is over {MAX_PROMPT_CHARS} characters; please shorten it."
            )
        await self.moderation.require_clean_input(
            request.moderation_text or request.prompt, context=context, what="Your prompt"
        )
        for url in request.image_urls:
            await self.moderation.require_clean_image(url, context=context, what="Your image")

    async def ask(self, request: AskRequest, *, on_text: TextCallback | None = None) -> Answer:
        """Moderate first, then stream the answer; store the exchange only when it succeeded."""
        call_context = CallContext(
            request.guild_id, request.channel_id, request.user_id, request.command, admitted=request.admitted
        )
        if self.settings.speculative_moderation:
            context, result = await self._ask_speculatively(request, call_context, on_text)
        else:
            # The context is read while the prompt is moderated: local work only, nothing is sent.
            prepared = asyncio.ensure_future(self.build_context(request, self.settings.history_token_budget))
            try:
                await self.check_input(request, call_context)
            except BaseException:
                await stop_task(prepared)
                raise
            context, result = await self._chat(request, call_context, on_text, prepared)
        if not result.text.strip():
            raise errors.IncompleteAnswer()
        await self.moderation.require_clean_output(result.text, context=call_context)
        remembered = await self._remember(request, result)
        return Answer(
            result.text,
            result.truncated,
            result.prompt_tokens,
            result.completion_tokens,
            context.history_turns,
            remembered,
        )

    async def _chat(
        self,
        request: AskRequest,
        call_context: CallContext,
        on_text: TextCallback | None,
        prepared: Awaitable[Context] | None = None,
    ) -> tuple[Context, ChatResult]:
        budget = self.settings.history_token_budget
        context = await (prepared or self.build_context(request, budget))
        try:
            return context, await self._stream(context, call_context, on_text)
        except errors.ContextTooLong:
            # The model's window is smaller than our budget assumed: keep the newer half of the history, once.
            context = await self.build_context(request, budget, max_turns=context.history_turns // 2)
            return context, await self._stream(context, call_context, on_text)

    async def _ask_speculatively(
        self, request: AskRequest, call_context: CallContext, on_text: TextCallback | None
    ) -> tuple[Context, ChatResult]:
        """Moderate the input while the chat request runs; a flagged input cancels the chat at once.

        Until the input is cleared, the first streamed text is held inside `on_text`: that keeps the
        answer off Discord and also stops the stream before its end, where the gateway meters usage,
        so a cancelled answer is never shown, stored or billed to the user's budget.
        """
        if is_blank(request.prompt) or len(request.prompt) > MAX_PROMPT_CHARS:
            await self.check_input(request, call_context)  # raises InvalidInput before any request
        cleared = asyncio.Event()

        async def held(text: str) -> None:
            await cleared.wait()
            if on_text is not None:
                await on_text(text)

        chat = asyncio.create_task(self._chat(request, call_context, held), name="speculative-chat")
        try:
            await self.check_input(request, call_context)
        except BaseException:
            await stop_task(chat)  # the moderation outcome is the one that counts
            raise
        cleared.set()
        return await chat

    async def _stream(
        self, context: Context, call_context: CallContext, on_text: TextCallback | None
    ) -> ChatResult:
        return await self.gateway.stream_chat(
            context.messages,
            context=call_context,
            on_text=on_text,
            deadline=120.0,
            prompt_tokens=context.estimate_tokens,
            # The exchange's history insert, queued after the usage row and awaited, commits it first.
            wait_for_usage_commit=False,
        )

    async def _remember(self, request: AskRequest, result: ChatResult) -> bool:
        """Store the exchange; a full or read-only disk costs the memory, not the answer."""
        question = request.prompt
        if request.image_names:
            question += "\n" + "\n".join(f"[image attached: {name}]" for name in request.image_names)
        try:
            await self.history.append(
                Exchange(
                    guild_id=request.guild_id,
                    channel_id=request.channel_id,
                    user_id=request.user_id,
                    user_name=request.user_name,
                    question=question,
                    question_tokens=self.counter.count(question),
                    bot_id=self._bot_user_id(),
                    answer=result.text,
                    answer_tokens=self.counter.count(result.text),
                )
            )
        except StoreError:
            log.warning("could not store an exchange in channel %s", request.channel_id, exc_info=True)
            return False
        return True

    async def forget_channel(self, channel_id: int) -> int:
        return await self.history.forget_channel(channel_id)

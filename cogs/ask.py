"""/ask and the @mention / reply trigger: chat with the channel's memory, streamed into Discord, with
Stop / Regenerate / Continue buttons on answers and threads started from them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import replace
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.chat.answers import AnswerRecord, Streaming
from bot.chat.conversation import Answer, AskRequest, Conversations
from bot.chat.threads import BotThread
from bot.cost.admission import Admission
from bot.discord_io.admission import admit_interaction, parent_channel_id, requester
from bot.discord_io.attachments import AskFiles, check_file_size, read_ask_files
from bot.discord_io.client import OpenAIBot, wants_messages
from bot.discord_io.failures import describe_failure, is_expected, send_failure
from bot.discord_io.locales import member_locale, message_locale, reply_locale
from bot.discord_io.replies import (
    Editable,
    ExpiryFallback,
    LazyReply,
    OriginalResponse,
    SentMessage,
    StreamingReply,
    send_followup,
)
from bot.discord_io.text import message_text, neutralize_mentions, preview, reply_to, split_message
from bot.i18n import translate
from bot.openai_api.calls import CallContext
from bot.settings import Settings
from bot.util.aio import stop_task
from bot.util.metrics import Stopwatch

log = logging.getLogger(__name__)

QUOTE_CHARS = 150  # of the question quoted above a public answer
CONTINUE_PROMPT = "Continue your previous answer exactly where it stopped, without repeating it."


def truncated_note(max_tokens: int, locale: str | None) -> str:
    return "\n-# " + translate("ask.note.truncated", locale, tokens=max_tokens)


def render_answer(answer: Answer, max_tokens: int, locale: str | None = None) -> str:
    text = answer.text
    if answer.truncated:
        text += truncated_note(max_tokens, locale)
    if not answer.remembered:
        text += "\n-# " + translate("ask.note.not_remembered", locale)
    for note in answer.notes:
        text += f"\n-# ({note.render(locale)})"
    return text


def quote_line(prompt: str, user_id: int) -> str:
    """ "> question… — @asker" above a public answer; `<@id>` pings nobody (allowed mentions are none)."""
    question = preview(" ".join(prompt.split()), QUOTE_CHARS) or "…"
    return f"> {question} — <@{user_id}>\n"


def stopped_text(header: str, shown: str, stopper_id: int, locale: str | None = None) -> str:
    body = shown if shown.strip() else "…"
    return f"{header}{body}\n-# " + translate("ask.note.stopped", locale, user=f"<@{stopper_id}>")


def can_reply(message: discord.Message) -> bool:
    """Whether the bot may post in the message's channel (threads need their own permission)."""
    guild = message.guild
    channel = message.channel
    if guild is None or not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
        return True
    permissions = channel.permissions_for(guild.me)
    if isinstance(channel, discord.Thread):
        return permissions.send_messages_in_threads
    return permissions.send_messages


def message_files(message: discord.Message) -> list[discord.Attachment]:
    """A mention's own attachments; else, when it replies to a message with files, that message's."""
    if message.attachments:
        return list(message.attachments)
    reference = message.reference
    if reference is not None and isinstance(reference.resolved, discord.Message):
        return list(reference.resolved.attachments)
    return []


def channel_guild_ids(channel: object, guild: discord.Guild | None) -> tuple[int, int]:
    return (guild.id if guild else 0), getattr(channel, "id", 0)


class Ask(commands.Cog):
    def __init__(
        self, bot: OpenAIBot, conversations: Conversations, admission: Admission, settings: Settings
    ) -> None:
        self.bot = bot
        self.conversations = conversations
        self.admission = admission
        self.settings = settings
        self.inflight = bot.services.inflight_answers
        self.records = bot.services.answer_records
        self.running = bot.services.running_answers
        self.threads = bot.services.chat_threads
        self.pacer = bot.services.stream_pacer

    @app_commands.command(name="ask", description="Ask the AI; it remembers this channel's conversation.")
    @app_commands.describe(
        prompt="Your question or request",
        file="An image to look at, or a document to read: text, code, Markdown, CSV, JSON or PDF",
        private="Only you see the answer, and only your own questions remember it",
        thread="Start a public thread (or a forum post) from the answer to keep talking there",
    )
    async def ask(
        self,
        interaction: discord.Interaction,
        prompt: str,
        file: discord.Attachment | None = None,
        private: bool = False,
        thread: bool = False,
    ) -> None:
        if file is not None:
            check_file_size(file.filename, file.size, max_bytes=self._file_max_bytes)
        if thread and private:
            raise errors.InvalidInput(message_id="ask.invalid.thread_private")
        if thread and interaction.guild is None:
            raise errors.InvalidInput(message_id="ask.invalid.thread_dm")
        # The answer's work (moderating the prompt, reading the history) starts beside the deferral instead
        # of one round trip after it; the deferral still goes on the wire first (docs/performance.md).
        deferred: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watch = Stopwatch(self.bot.services.metrics)  # /ask latency: deferral, first token, final
        answering = asyncio.create_task(
            self._answer(interaction, deferred, prompt, file, private, thread, watch)
        )
        try:
            await interaction.response.defer(ephemeral=private, thinking=True)
        except BaseException:
            deferred.cancel()  # the answer is stopped too: the error handler reports the deferral's failure
            await stop_task(answering)
            raise
        deferred.set_result(None)
        watch.stage("deferral")
        try:
            await asyncio.shield(answering)
        except asyncio.CancelledError:
            await stop_task(answering)  # the command itself was cancelled (a shutdown)
            raise

    async def _answer(
        self,
        interaction: discord.Interaction,
        deferral: asyncio.Future[None],
        prompt: str,
        file: discord.Attachment | None,
        private: bool,
        thread: bool,
        watch: Stopwatch,
    ) -> None:
        files = await self._read_files([file] if file is not None else [])
        guild_id, channel_id = channel_guild_ids(interaction.channel, interaction.guild)
        request = AskRequest(
            guild_id,
            channel_id,
            interaction.user.id,
            interaction.user.display_name,
            prompt,
            files.image_urls,
            files.image_names,
            admitted=True,
            private=private,
            documents=files.documents,
            parent_channel_id=parent_channel_id(interaction.channel),
        )
        answer = await self.stream_answer(
            interaction, request, private=private, deferral=deferral, watch=watch
        )
        if thread and answer is not None:
            await self._start_thread(interaction, request, answer)

    async def stream_answer(
        self,
        interaction: discord.Interaction[Any],
        request: AskRequest,
        *,
        private: bool,
        deferral: asyncio.Future[None] | None = None,
        watch: Stopwatch | None = None,
        quoted: str | None = None,
        rewriting: AnswerRecord | None = None,
    ) -> Answer | None:
        """Stream an answer into the interaction's response with a Stop button, then leave Regenerate (and
        Continue when it was cut at the token limit). None when Stop cut it short.

        With `rewriting` (Regenerate), the interaction's message is that answer's first part: its other
        parts are rewritten in order, the ones the new answer does not need deleted, and any more it needs
        sent as the original's were (followups of an /ask, replies to an @mention's message)."""
        # A very slow answer can outlive the 15-minute token: it then continues in the channel (or a DM).
        fallback = ExpiryFallback(interaction, private=private)
        origin = rewriting.origin if rewriting is not None else "ask"

        async def create_followup(content: str) -> Editable:
            return await send_followup(interaction, content, ephemeral=private, fallback=fallback)

        create = create_followup
        rest: list[Editable] = []
        if rewriting is not None:
            rest = self.later_parts(rewriting)
            if origin == "mention":
                question = self._question_message(rewriting)

                async def create_reply(content: str) -> Editable:
                    return SentMessage(await reply_to(question, content))

                create = create_reply
        original = OriginalResponse(interaction, fallback, deferral=deferral)
        reply = StreamingReply(
            original, create, interval=self.settings.stream_edit_interval, rest=rest, pacer=self.pacer
        )
        # Members reading the channel see what was asked and by whom; private answers need no reminder,
        # and a reply to an @mention sits under its question already.
        header = (
            "" if private or origin == "mention" else quote_line(quoted or request.prompt, request.user_id)
        )
        # Recorded while it streams: after a crash, start-up tells the asker it was cut short.
        started = self.inflight.started(interaction.application_id, interaction.token)
        try:
            return await self._deliver(
                interaction.id,
                request,
                original,
                reply,
                header,
                private,
                origin=origin,
                locale=reply_locale(interaction, private=private),
                watch=watch,
            )
        except BaseException:
            await reply.discard()
            raise
        finally:
            await self.inflight.ended(interaction.token, started)

    def later_parts(self, record: AnswerRecord) -> list[Editable]:
        """The second and later messages of a public answer, edited through the channel: that outlives the
        interaction tokens that sent them (and a restart). A private answer's are ephemeral: only the token
        that sent each may touch it, so they are left as they are and new parts are sent instead."""
        if record.private or len(record.message_ids) < 2:
            return []
        channel = self._channel(record)
        return [SentMessage(channel.get_partial_message(m)) for m in record.message_ids[1:]]

    def _channel(self, record: AnswerRecord) -> discord.PartialMessageable:
        """The answer's channel by id: its messages are edited and replied to by id, restart or not."""
        return self.bot.get_partial_messageable(record.channel_id, guild_id=record.guild_id or None)

    def _question_message(self, record: AnswerRecord) -> discord.PartialMessage:
        """The member's message an @mention answer replies to (its id is the answer's key)."""
        return self._channel(record).get_partial_message(record.answer_key)

    async def _deliver(
        self,
        key: int,
        request: AskRequest,
        first: OriginalResponse | LazyReply,
        reply: StreamingReply,
        header: str,
        private: bool,
        *,
        origin: str,
        locale: str | None,
        watch: Stopwatch | None = None,
    ) -> Answer | None:
        """Stream the answer with a Stop button on its first message, then Regenerate (and Continue when it
        was cut at the token limit), and record every message it is shown in for those buttons. None when
        Stop cut it short. A failure leaves the messages to the caller (`reply.discard`)."""
        shown = ""  # the newest text on screen: with STREAM_MODERATION=before it passed moderation

        async def on_text(text: str) -> None:
            nonlocal shown
            shown = text
            if watch is not None:
                watch.stage("first_token")
            await reply.update(header + text)

        first.set_view(answer_view(key, stop=True, locale=locale))
        chat: asyncio.Task[Answer] = asyncio.create_task(
            self.conversations.ask(request, on_text=on_text), name="ask-chat"
        )
        streaming = self.running.add(key, chat, request.user_id)
        try:
            answer = await chat
        except asyncio.CancelledError:
            if not self._stopped(streaming):
                raise
            assert streaming.stopped_by is not None
            # Keep what was shown, marked as stopped; nothing is remembered, Regenerate stays for the asker.
            record = self._record(key, request, shown, False, private, origin)
            stopped = stopped_text(header, shown, streaming.stopped_by, locale)
            await self._show_final(record, first, reply, stopped, locale)
            return None
        finally:
            self.running.remove(key)
        # A short answer may first show whole: its first text is then the final one.
        if watch is not None:
            watch.stage("first_token")
        record = self._record(key, request, answer.text, answer.truncated, private, origin)
        await self._show_final(
            record,
            first,
            reply,
            header + render_answer(answer, self.settings.max_answer_tokens, locale),
            locale,
        )
        if watch is not None:
            watch.stage("final")
        return answer

    async def _show_final(
        self,
        record: AnswerRecord,
        first: OriginalResponse | LazyReply,
        reply: StreamingReply,
        text: str,
        locale: str | None,
    ) -> None:
        """Store the answer, then show it with Regenerate (and Continue): a button must never be pressed
        before its answer can be found. The messages it spans are stored again if the last edit changed
        them (a part the stream had not shown yet, or one a rewrite no longer needs)."""
        await reply.settle()  # no edit of the streamed text while the record is written
        known = reply.message_ids()
        await self._save(replace(record, message_ids=tuple(known)))
        first.set_view(answer_view(record.answer_key, stop=False, more=record.truncated, locale=locale))
        await reply.finish(text)
        await first.show_view()
        if reply.message_ids() != known:
            await self._save(replace(record, message_ids=tuple(reply.message_ids())))

    @staticmethod
    def _stopped(streaming: Streaming) -> bool:
        """Stop cancelled the chat, not a shutdown cancelling this command."""
        task = asyncio.current_task()
        return streaming.stopped_by is not None and (task is None or not task.cancelling())

    @staticmethod
    def _record(
        key: int, request: AskRequest, text: str, truncated: bool, private: bool, origin: str
    ) -> AnswerRecord:
        return AnswerRecord(
            key,
            request.guild_id,
            request.channel_id,
            request.user_id,
            request.user_name,
            request.prompt,
            text,
            truncated,
            private,
            origin=origin,
        )

    async def _save(self, record: AnswerRecord) -> None:
        key = record.answer_key
        try:
            await self.records.save(record)
        except Exception:
            # The answer stands; only its buttons will say they no longer know it.
            log.warning("could not store answer %s for its buttons", key, exc_info=True)

    async def _start_thread(
        self, interaction: discord.Interaction, request: AskRequest, answer: Answer
    ) -> None:
        """A public thread from the answer (a post in a forum), named by the model, with its own memory."""
        channel = interaction.channel
        if isinstance(channel, discord.Thread):
            await interaction.followup.send(
                translate("ask.thread.already", member_locale(interaction)), ephemeral=True
            )
            return
        context = CallContext(request.guild_id, request.channel_id, request.user_id, "ask", admitted=True)
        title = await self.bot.services.thread_titles.title(request.prompt, context)
        every_message = await self.threads.every_message(request.guild_id)
        model = answer.model or self.settings.chat_model  # the model that answered (/model may choose it)
        intro = translate(
            "ask.thread.intro.every_message" if every_message else "ask.thread.intro.mention",
            reply_locale(interaction, private=False),
            user=f"<@{request.user_id}>",
            model=model,
        )
        try:
            if isinstance(channel, discord.ForumChannel):
                body = f"{intro}\n{quote_line(request.prompt, request.user_id)}{answer.text}"
                created = await channel.create_thread(name=title, content=preview(body, 2000))
                thread = created.thread
            else:
                message = await interaction.original_response()
                thread = await message.create_thread(name=title)
                await thread.send(intro)
        except discord.Forbidden:
            await interaction.followup.send(
                translate("ask.thread.forbidden", member_locale(interaction)), ephemeral=True
            )
            return
        await self.threads.record(
            BotThread(thread.id, request.guild_id, request.channel_id, request.user_id, model)
        )
        # The thread's memory starts with the exchange that opened it.
        await self.conversations.remember_in(thread.id, request, answer.text)
        if isinstance(channel, discord.ForumChannel):
            await interaction.followup.send(
                translate("ask.thread.post_started", member_locale(interaction), post=thread.mention),
                ephemeral=True,
            )

    @commands.Cog.listener()
    # A mention, a reply, or a message in a thread (which may be a bot thread): see `_addresses_bot`.
    @wants_messages(
        lambda cog, message: (
            not message.author.bot
            and (
                bool(message.mentions)
                or message.reference is not None
                or isinstance(message.channel, discord.Thread)
            )
        )
    )
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.bot.user is None:
            return
        if not self._addresses_bot(message) and not await self._thread_turn(message):
            return
        if message.guild is None and not self.settings.allow_dms:
            return
        if message.guild is not None and not can_reply(message):
            # Nobody would see the answer: don't generate, bill or remember it.
            log.info("cannot reply in channel %s: missing Send Messages", message.channel.id)
            return
        if not self.bot.in_flight.accepting:
            return  # shutting down
        prompt = re.sub(rf"<@!?{self.bot.user.id}>", "", message.content).strip()
        if not await self._mention_admitted(message, prompt):
            return
        self.bot.in_flight.track(lambda: self._tell(message, errors.ShuttingDown()))
        guild_id, channel_id = channel_guild_ids(message.channel, message.guild)
        request = AskRequest(
            guild_id,
            channel_id,
            message.author.id,
            message.author.display_name,
            prompt,
            command="mention",
            admitted=True,
            moderation_text=message_text(message),
            parent_channel_id=parent_channel_id(message.channel),
        )

        async def send_first(content: str, view: discord.ui.View | None) -> discord.Message:
            if view is None:
                return await reply_to(message, content)
            return await reply_to(message, content, view=view)

        async def create_reply(content: str) -> SentMessage:
            return SentMessage(await reply_to(message, content))

        first = LazyReply(send_first)
        reply = StreamingReply(
            first, create_reply, interval=self.settings.stream_edit_interval, pacer=self.pacer
        )
        try:
            async with message.channel.typing():
                files = await self._read_files(message_files(message))
                request = replace(
                    request,
                    image_urls=files.image_urls,
                    image_names=files.image_names,
                    documents=files.documents,
                )
                # The member's message is the answer's key: its buttons find the answer by it.
                await self._deliver(
                    message.id,
                    request,
                    first,
                    reply,
                    "",
                    False,
                    origin="mention",
                    locale=message_locale(self.bot, message),
                )
        except asyncio.CancelledError:
            # Cut short by the shutdown: no half answer stays behind (the drain tells the user why).
            await reply.discard(keep_first=False)
            raise
        except Exception as exc:
            await reply.discard(keep_first=False)
            if not isinstance(exc, errors.BotError | discord.HTTPException):
                log.exception("mention reply failed (guild %s, channel %s)", guild_id, channel_id)
            with contextlib.suppress(discord.HTTPException):
                await reply_to(message, describe_failure(exc, message_locale(self.bot, message)))

    async def _mention_admitted(self, message: discord.Message, prompt: str) -> bool:
        """A mention is /ask by other means: the same admission (allowlist, /limits, rate, budgets)."""
        try:
            await self.admission.admit(
                "ask",
                requester(
                    message.guild, message.author, message.channel.id, parent_channel_id(message.channel)
                ),
                {"prompt": prompt},
            )
        except errors.GuildNotAllowed:
            return False  # a server the bot does not serve is not answered at all, as before
        except errors.BotError as refusal:
            await self._tell(message, refusal)
            return False
        return True

    @property
    def _file_max_bytes(self) -> int:
        return int(self.settings.file_max_mb * 1024 * 1024)

    async def _read_files(self, attachments: list[discord.Attachment]) -> AskFiles:
        return await read_ask_files(
            self.bot.attachments,
            attachments,
            max_bytes=self._file_max_bytes,
            max_pages=self.settings.file_max_pages,
        )

    async def _tell(self, message: discord.Message, error: BaseException) -> None:
        with contextlib.suppress(discord.HTTPException):
            await reply_to(message, describe_failure(error, message_locale(self.bot, message)))

    async def _thread_turn(self, message: discord.Message) -> bool:
        """A member's message in a thread /ask started is a turn without a mention, unless the server
        turned that off; a thread the bot did not start still needs a mention or a reply."""
        if message.guild is None or not isinstance(message.channel, discord.Thread):
            return False
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return False
        if not message.content.strip():
            return False  # a sticker or a bare attachment: nothing was asked
        return await self.threads.is_bot_thread(message.channel.id) and await self.threads.every_message(
            message.guild.id
        )

    def _addresses_bot(self, message: discord.Message) -> bool:
        assert self.bot.user is not None
        if self.bot.user in message.mentions and not message.mention_everyone:
            return True
        reference = message.reference
        if reference is not None and isinstance(reference.resolved, discord.Message):
            return reference.resolved.author.id == self.bot.user.id
        return False


def answer_view(key: int, *, stop: bool, more: bool = False, locale: str | None = None) -> discord.ui.View:
    """Stop while the answer streams; Regenerate after (and Continue when it was cut at the token limit)."""
    view = discord.ui.View(timeout=None)
    kinds = ["stop"] if stop else ["regen", *(["more"] if more else [])]
    for kind in kinds:
        view.add_item(AnswerButton(kind, key, locale))
    return view


# Each button's catalog label, emoji and style.
BUTTONS = {
    "stop": ("ask.button.stop", "⏹️", discord.ButtonStyle.danger),
    "regen": ("ask.button.regenerate", "🔁", discord.ButtonStyle.secondary),
    "more": ("ask.button.continue", "⏩", discord.ButtonStyle.primary),
}


class AnswerButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"ask:(?P<kind>stop|regen|more):(?P<key>\d+)"
):
    """An answer's buttons. Their custom id carries the answer's key; what Regenerate and Continue need is
    read from the database, so they work after a restart. Stop only cancels (it never spends)."""

    def __init__(self, kind: str, key: int, locale: str | None = None) -> None:
        label_id, emoji, style = BUTTONS[kind]
        label = translate(label_id, locale)
        super().__init__(
            discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=f"ask:{kind}:{key}")
        )
        self.kind = kind
        self.key = key

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> AnswerButton:
        return cls(match["kind"], int(match["key"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: OpenAIBot = interaction.client
        cog = bot.get_cog("Ask")
        try:
            if not isinstance(cog, Ask):
                raise errors.BotError("answers are not available right now")
            if self.kind == "stop":
                await self.stop(cog, interaction)
            else:
                await self.again(cog, interaction)
        except Exception as exc:
            if not is_expected(exc):
                log.exception("an answer button failed (%s)", self.kind)
            await send_failure(interaction, exc)

    async def stop(self, cog: Ask, interaction: discord.Interaction[Any]) -> None:
        streaming = cog.running.get(self.key)
        if streaming is None or streaming.task.done():
            await interaction.response.send_message(
                translate("ask.stop.finished", member_locale(interaction)), ephemeral=True
            )
            return
        if interaction.user.id != streaming.asker_id and not interaction.permissions.manage_messages:
            await interaction.response.send_message(
                translate("ask.stop.not_yours", member_locale(interaction)), ephemeral=True
            )
            return
        await interaction.response.defer()  # the answer's own edit shows it stopped
        cog.running.stop(self.key, interaction.user.id)

    async def again(self, cog: Ask, interaction: discord.Interaction[Any]) -> None:
        record = await cog.records.get(self.key)
        if record is None:
            raise errors.InvalidInput(message_id="ask.answer_forgotten")
        if interaction.user.id != record.user_id:
            refusal = "ask.regenerate.not_yours" if self.kind == "regen" else "ask.continue.not_yours"
            await interaction.response.send_message(
                translate(refusal, member_locale(interaction)), ephemeral=True
            )
            return
        # Like a slash command (GuardedTree): a shutdown lets it finish, or tells its user why it stopped.
        in_flight = cog.bot.in_flight
        if not in_flight.accepting:
            raise errors.ShuttingDown()
        in_flight.track(lambda: send_failure(interaction, errors.ShuttingDown()))
        # The same admission as /ask itself: allowlist, /limits rules and roles, rate and budgets.
        prompt = record.prompt if self.kind == "regen" else CONTINUE_PROMPT
        await admit_interaction(cog.admission, interaction, "ask", {"prompt": prompt})
        request = AskRequest(
            record.guild_id,
            record.channel_id,
            record.user_id,
            interaction.user.display_name,
            prompt,
            command="mention" if record.origin == "mention" else "ask",
            admitted=True,
            replaces_answer=record.answer if self.kind == "regen" else None,
            parent_channel_id=parent_channel_id(interaction.channel),
        )
        if self.kind == "regen":
            await interaction.response.defer()  # the answer is replaced in place
            try:
                await cog.stream_answer(interaction, request, private=record.private, rewriting=record)
            except Exception as exc:
                # The failure handler would delete the interaction's message: here that is the old answer.
                await self.restore(cog, interaction, record)
                if not is_expected(exc):
                    log.exception("regenerating an answer failed")
                with contextlib.suppress(discord.HTTPException):
                    await interaction.followup.send(
                        describe_failure(exc, member_locale(interaction)), ephemeral=True
                    )
        else:
            await interaction.response.defer(ephemeral=record.private, thinking=True)
            continued = translate(
                "ask.continued", reply_locale(interaction, private=record.private), prompt=record.prompt
            )
            await cog.stream_answer(interaction, request, private=record.private, quoted=continued)

    async def restore(self, cog: Ask, interaction: discord.Interaction[Any], record: AnswerRecord) -> None:
        """Put back the answer a failed Regenerate had started to overwrite, every part, with its buttons."""
        locale = reply_locale(interaction, private=record.private)
        text = record.answer
        if record.truncated:
            text += truncated_note(cog.settings.max_answer_tokens, locale)
        header = (
            "" if record.private or record.origin == "mention" else quote_line(record.prompt, record.user_id)
        )
        pieces = split_message(neutralize_mentions(header + text)) or ["…"]
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(
                content=pieces[0],
                view=answer_view(record.answer_key, stop=False, more=record.truncated, locale=locale),
            )
        for part, piece in zip(cog.later_parts(record), pieces[1:], strict=False):
            with contextlib.suppress(discord.HTTPException):
                await part.edit(piece)


async def setup(bot: OpenAIBot) -> None:
    services = bot.services
    bot.add_dynamic_items(AnswerButton)
    await bot.add_cog(Ask(bot, services.conversations, services.admission, services.settings))

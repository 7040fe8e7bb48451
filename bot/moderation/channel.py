"""Channel messages through moderation: policy, verdict, action record, strikes, and the outage queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from bot import errors
from bot.moderation.gate import ModerationGate, Verdict, merge_results
from bot.moderation.policy import Decision, Policy, PolicyRepo, decide
from bot.moderation.queue import MessageSubject, OutageQueue, QueuedMessage
from bot.moderation.records import ActionLog
from bot.moderation.strikes import Strikes
from bot.moderation.watermarks import Watermarks
from bot.openai_api.calls import CallContext, ModerationResult
from bot.storage.versions import CacheVersions

log = logging.getLogger(__name__)

# Failures that mean "the endpoint cannot judge right now": the message waits in the queue.
OUTAGE_ERRORS = (
    errors.ModerationUnavailable,
    errors.QuotaExhausted,
    errors.RateLimited,
    errors.UpstreamUnavailable,
    errors.UpstreamTimeout,
    errors.InvalidApiKey,
    errors.UnknownModel,
)
MAX_IMAGES_PER_MESSAGE = 10


OutcomeStatus = Literal["skipped", "clean", "queued", "acted"]
# Why the endpoint cannot judge: out of credit (insufficient_quota), or failing for any other reason.
OutageReason = Literal["outage", "quota"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one message."""

    status: OutcomeStatus
    policy: Policy
    reason: str = ""  # skipped: why; queued: the OutageReason
    decision: Decision | None = None
    action_id: int = 0
    strikes: int = 0
    timeout_seconds: float = 0.0
    notify: bool = False  # first outage of this kind for this server: tell its mod-log once


@dataclass(frozen=True)
class StartedCheck:
    """A live message's check under way (`ChannelModerator.start`): the policy it was screened with and the
    moderation request's future."""

    policy: Policy
    check: asyncio.Future[ModerationResult]


def outage_reason(error: BaseException) -> OutageReason:
    return "quota" if isinstance(error, errors.QuotaExhausted) else "outage"


class ChannelModerator:
    """Plain data in (`MessageSubject`), plain data out (`Outcome`); Discord effects are the cog's job."""

    def __init__(
        self,
        gate: ModerationGate,
        policies: PolicyRepo,
        queue: OutageQueue,
        actions: ActionLog,
        strikes: Strikes,
        watermarks: Watermarks,
        *,
        moderate_bots: bool = False,
        versions: CacheVersions | None = None,
    ) -> None:
        self.gate = gate
        self.policies = policies
        self.queue = queue
        self.actions = actions
        self.strikes = strikes
        self.watermarks = watermarks
        self.moderate_bots = moderate_bots
        self.versions = versions
        self.outage: OutageReason | None = None  # while the endpoint fails
        self._notified: set[tuple[int, str]] = set()

    @property
    def data_owners(self) -> tuple[PolicyRepo, OutageQueue, ActionLog, Strikes, Watermarks]:
        """The repositories that answer to the privacy service for moderation's tables."""
        return self.policies, self.queue, self.actions, self.strikes, self.watermarks

    def needs_roles(self, guild_id: int) -> bool:
        """Whether a message's author's roles can matter to this server's moderation: its policy exempts some
        roles, or its policy is not in memory yet. Listing a member's roles is most of turning a message into
        a subject (discord.py sorts them by position), and most servers exempt none."""
        policy = self.policies.cached(guild_id)
        return policy is None or bool(policy.exempt_roles)

    async def screen(self, subject: MessageSubject) -> tuple[Policy, str]:
        """The server's policy and why the message is skipped ("" when it is to be moderated)."""
        policy = await self.policies.get(subject.guild_id)
        return policy, self.skip_reason(policy, subject)

    def skip_reason(self, policy: Policy, subject: MessageSubject) -> str:
        if not policy.enabled:
            return "moderation off"
        if subject.author_is_bot and not self.moderate_bots:
            return "bot or webhook"
        if policy.is_exempt(subject.channel_ids, subject.role_ids):
            return "exempt"
        if subject.is_empty:
            return "nothing to moderate"
        return ""

    async def moderate(self, subject: MessageSubject) -> Outcome:
        """Moderate a live message; when the endpoint fails it is queued durably instead."""
        policy, skip = await self.screen(subject)
        if skip:
            return Outcome("skipped", policy, skip)
        if self.outage is not None:
            # Do not hammer a failing endpoint: the drainer probes it and catches up.
            await self.queue.put(subject)
            return Outcome("queued", policy, self.outage)
        try:
            verdict = await self.evaluate(subject)
        except OUTAGE_ERRORS as exc:
            return await self._queue_for_outage(subject, policy, exc)
        self._recovered()
        return await self.judge(subject, policy, verdict)

    def start(self, subject: MessageSubject) -> Outcome | StartedCheck | None:
        """`moderate`'s start without awaiting, for the common live message: its server's policy in memory, no
        outage, text alone that is one moderation input. The outcome when there is nothing to check (skipped),
        else the check under way; None when only `moderate` can take the message.

        A channel message is the busiest path of a busy process: a callback on the check's future, instead of
        a task awaiting it through the chain of coroutines, saved about 3% of its CPU (docs/performance.md)."""
        policy = self.policies.cached(subject.guild_id)
        if policy is None or self.outage is not None or subject.image_urls:
            return None
        skip = self.skip_reason(policy, subject)
        if skip:
            return Outcome("skipped", policy, skip)
        context = CallContext(subject.guild_id, subject.channel_id, subject.author_id, "channel-moderation")
        check = self.gate.text_check_soon(subject.text, context=context)
        return None if check is None else StartedCheck(policy, check)

    def clean_outcome(self, started: StartedCheck) -> Outcome | None:
        """A finished check's outcome when it is clean, the common case, which needs no await; None when the
        check failed or the policy acts on it: `settle` it."""
        if started.check.cancelled() or started.check.exception() is not None:
            return None
        verdict = self.gate.verdict_of(started.check)
        if decide(started.policy, verdict.categories, verdict.scores) is not None:
            return None
        self._recovered()
        return Outcome("clean", started.policy)

    async def settle(self, subject: MessageSubject, started: StartedCheck) -> Outcome:
        """The outcome of a finished check, as `moderate` reaches it: acted on and recorded, or queued when
        the endpoint failed."""
        try:
            verdict = self.gate.verdict_of(started.check)
        except OUTAGE_ERRORS as exc:
            return await self._queue_for_outage(subject, started.policy, exc)
        self._recovered()
        return await self.judge(subject, started.policy, verdict)

    async def _queue_for_outage(self, subject: MessageSubject, policy: Policy, exc: Exception) -> Outcome:
        reason = outage_reason(exc)
        self.outage = reason
        await self.queue.put(subject)
        log.warning(
            "moderation endpoint failing (%s): message queued in server %s",
            type(exc).__name__,
            subject.guild_id,
        )
        notify = (subject.guild_id, reason) not in self._notified
        self._notified.add((subject.guild_id, reason))
        return Outcome("queued", policy, reason, notify=notify)

    async def drain(self, limit: int = 200) -> tuple[list[tuple[MessageSubject, Outcome]], bool]:
        """Moderate queued messages, oldest first, concurrently (the batcher coalesces them).
        Returns the outcomes of those done and whether the endpoint still fails.

        The batch is claimed first, so another process draining at the same time takes other messages."""
        if self.versions is not None:
            await self.versions.refresh()  # policies changed by the processes that own their servers
        queued = await self.queue.claim(limit)
        if not queued:
            return [], False
        settled: set[int] = set()
        try:
            return await self._drain_claimed(queued, settled)
        finally:
            unsettled = [item.id for item in queued if item.id not in settled]
            if unsettled:
                await self.queue.unclaim(unsettled)

    async def _drain_claimed(
        self, queued: list[QueuedMessage], settled: set[int]
    ) -> tuple[list[tuple[MessageSubject, Outcome]], bool]:
        async def one(subject: MessageSubject) -> Verdict | BaseException:
            try:
                return await self.evaluate(subject)
            except OUTAGE_ERRORS as exc:
                return exc

        verdicts = await asyncio.gather(*(one(item.subject) for item in queued))
        done: list[tuple[MessageSubject, Outcome]] = []
        finished: list[int] = []
        failed: list[int] = []
        failure: BaseException | None = None
        for item, verdict in zip(queued, verdicts, strict=True):
            if isinstance(verdict, BaseException):
                failed.append(item.id)
                failure = verdict
                continue
            subject = replace(item.subject, source="queue")
            policy, skip = await self.screen(subject)
            outcome = Outcome("skipped", policy, skip) if skip else await self.judge(subject, policy, verdict)
            done.append((subject, outcome))
            finished.append(item.id)
        await self.queue.remove(finished)
        settled.update(finished)
        await self.queue.bump_attempts(failed)
        settled.update(failed)
        if failure is not None:
            self.outage = outage_reason(failure)
            return done, True
        self._recovered()
        return done, False

    def probe_live(self) -> None:
        """Another process drains the queue: end this one's outage so its next live message tries the
        endpoint again (and is queued again if it still fails), instead of queueing every message for ever.
        The servers already told of the outage are not told again."""
        self.outage = None

    async def unseen(self, subjects: Sequence[MessageSubject]) -> list[MessageSubject]:
        """Of messages read back from history, claim and return those never handled: not at or below their
        channel's watermark, not being moderated now, with no action on record and not waiting in the
        outage queue. The caller moderates them and `finish`es each on its watermarks."""
        fresh = [s for s in subjects if not self.watermarks.handled(s.channel_id, s.message_id)]
        ids = [s.message_id for s in fresh]
        known = set(await self.actions.recorded(ids)) | await self.queue.holding(ids) if ids else set()
        claimed: list[MessageSubject] = []
        for subject in fresh:
            if not self.watermarks.claim(subject.guild_id, subject.channel_id, subject.message_id):
                continue
            if subject.message_id in known:
                # Acted on (or queued) before a crash that came ahead of the watermark's flush.
                self.watermarks.finish(subject.channel_id, subject.message_id)
                continue
            claimed.append(subject)
        return claimed

    async def stored_verdicts(self, channel_id: int, message_ids: Sequence[int]) -> dict[int, bool]:
        """Verdicts already paid for, by message id (True: flagged): messages this bot moderated live,
        i.e. handled per the channel's watermark; flagged exactly when an action is on record."""
        handled = [m for m in message_ids if self.watermarks.handled(channel_id, m)]
        if not handled:
            return {}
        flagged = await self.actions.recorded(handled)
        return {m: flagged.get(m, False) for m in handled}

    async def evaluate(self, subject: MessageSubject) -> Verdict:
        """The text whole (chunked) and each image in its own request, merged into one verdict."""
        context = CallContext(subject.guild_id, subject.channel_id, subject.author_id, "channel-moderation")
        if not subject.image_urls:
            # Most messages are text alone: the text's verdict is the message's (a blank text's is clean).
            return await self.gate.check_text(subject.text, context=context)
        verdicts = [await self.gate.check_text(subject.text, context=context)] if subject.text.strip() else []
        images = list(dict.fromkeys(subject.image_urls))[:MAX_IMAGES_PER_MESSAGE]
        results = await asyncio.gather(
            *(self.gate.check_image(url, context=context) for url in images), return_exceptions=True
        )
        for result in results:
            if isinstance(result, errors.BadRequest | errors.ContentRefused):
                # The endpoint could not fetch or read this image: judging the rest beats dropping it all.
                log.info("an image could not be moderated in server %s: %s", subject.guild_id, result)
                continue
            if isinstance(result, BaseException):
                raise result
            verdicts.append(result)
        results_merged = [
            ModerationResult(v.flagged, {c: True for c in v.categories}, v.scores) for v in verdicts
        ]
        return merge_results(results_merged)

    async def judge(self, subject: MessageSubject, policy: Policy, verdict: Verdict) -> Outcome:
        decision = decide(policy, verdict.categories, verdict.scores)
        if decision is None:
            return Outcome("clean", policy)
        action_id, repeat = await self.actions.record(
            subject.guild_id,
            subject.channel_id,
            subject.message_id,
            subject.author_id,
            subject.source,
            decision,
        )
        strikes = 0
        timeout = 0.0
        if decision.action != "log" and not repeat:
            strikes = await self.strikes.add(
                subject.guild_id, subject.author_id, action_id, window=policy.strike_window
            )
            if 0 < policy.strikes_to_timeout <= strikes:
                timeout = policy.timeout_seconds
        return Outcome(
            "acted", policy, decision=decision, action_id=action_id, strikes=strikes, timeout_seconds=timeout
        )

    async def test_text(self, guild_id: int, text: str, *, user_id: int) -> tuple[Verdict, Decision | None]:
        """What `/moderation test` shows: the scores and what the policy would do. Nothing is recorded."""
        policy = await self.policies.get(guild_id)
        verdict = await self.gate.check_text(text, context=CallContext(guild_id, None, user_id, "moderation"))
        return verdict, decide(policy, verdict.categories, verdict.scores)

    def _recovered(self) -> None:
        if self.outage is not None:
            log.info("moderation endpoint recovered")
        self.outage = None
        self._notified.clear()

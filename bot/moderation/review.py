"""Moderators' review of a recorded action: a false positive undoes its strike; a timeout is recorded."""

from __future__ import annotations

from dataclasses import dataclass

from bot import errors
from bot.moderation.policy import PolicyRepo
from bot.moderation.records import ActionLog, ActionRecord
from bot.moderation.strikes import Strikes


@dataclass(frozen=True)
class FalsePositive:
    """What marking an action as a false positive did."""

    marked: bool  # False: it already was
    strikes_cleared: int


@dataclass(frozen=True)
class TimeoutPlan:
    """Whom a moderator's "Timeout author" times out, and for how long (the server's policy)."""

    record: ActionRecord
    seconds: float


class ModerationReview:
    """The mod-log buttons' operations, as plain data: the cog checks permissions and applies effects."""

    def __init__(self, actions: ActionLog, strikes: Strikes, policies: PolicyRepo) -> None:
        self.actions = actions
        self.strikes = strikes
        self.policies = policies

    async def _record(self, guild_id: int | None, action_id: int) -> ActionRecord:
        record = await self.actions.get(action_id)
        # An id from another server is treated as missing: a button never reaches across servers.
        if record is None or record.guild_id != guild_id:
            raise errors.InvalidInput(message_id="input.moderation.entry_gone")
        return record

    async def false_positive(self, guild_id: int | None, action_id: int, reviewer_id: int) -> FalsePositive:
        """Mark the action reviewed as wrong; the strike it gave no longer counts towards a timeout."""
        await self._record(guild_id, action_id)
        marked = await self.actions.mark_false_positive(action_id, reviewer_id)
        cleared = await self.strikes.clear_for_action(action_id) if marked else 0
        return FalsePositive(marked, cleared)

    async def plan_timeout(self, guild_id: int | None, action_id: int) -> TimeoutPlan:
        record = await self._record(guild_id, action_id)
        policy = await self.policies.get(record.guild_id)
        return TimeoutPlan(record, policy.timeout_seconds)

    async def timed_out(self, plan: TimeoutPlan) -> None:
        await self.actions.add_timeout(plan.record.id, plan.seconds)

"""Two service stacks on one database, as two bot processes have: changes in one reach the other's caches,
and the retention purge runs in one of them only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.chat.conversation import AskRequest
from bot.chat.history import Exchange
from bot.privacy.registry import Privacy, PrivacyReport
from bot.services import Services, build_services
from testkit import FakeOpenAI
from testkit.driver import chat_bodies
from tests.support.server import make_settings

GUILD, CHANNEL, MEMBER, OTHER = 41 << 22, 42 << 22, 43 << 22, 44 << 22


class NoModlog:
    async def post_text(self, guild_id: int, channel_id: int, text: str) -> bool:
        return True

    async def dm_owner(self, guild_id: int, text: str) -> bool:
        return True


@pytest.fixture
async def stacks(tmp_path: Path, fake_openai: FakeOpenAI) -> AsyncIterator[tuple[Services, Services]]:
    """Everything build_services makes, twice, on one database (two pools or two SQLite connections)."""
    settings = make_settings(tmp_path, fake_openai, retention_days=7)
    first = await build_services(settings, modlog_sink=NoModlog(), bot_user_id=lambda: 1)
    second = await build_services(settings, modlog_sink=NoModlog(), bot_user_id=lambda: 1)
    yield first, second
    await first.close()
    await second.close()


def question(prompt: str, user_id: int = OTHER) -> AskRequest:
    return AskRequest(GUILD, CHANNEL, user_id, "someone", prompt)


async def test_forget_me_in_one_process_reaches_the_next_context_built_in_another(
    stacks: tuple[Services, Services], fake_openai: FakeOpenAI
) -> None:
    this, other = stacks
    await this.history.append(Exchange(GUILD, CHANNEL, MEMBER, "ann", "my secret plan", 5, 1, "noted", 2))
    await other.conversations.ask(question("what was the plan?"))
    assert "my secret plan" in str(chat_bodies(fake_openai)[-1]["messages"]), "the other process cached it"

    report = await this.privacy.forget_user(None, MEMBER)
    assert report.rows("turns") == 2
    await other.conversations.ask(question("and now?"))
    sent = str(chat_bodies(fake_openai)[-1]["messages"])
    assert "my secret plan" not in sent and "noted" not in sent
    assert "what was the plan?" in sent, "the rest of the window is still there"


async def test_a_persona_and_a_model_changed_in_one_process_apply_in_the_other(
    stacks: tuple[Services, Services], fake_openai: FakeOpenAI
) -> None:
    this, other = stacks
    await other.conversations.ask(question("hello"))
    assert "pirate" not in str(chat_bodies(fake_openai)[-1]["messages"])
    await this.personas.set(GUILD, CHANNEL, "Talk like a pirate.", MEMBER)
    model = this.chat_models.allowed[-1]
    await this.chat_models.set(GUILD, 0, model, MEMBER)
    await other.conversations.ask(question("hello again"))
    body = chat_bodies(fake_openai)[-1]
    assert "Talk like a pirate." in str(body["messages"])
    assert body["model"] == model
    assert await this.personas.clear(CHANNEL)
    await other.conversations.ask(question("and now?"))
    assert "pirate" not in str(chat_bodies(fake_openai)[-1]["messages"])


async def test_a_policy_changed_in_one_process_is_what_the_other_drains_with(
    stacks: tuple[Services, Services],
) -> None:
    this, other = stacks
    assert (await other.channel_moderation.policies.get(GUILD)).default_action == "warn"
    await this.channel_moderation.policies.update(GUILD, default_action="log")
    await other.channel_moderation.drain()  # refreshes before it judges anything
    assert (await other.channel_moderation.policies.get(GUILD)).default_action == "log"
    # Two changes at once from two processes both land (each reads the stored policy under its lock).
    await asyncio.gather(
        this.channel_moderation.policies.update(GUILD, strikes_to_timeout=3),
        other.channel_moderation.policies.update(GUILD, fail_open=True),
    )
    await other.versions.refresh()
    stored = await other.channel_moderation.policies.get(GUILD)
    assert (stored.default_action, stored.strikes_to_timeout, stored.fail_open) == ("log", 3, True)


async def test_the_retention_purge_runs_in_one_process_of_two(stacks: tuple[Services, Services]) -> None:
    this, other = stacks
    await this.store.execute(
        "INSERT INTO turns (guild_id, channel_id, author_id, role, content, tokens, created_at) "
        "VALUES (?, ?, ?, 'user', 'ancient', 1, ?)",
        (GUILD, CHANNEL, MEMBER, time.time() - 30 * 86400),
    )
    purges: list[str] = []

    def purge(name: str, privacy: Privacy) -> Callable[[], Awaitable[PrivacyReport]]:
        async def run() -> PrivacyReport:
            purges.append(name)
            return await privacy.purge_expired()

        return run

    jobs = [
        asyncio.create_task(
            stack.leases.keeper("retention-purge", 3.0).run_every(3600, purge(name, stack.privacy))
        )
        for name, stack in (("this", this), ("other", other))
    ]
    await asyncio.sleep(1.0)
    for job in jobs:
        job.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
    assert len(purges) == 1, purges
    row = await other.store.fetchone("SELECT COUNT(*) FROM turns")
    assert row is not None and row[0] == 0


async def test_an_answer_is_an_orphan_only_once_its_process_is_gone(
    stacks: tuple[Services, Services],
) -> None:
    this, other = stacks
    await this.inflight_answers.started(7, "token-of-a-live-answer")
    assert await other.inflight_answers.take_orphans() == [], "its process is alive: not interrupted"
    # The process dies: its liveness lease is no longer renewed and lapses.
    await other.store.execute(
        "UPDATE leases SET expires_at = 0 WHERE name = ?", (this.leases.liveness_lease,)
    )
    orphans = await other.inflight_answers.take_orphans()
    assert [orphan.token for orphan in orphans] == ["token-of-a-live-answer"]
    assert await this.inflight_answers.take_orphans() == [], "taken once"


async def test_a_language_forced_in_one_process_is_what_the_other_posts_in(
    stacks: tuple[Services, Services],
) -> None:
    this, other = stacks
    await this.server_languages.load()
    await other.server_languages.load()
    await this.server_languages.set(GUILD, "ko", MEMBER)
    assert other.server_languages.forced(GUILD) is None  # nothing has told it yet
    await other.versions.refresh()  # what every /ask and drain does first
    for _ in range(100):
        if other.server_languages.forced(GUILD) == "ko":
            break
        await asyncio.sleep(0.01)
    assert other.server_languages.forced(GUILD) == "ko"
    await this.server_languages.set(GUILD, None, MEMBER)
    await other.versions.refresh()
    for _ in range(100):
        if other.server_languages.forced(GUILD) is None:
            break
        await asyncio.sleep(0.01)
    assert other.server_languages.forced(GUILD) is None


async def test_limits_changed_in_one_process_apply_to_the_others_next_request(
    stacks: tuple[Services, Services],
) -> None:
    from bot import errors
    from bot.cost.admission import Requester

    this, other = stacks
    asker = Requester(GUILD, OTHER, channel_id=CHANNEL)
    await other.admission.admit("ask", asker, {"prompt": "hi"}, spend=False)  # fills its caches
    await this.limits.store.set_enabled(GUILD, "ask", False, MEMBER)
    with pytest.raises(errors.CommandDisabled):
        await other.admission.admit("ask", asker, {"prompt": "hi"}, spend=False)
    await this.limits.store.set_enabled(GUILD, "ask", True, MEMBER)
    await this.limits.store.set_budgets(GUILD, user_daily=0.000001, server_monthly=None, by=MEMBER)
    with pytest.raises(errors.BudgetExceeded):
        await other.admission.admit("ask", asker, {"prompt": "a question that costs something"})

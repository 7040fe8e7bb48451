"""The composition root: `build_services` makes every service once, in dependency order, and nothing else does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.chat.answers import AnswerRecords, RunningAnswers
from bot.chat.conversation import Conversations
from bot.chat.history import History
from bot.chat.inflight import InflightAnswers
from bot.chat.models import ChatModels
from bot.chat.personas import Personas
from bot.chat.threads import ChatThreads, ThreadTitles
from bot.cost.admission import Admission
from bot.cost.alerts import BudgetAlerts
from bot.cost.allowance import Allowance, CostClaims, LocalAllowance, SharedAllowance, process_name
from bot.cost.breaker import Notifier, QuotaBreaker, QuotaNotices, SharedQuotaBreaker
from bot.cost.ledger import UsageLedger
from bot.cost.limits import Limits
from bot.cost.pricing import PriceTable, load_prices
from bot.cost.rules import LimitsStore
from bot.guilds import ServerLanguages
from bot.i18n import Message
from bot.media.imaging import ImageMaker
from bot.media.speech import Speaker
from bot.media.transcription import AutoTranscribeChannels, Transcriber
from bot.moderation.batcher import ModerationBatcher
from bot.moderation.channel import ChannelModerator
from bot.moderation.gate import ModerationGate
from bot.moderation.modlog import ModerationLog, ModlogSink
from bot.moderation.policy import PolicyRepo
from bot.moderation.queue import OutageQueue
from bot.moderation.records import ActionLog
from bot.moderation.review import ModerationReview
from bot.moderation.strikes import Strikes
from bot.moderation.watermarks import Watermarks
from bot.openai_api.calls import UsageEvent
from bot.openai_api.gateway import OpenAIGateway
from bot.privacy.bookkeeping import ClusterBookkeeping
from bot.privacy.registry import Privacy, RetentionDays
from bot.recall.index import RecallIndex
from bot.recall.service import Recall
from bot.settings import Settings
from bot.storage.leases import Leases
from bot.storage.store import Store, open_store
from bot.storage.versions import CacheVersions
from bot.summary.summarizer import Summarizer, SummaryLimits
from bot.util.metrics import Metrics
from bot.util.pacing import StreamPacer


@dataclass(frozen=True)
class Services:
    """Everything the cogs depend on, built once by `build_services` and never changed afterwards."""

    settings: Settings
    metrics: Metrics
    store: Store
    # Shared with the other processes on the database (docs/storage.md, "What is shared across processes").
    leases: Leases
    versions: CacheVersions
    prices: PriceTable
    ledger: UsageLedger
    limits: Limits
    alerts: BudgetAlerts
    admission: Admission
    gateway: OpenAIGateway
    moderation: ModerationGate
    channel_moderation: ChannelModerator
    modlog: ModerationLog
    review: ModerationReview
    history: History
    personas: Personas
    chat_models: ChatModels
    conversations: Conversations
    stream_pacer: StreamPacer
    inflight_answers: InflightAnswers
    chat_threads: ChatThreads
    thread_titles: ThreadTitles
    answer_records: AnswerRecords
    running_answers: RunningAnswers
    images: ImageMaker
    transcriber: Transcriber
    speaker: Speaker
    auto_transcribe: AutoTranscribeChannels
    summarizer: Summarizer
    recall: Recall
    privacy: Privacy
    server_languages: ServerLanguages

    async def close(self) -> None:
        """Stop background work, then the OpenAI client, then the database (which must close last)."""
        try:
            await self.recall.close()
            await self.alerts.close()
            await self.moderation.close()
            await self.gateway.close()
        finally:
            try:
                await self.leases.close()  # released, so another process takes the jobs over at once
            finally:
                await self.store.close()


async def build_services(
    settings: Settings, *, modlog_sink: ModlogSink, bot_user_id: Callable[[], int]
) -> Services:
    """Every service, in dependency order. The Discord edge passes in what only it can do: post to a
    mod-log channel, and know the bot's own user id once logged in."""
    # The one metrics registry; served only when METRICS_PORT is set, but always cheap to record into.
    metrics = Metrics(guild_labels=settings.metrics_guild_labels)
    store = await open_store(settings.database_url, pool_size=settings.database_pool_size, metrics=metrics)
    try:
        leases, versions = Leases(store), CacheVersions(store)
        await versions.load()  # before any cache is filled
        prices = load_prices(settings.prices_file)
        ledger = UsageLedger(store, prices, metrics=metrics)
        policies = PolicyRepo(store, versions)
        modlog = ModerationLog(policies, modlog_sink)
        # The mod-log, or the owner by DM when there is none: members hear "the admins have been told" only then.
        quota_minutes = max(1, round(settings.quota_cooldown / 60))

        async def quota_notice(guild_id: int, _english: str) -> bool:
            # The breaker words its notice in English; each server reads it in its own language instead.
            return await modlog.alert_admins(
                guild_id, Message("notice.quota_paused", {"minutes": quota_minutes})
            )

        breaker, allowance = _cost_state(store, ledger, settings, quota_notice, metrics)
        limits = Limits(
            LimitsStore(store, settings, versions), ledger, prices, settings, breaker, allowance=allowance
        )
        alerts = BudgetAlerts(store, ledger, limits.store, modlog.alert_admins)

        async def record_usage(event: UsageEvent) -> None:
            await ledger.record(event)
            alerts.observe(event)

        gateway = OpenAIGateway.from_settings(
            settings, guard=limits, usage_sink=record_usage, metrics=metrics
        )
    except BaseException:
        await store.close()
        raise
    batcher = ModerationBatcher.from_settings(gateway, settings, metrics)
    moderation = ModerationGate(gateway, batcher=batcher, policies=policies)
    actions, strikes = ActionLog(store), Strikes(store)
    channel_moderation = ChannelModerator(
        moderation,
        policies,
        OutageQueue(store, metrics, claimer=leases.holder),
        actions,
        strikes,
        Watermarks(store),
        moderate_bots=settings.moderate_bot_messages,
        versions=versions,
    )
    history = History(store, window_tokens=settings.history_token_budget, versions=versions)
    limits_rules = limits.store
    auto_transcribe = AutoTranscribeChannels(store)
    inflight_answers = InflightAnswers(store, leases)
    personas = Personas(store, versions)
    chat_models = ChatModels(store, settings, versions)
    chat_threads = ChatThreads(store)
    answer_records = AnswerRecords(store)
    recall_index = RecallIndex(
        store,
        settings.embedding_model,
        dimensions=settings.embedding_dimensions,
        pgvector=settings.recall_pgvector,
    )
    server_languages = ServerLanguages(store, versions)
    stream_pacer = StreamPacer.for_process(
        settings.stream_edit_interval,
        settings.stream_edits_per_second,
        len(settings.held_shards),
        settings.shard_count or 1,
    )
    recall = Recall(recall_index, gateway, channel_moderation, settings)
    # Every domain that keeps data about people answers for its own tables (bot/privacy/owner.py).
    privacy = Privacy(
        store,
        [
            history,
            personas,
            chat_models,
            ledger,
            limits_rules,
            alerts,
            *channel_moderation.data_owners,
            auto_transcribe,
            inflight_answers,
            recall_index,
            chat_threads,
            answer_records,
            server_languages,
            ClusterBookkeeping(),
            CostClaims(store),
            QuotaNotices(),
        ],
        retention=RetentionDays(settings.retention_days, settings.moderation_retention_days),
    )
    # Held while this process runs: the others know its in-flight answers are not orphans.
    await leases.keeper(leases.liveness_lease).start()
    return Services(
        settings=settings,
        metrics=metrics,
        store=store,
        leases=leases,
        versions=versions,
        prices=prices,
        ledger=ledger,
        limits=limits,
        alerts=alerts,
        admission=Admission(settings, limits, chat_model=chat_models.model_for, versions=versions),
        gateway=gateway,
        moderation=moderation,
        channel_moderation=channel_moderation,
        modlog=modlog,
        review=ModerationReview(actions, strikes, policies),
        history=history,
        conversations=Conversations(
            history,
            personas,
            gateway,
            moderation,
            settings,
            bot_user_id=bot_user_id,
            long_memory=recall,
            cache_key=ledger.cache_key,
            models=chat_models,
            versions=versions,
            pacer=stream_pacer,
        ),
        stream_pacer=stream_pacer,
        personas=personas,
        chat_models=chat_models,
        inflight_answers=inflight_answers,
        chat_threads=chat_threads,
        thread_titles=ThreadTitles(gateway, moderation),
        answer_records=answer_records,
        running_answers=RunningAnswers(),
        images=ImageMaker(gateway, moderation, moderate_output=settings.image_output_moderation),
        transcriber=Transcriber(
            gateway,
            moderation,
            limit_bytes=settings.transcription_upload_limit,
            max_seconds=settings.transcription_max_minutes * 60,
            translation_model=settings.translation_model,
        ),
        speaker=Speaker(gateway, moderation),
        auto_transcribe=auto_transcribe,
        summarizer=Summarizer(gateway, settings.summary_model, SummaryLimits.from_settings(settings)),
        recall=recall,
        privacy=privacy,
        server_languages=server_languages,
    )


def _cost_state(
    store: Store, ledger: UsageLedger, settings: Settings, notify: Notifier, metrics: Metrics
) -> tuple[QuotaBreaker, Allowance]:
    """The quota breaker and the rate/budget/slot state: in this process's memory when it alone uses the
    database (SQLite), in the database when other processes share it (PostgreSQL; docs/cost.md)."""
    rate, burst = settings.user_requests_per_minute / 60, settings.user_burst
    limit, queue = settings.server_max_concurrent_jobs, settings.server_queue_size
    if not store.shared_by_processes:
        breaker = QuotaBreaker(settings.quota_cooldown, notify=notify, metrics=metrics)
        return breaker, LocalAllowance(ledger, rate, burst, limit, queue)
    holder = process_name()
    shared = SharedQuotaBreaker(
        store,
        settings.quota_cooldown,
        # The longest a probe can take (every attempt timing out); a probe holder that died is replaced then.
        probe_lease=settings.openai_timeout * (settings.openai_max_retries + 1) + 30,
        holder=holder,
        notify=notify,
        metrics=metrics,
    )
    return shared, SharedAllowance(store, ledger, rate, burst, limit, queue, holder=holder)

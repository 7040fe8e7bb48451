"""The composition root: `build_services` makes every service once, in dependency order, and nothing else does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.chat.conversation import Conversations
from bot.chat.history import History
from bot.cost.admission import Admission
from bot.cost.breaker import QuotaBreaker
from bot.cost.ledger import UsageLedger
from bot.cost.limits import Limits
from bot.cost.pricing import PriceTable, load_prices
from bot.cost.rules import LimitsStore
from bot.media.imaging import ImageMaker
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
from bot.openai_api.gateway import OpenAIGateway
from bot.privacy.registry import Privacy, RetentionDays
from bot.settings import Settings
from bot.storage.store import Store, open_store
from bot.summary.summarizer import Summarizer, SummaryLimits


@dataclass(frozen=True)
class Services:
    """Everything the cogs depend on, built once by `build_services` and never changed afterwards."""

    settings: Settings
    store: Store
    prices: PriceTable
    ledger: UsageLedger
    limits: Limits
    admission: Admission
    gateway: OpenAIGateway
    moderation: ModerationGate
    channel_moderation: ChannelModerator
    modlog: ModerationLog
    review: ModerationReview
    history: History
    conversations: Conversations
    images: ImageMaker
    transcriber: Transcriber
    auto_transcribe: AutoTranscribeChannels
    summarizer: Summarizer
    privacy: Privacy

    async def close(self) -> None:
        """Stop background work, then the OpenAI client, then the database (which must close last)."""
        try:
            await self.moderation.close()
            await self.gateway.close()
        finally:
            await self.store.close()


async def build_services(
    settings: Settings, *, modlog_sink: ModlogSink, bot_user_id: Callable[[], int]
) -> Services:
    """Every service, in dependency order. The Discord edge passes in what only it can do: post to a
    mod-log channel, and know the bot's own user id once logged in."""
    store = await open_store(settings.database_url, pool_size=settings.database_pool_size)
    try:
        prices = load_prices(settings.prices_file)
        ledger = UsageLedger(store, prices)
        policies = PolicyRepo(store)
        modlog = ModerationLog(policies, modlog_sink)
        breaker = QuotaBreaker(settings.quota_cooldown, notify=modlog.notify)
        limits = Limits(LimitsStore(store, settings), ledger, prices, settings, breaker)
        gateway = OpenAIGateway.from_settings(settings, guard=limits, usage_sink=ledger.record)
    except BaseException:
        await store.close()
        raise
    batcher = ModerationBatcher.from_settings(gateway, settings)
    moderation = ModerationGate(gateway, batcher=batcher, policies=policies)
    actions, strikes = ActionLog(store), Strikes(store)
    channel_moderation = ChannelModerator(
        moderation,
        policies,
        OutageQueue(store),
        actions,
        strikes,
        moderate_bots=settings.moderate_bot_messages,
    )
    history = History(store, window_tokens=settings.history_token_budget)
    limits_rules = limits.store
    auto_transcribe = AutoTranscribeChannels(store)
    # Every domain that keeps data about people answers for its own tables (bot/privacy/owner.py).
    privacy = Privacy(
        store,
        [history, ledger, limits_rules, *channel_moderation.data_owners, auto_transcribe],
        retention=RetentionDays(settings.retention_days, settings.moderation_retention_days),
    )
    return Services(
        settings=settings,
        store=store,
        prices=prices,
        ledger=ledger,
        limits=limits,
        admission=Admission(settings, limits),
        gateway=gateway,
        moderation=moderation,
        channel_moderation=channel_moderation,
        modlog=modlog,
        review=ModerationReview(actions, strikes, policies),
        history=history,
        conversations=Conversations(history, gateway, moderation, settings, bot_user_id=bot_user_id),
        images=ImageMaker(gateway, moderation, moderate_output=settings.image_output_moderation),
        transcriber=Transcriber(
            gateway,
            moderation,
            limit_bytes=settings.transcription_upload_limit,
            max_seconds=settings.transcription_max_minutes * 60,
        ),
        auto_transcribe=auto_transcribe,
        summarizer=Summarizer(gateway, settings.summary_model, SummaryLimits.from_settings(settings)),
        privacy=privacy,
    )

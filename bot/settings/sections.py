"""The settings, one class per domain: each variable's name, default, rule and doc, declared once."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict

from bot.settings.rules import (
    AtLeast1000,
    Flag,
    NonNegativeFloat,
    NonNegativeInt,
    OptionalPositiveInt,
    PositiveFloat,
    PositiveInt,
    Rule,
    ServerIds,
    ShardIds,
    SyncChoice,
    one_of,
    setting,
)

DEFAULT_DATABASE_URL = "sqlite:///data/bot.db"
GPT_FAMILY = ("gpt-", "o1", "o3", "o4", "chatgpt-")


def _database_url(url: str) -> str:
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return url
    if url.startswith(("postgresql://", "postgres://")) and len(url.split("://", 1)[1]) > 0:
        return url
    raise ValueError("neither a sqlite:/// nor a postgresql:// URL")


def _embedding_batch(size: int) -> int:
    if not 1 <= size <= 2048:  # the embeddings endpoint takes at most 2,048 inputs a request
        raise ValueError("out of range")
    return size


class Section(BaseModel):
    """A group of related settings; `Settings` inherits every section, so access stays flat."""

    # Only the composed `Settings` validates anything, so the sections skip building validators of their own.
    model_config = ConfigDict(
        frozen=True, validate_by_name=True, validate_by_alias=True, extra="forbid", defer_build=True
    )
    title: ClassVar[str] = ""


class DiscordSettings(Section):
    """Connecting to Discord and choosing where the bot answers."""

    title: ClassVar[str] = "Discord and access"

    discord_token: str = setting(
        "DISCORD_TOKEN",
        "",
        "The bot token.",
        details="Developer portal -> your application -> Bot -> Reset Token.",
        required=True,
        secret=True,
    )
    allow_dms: Flag = setting("ALLOW_DMS", False, "Answer in direct messages.")
    sync_commands: SyncChoice = setting(
        "SYNC_COMMANDS",
        None,
        "Sync slash commands at start-up: `auto`, `true` or `false`.",
        details="`auto` syncs in the process that holds shard 0 (every unsharded bot); `true` syncs in this "
        "process whatever its shards, `false` skips the sync (frequent restarts). docs/sharding.md.",
        shown_default="`auto`",
    )
    shard_count: OptionalPositiveInt = setting(
        "SHARD_COUNT",
        None,
        "Total Discord shards across every bot process; unset runs unsharded.",
        details="Discord requires sharding from 2,500 servers and advises about 1,000 servers a shard. "
        "Alone, it runs every shard in this process (docs/sharding.md).",
    )
    shard_ids: ShardIds = setting(
        "SHARD_IDS",
        frozenset(),
        "The shards this process runs, such as `0-3` or `0,1`; empty runs all.",
        details="Needs SHARD_COUNT. Give each process its own ids, together covering 0 to SHARD_COUNT - 1; "
        "the process holding shard 0 receives direct messages.",
        shown_default="empty (all)",
    )
    allowed_guild_ids: ServerIds = setting(
        "ALLOWED_GUILD_IDS",
        frozenset(),
        "Comma-separated server ids the bot serves; empty serves all.",
        details="The bot leaves (or, failing that, ignores) any other server and logs it.",
        shown_default="empty (all)",
    )

    @property
    def sharded(self) -> bool:
        """Whether this process runs as shards (discord.py's AutoShardedBot) rather than unsharded."""
        return self.shard_count is not None

    @property
    def held_shards(self) -> tuple[int, ...]:
        """The shard ids this process runs, ascending ((0,) when unsharded)."""
        if self.shard_count is None:
            return (0,)
        return tuple(sorted(self.shard_ids)) if self.shard_ids else tuple(range(self.shard_count))

    @property
    def syncs_commands(self) -> bool:
        """SYNC_COMMANDS resolved: `auto` syncs only in the process holding shard 0, so one sync per start."""
        if self.sync_commands is not None:
            return self.sync_commands
        return 0 in self.held_shards


class OpenAISettings(Section):
    """Reaching the OpenAI API, or another OpenAI-compatible server."""

    title: ClassVar[str] = "OpenAI connection"

    openai_api_key: str = setting(
        "OPENAI_API_KEY",
        "",
        "The OpenAI API key.",
        details="Create one at platform.openai.com/api-keys; the account needs credit.",
        required=True,
        secret=True,
    )
    openai_base_url: str | None = setting(
        "OPENAI_BASE_URL",
        None,
        "Another OpenAI-compatible server (Ollama, vLLM, LM Studio).",
        details="For example Ollama's `http://localhost:11434/v1`. With it set, any chat model name is accepted, "
        "since local servers name models freely.",
    )
    openai_timeout: PositiveFloat = setting(
        "OPENAI_TIMEOUT", 60.0, "Seconds before one OpenAI request is abandoned."
    )
    openai_max_retries: NonNegativeInt = setting(
        "OPENAI_MAX_RETRIES",
        2,
        "Retries of rate limits, 5xx and timeouts.",
        details="Rate limits honour Retry-After. `insufficient_quota` is never retried.",
    )


class ChatSettings(Section):
    """`/ask` and mentions: the model, its prompt, and how answers are produced."""

    title: ClassVar[str] = "Chat"

    chat_model: str = setting(
        "CHAT_MODEL",
        "gpt-5-mini",
        "Model for `/ask` and mentions.",
        details="OpenAI retires models: keep it current (`python -m bot check` verifies each model exists).",
        model_family=GPT_FAMILY,
        any_model_with_base_url=True,
    )
    chat_models: str = setting(
        "CHAT_MODELS",
        "",
        "Comma-separated chat models admins may choose with `/model`; the first is the default.",
        details="Empty offers `CHAT_MODEL` alone. Without `OPENAI_BASE_URL` each must be a GPT-family name; with "
        "it set, whatever you list. A server's or channel's choice that later leaves the list falls back to "
        "the default.",
        shown_default="empty (`CHAT_MODEL` only)",
    )
    system_prompt: str = setting(
        "SYSTEM_PROMPT",
        "You are a helpful assistant in a Discord server. Answer concisely and use Discord markdown.",
        "The base system prompt; a channel's `/persona` is appended.",
        shown_default="a short assistant prompt",
    )
    history_token_budget: PositiveInt = setting(
        "HISTORY_TOKEN_BUDGET",
        6000,
        "Tokens of context per request; older turns are dropped first.",
        details="The budget covers the system prompt, persona, history and the question.",
    )
    max_answer_tokens: PositiveInt = setting(
        "MAX_ANSWER_TOKENS", 1200, "Longest answer in tokens (also the length of a `/tldr` summary)."
    )
    reasoning_effort: Annotated[str, one_of("off", "none", "minimal", "low", "medium", "high", "xhigh")] = (
        setting(
            "REASONING_EFFORT",
            "low",
            "Effort sent to reasoning models (gpt-5*, o-series); `off` sends nothing.",
            details="One of `none`, `minimal`, `low`, `medium`, `high`, `xhigh` or `off`. Reasoning tokens come out "
            "of `MAX_ANSWER_TOKENS`, so a high effort can leave no room for the answer.",
        )
    )
    # Older OpenAI-compatible servers only know `max_tokens`; OpenAI's reasoning models refuse it.
    max_tokens_parameter: Annotated[str, one_of("max_completion_tokens", "max_tokens")] = setting(
        "MAX_TOKENS_PARAMETER",
        "max_completion_tokens",
        "The field that caps answer length; `max_tokens` for older compatible servers.",
    )
    file_max_mb: PositiveFloat = setting(
        "FILE_MAX_MB",
        8.0,
        "Largest file `/ask` and mentions read, in MiB (images also stop at the API's 20 MB).",
    )
    file_max_pages: PositiveInt = setting("FILE_MAX_PAGES", 50, "Most pages of a PDF `/ask` reads.")
    file_max_tokens: PositiveInt = setting(
        "FILE_MAX_TOKENS",
        3000,
        "Most tokens of a file's text given to the model; the rest is cut, with a note in the answer.",
    )
    stream_edit_interval: PositiveFloat = setting(
        "STREAM_EDIT_INTERVAL",
        1.0,
        "Seconds between edits while an answer streams.",
        details="Discord allows about one edit per second per message.",
    )
    stream_edits_per_second: PositiveFloat = setting(
        "STREAM_EDITS_PER_SECOND",
        20.0,
        "Streaming edits per second shared by all answers at once.",
        details="Discord allows a bot 50 requests a second in all. With SHARD_COUNT, each process takes its "
        "shards' share. Every answer still shows its first checked text at once and its whole text at the end.",
    )
    speculative_moderation: Flag = setting(
        "SPECULATIVE_MODERATION",
        False,
        "Moderate the prompt while the chat request already runs.",
        details="`/ask` answers sooner, but flagged prompts reach the chat model (docs/moderation.md).",
    )
    stream_moderation: Annotated[str, one_of("before", "after")] = setting(
        "STREAM_MODERATION",
        "before",
        "`before`: streamed text is moderated before it is shown; `after`: only the whole answer.",
        details=(
            "With `before` (the default) no text a model wrote is on screen before it passed moderation; "
            "each shown edit waits one moderation round trip. `after` shows text as it streams and moderates "
            "the finished answer, replacing it when flagged: a trade-off for trusted servers only "
            "(docs/moderation.md)."
        ),
    )

    def chat_model_choices(self) -> tuple[str, ...]:
        """The models `/model` offers, the default first (CHAT_MODELS, or CHAT_MODEL alone)."""
        listed = tuple(dict.fromkeys(name.strip() for name in self.chat_models.split(",") if name.strip()))
        return listed or (self.chat_model,)


class SummarySettings(Section):
    """`/tldr`: summarising channel history (docs/features.md)."""

    title: ClassVar[str] = "Summaries"

    summary_model: str = setting(
        "SUMMARY_MODEL",
        "gpt-5-mini",
        "Model for `/tldr`.",
        model_family=GPT_FAMILY,
        any_model_with_base_url=True,
    )
    tldr_max_messages: AtLeast1000 = setting(
        "TLDR_MAX_MESSAGES",
        1000,
        "Most messages one `/tldr` reads; `count` is capped at this. At least 1000.",
    )
    tldr_chunk_tokens: AtLeast1000 = setting(
        "TLDR_CHUNK_TOKENS",
        8000,
        "Prompt tokens per `/tldr` request. At least 1000.",
        details="A longer history is split into chunks of this size, summarised, then combined.",
    )
    tldr_concurrency: PositiveInt = setting(
        "TLDR_CONCURRENCY", 4, "How many `/tldr` chunk requests run at the same time."
    )


class MediaSettings(Section):
    """`/imagine`, `/transcribe` and `/speak` (docs/features.md)."""

    title: ClassVar[str] = "Images, transcription and speech"

    image_model: str = setting(
        "IMAGE_MODEL",
        "gpt-image-1.5",
        "Model for `/imagine`.",
        details="dall-e-3 and gpt-image-1 are retired.",
        model_family=("gpt-image",),
    )
    transcription_model: str = setting(
        "TRANSCRIPTION_MODEL",
        "gpt-4o-mini-transcribe",
        "Model for `/transcribe`.",
        details="Translation always uses `whisper-1`, the only model that translates.",
        model_family=("whisper-", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-"),
    )
    speech_model: str = setting(
        "SPEECH_MODEL",
        "gpt-4o-mini-tts",
        'Model for `/speak` and "Read aloud".',
        details="`style` (tone, pace) reaches only gpt-4o-mini-tts; tts-1 and tts-1-hd ignore it.",
        model_family=("gpt-4o-mini-tts", "tts-", "gpt-"),
    )
    translation_model: str = setting(
        "TRANSLATION_MODEL",
        "gpt-5-mini",
        "Chat model that translates transcripts into languages other than English.",
        details="English comes from `whisper-1`'s translation endpoint.",
        model_family=GPT_FAMILY,
        any_model_with_base_url=True,
    )
    image_output_moderation: Flag = setting(
        "IMAGE_OUTPUT_MODERATION",
        True,
        "Check each generated image with image moderation before `/imagine` posts it.",
        details="The revised prompt the image model returns is checked too.",
    )
    imagine_progress_interval: PositiveFloat = setting(
        "IMAGINE_PROGRESS_INTERVAL", 5.0, "Seconds between updates of `/imagine`'s elapsed-time line."
    )
    transcription_upload_limit: PositiveInt = setting(
        "TRANSCRIPTION_UPLOAD_LIMIT",
        25 * 1024 * 1024,
        "Bytes per transcription upload (the API's 25 MiB); bigger files are split.",
    )
    transcript_max_messages: PositiveInt = setting(
        "TRANSCRIPT_MAX_MESSAGES",
        3,
        "Transcripts needing more messages than this are attached as a `.txt` file.",
        details="Counted in Discord messages of up to 2000 characters.",
    )
    transcription_max_minutes: PositiveFloat = setting(
        "TRANSCRIPTION_MAX_MINUTES",
        60.0,
        "Longer recordings are refused before any decoding.",
        details="A long silence is a tiny file but costs minutes of work.",
    )
    attachment_timeout: PositiveFloat = setting(
        "ATTACHMENT_TIMEOUT",
        30.0,
        "Seconds to wait for Discord's file server while reading an attachment.",
        details="Only Discord's hosts are read.",
    )


class RecallSettings(Section):
    """`/recall`: searching a server's messages by meaning (docs/features.md, "Recall")."""

    title: ClassVar[str] = "Recall"

    embedding_model: str = setting(
        "EMBEDDING_MODEL",
        "text-embedding-3-small",
        "Embedding model for `/recall` and long memory in `/ask`.",
        details="Changing it starts a new index: vectors made by another model are not searched.",
        model_family=("text-embedding-",),
        any_model_with_base_url=True,
    )
    embedding_dimensions: NonNegativeInt = setting(
        "EMBEDDING_DIMENSIONS",
        512,
        "Vector size asked of the embedding model (`0`: the model's own).",
        details=(
            "text-embedding-3 models can shorten their vectors; 512 floats (2 KiB a message) keep the "
            "index and its memory a third of the full 1,536 for a small loss of quality."
        ),
    )
    recall_backfill_days: NonNegativeInt = setting(
        "RECALL_BACKFILL_DAYS",
        30,
        "Days of each channel's history indexed when `/recall enable` is run (`0`: none).",
    )
    recall_batch_size: Annotated[int, Rule("must be between 1 and 2048", check=_embedding_batch)] = setting(
        "RECALL_BATCH_SIZE", 128, "Messages embedded in one request (1-2048)."
    )
    recall_concurrency: PositiveInt = setting(
        "RECALL_CONCURRENCY", 2, "Embedding requests for indexing that run at the same time."
    )
    recall_pgvector: Flag = setting(
        "RECALL_PGVECTOR",
        True,
        "On PostgreSQL, search with the pgvector extension when the server has it.",
        details=(
            "The bot creates the extension, an `embedding` column and its HNSW index (cosine) at the first "
            "use; without the extension, or with this off, the float32 blobs are searched as on SQLite."
        ),
    )
    recall_retry_seconds: PositiveFloat = setting(
        "RECALL_RETRY_SECONDS",
        30.0,
        "Seconds before messages whose embedding request failed are tried again.",
        details=(
            "The wait doubles with each failure, up to an hour (longer when OpenAI asks for it). The "
            "messages wait in the database meanwhile, so a restart does not lose them."
        ),
    )
    recall_ask_matches: NonNegativeInt = setting(
        "RECALL_ASK_MATCHES",
        3,
        "Older messages `/ask` quotes to the model when recall is on (`0`: none).",
    )
    recall_ask_wait: NonNegativeFloat = setting(
        "RECALL_ASK_WAIT",
        0.5,
        "Seconds `/ask` waits for its recall lookup before answering without it.",
    )


class ModerationSettings(Section):
    """Automatic channel moderation (docs/moderation.md); each server's policy is set with
    `/moderation`."""

    title: ClassVar[str] = "Moderation"

    moderation_model: str = setting(
        "MODERATION_MODEL",
        "omni-moderation-latest",
        "Moderation model.",
        model_family=("omni-moderation", "text-moderation"),
    )
    moderate_bot_messages: Flag = setting(
        "MODERATE_BOT_MESSAGES", False, "Also moderate messages from other bots and webhooks."
    )
    moderation_batch_window: NonNegativeFloat = setting(
        "MODERATION_BATCH_WINDOW",
        0.02,
        "Seconds the gate waits to coalesce texts into one Moderation request.",
        details="`0` coalesces only while requests are busy.",
    )
    moderation_batch_size: PositiveInt = setting(
        "MODERATION_BATCH_SIZE",
        128,
        "Most texts in one Moderation request.",
        details="A request also stops at 100,000 characters. Bigger batches mean fewer requests against the "
        "account's rate limit; at 64, 8 requests in flight capped one busy process below 3,000 messages a "
        "second (docs/performance.md).",
    )
    moderation_concurrency: PositiveInt = setting(
        "MODERATION_CONCURRENCY",
        8,
        "Channel-message Moderation requests in flight at once.",
        details="While all are busy, batches grow instead. Commands' own checks (a prompt, an answer) have a "
        "separate lane of twice as many, so channel traffic never holds a user up.",
    )
    moderation_cache_seconds: NonNegativeFloat = setting(
        "MODERATION_CACHE_SECONDS",
        60.0,
        "Seconds a verdict is reused for identical content (`0`: no cache).",
    )
    moderation_retry_interval: PositiveFloat = setting(
        "MODERATION_RETRY_INTERVAL",
        15.0,
        "Seconds between attempts to drain the outage queue while the endpoint fails.",
        details="The interval backs off to 4x while failures continue.",
    )
    moderation_catchup_hours: NonNegativeFloat = setting(
        "MODERATION_CATCHUP_HOURS",
        24.0,
        "Hours of history read back at start-up and after a reconnect (`0`: no catch-up).",
        details=(
            "Messages posted while the bot was down, crashing or disconnected are read from Discord and "
            "moderated, from the newest message already acted on (docs/moderation.md)."
        ),
    )
    moderation_catchup_messages: NonNegativeInt = setting(
        "MODERATION_CATCHUP_MESSAGES",
        1000,
        "Most messages read back per channel in one catch-up (`0`: no catch-up).",
    )


class CostSettings(Section):
    """Budgets, rate limits and the quota breaker (docs/cost.md)."""

    title: ClassVar[str] = "Cost and limits"

    prices_file: str | None = setting(
        "PRICES_FILE",
        None,
        "A JSON price table replacing or adding to the shipped one.",
        details="Entries replace or add to `bot/cost/prices.json`, model by model.",
    )
    user_daily_budget: NonNegativeFloat = setting(
        "USER_DAILY_BUDGET",
        1.0,
        "USD one member may spend per UTC day in a server (`0`: no cap).",
        details="`/limits budget` overrides it per server.",
    )
    server_monthly_budget: NonNegativeFloat = setting(
        "SERVER_MONTHLY_BUDGET",
        25.0,
        "USD a server may spend per calendar month, UTC (`0`: no cap).",
        details="`/limits budget` overrides it per server.",
    )
    user_requests_per_minute: PositiveFloat = setting(
        "USER_REQUESTS_PER_MINUTE", 20.0, "Rate at which a member's request allowance refills."
    )
    user_burst: PositiveInt = setting(
        "USER_BURST", 20, 'Requests a member may make at once before "slow down".'
    )
    server_max_concurrent_jobs: PositiveInt = setting(
        "SERVER_MAX_CONCURRENT_JOBS", 4, "OpenAI calls one server may have in progress at once."
    )
    server_queue_size: NonNegativeInt = setting(
        "SERVER_QUEUE_SIZE", 16, "Calls that may wait for one of those slots; more are told to slow down."
    )
    quota_cooldown: PositiveFloat = setting(
        "QUOTA_COOLDOWN",
        600.0,
        "Seconds OpenAI calls pause after `insufficient_quota` before one probe.",
    )


class StorageSettings(Section):
    """Where state lives and how long it is kept (docs/privacy.md)."""

    title: ClassVar[str] = "Storage and privacy"

    database_url: Annotated[
        str,
        Rule(
            "must look like sqlite:///path/to/bot.db or postgresql://user:password@host:5432/db",
            check=_database_url,
        ),
    ] = setting(
        "DATABASE_URL",
        DEFAULT_DATABASE_URL,
        "Where all state lives: `sqlite:///path` (one file) or `postgresql://user:password@host:5432/db`.",
        details="Conversation memory, moderation policy and the usage ledger. A SQLite file's directory must be "
        "writable; a PostgreSQL database must exist and be empty or this bot's (docs/storage.md).",
    )
    database_pool_size: PositiveInt = setting(
        "DATABASE_POOL_SIZE",
        10,
        "PostgreSQL connections each bot process keeps open (ignored for SQLite).",
        details="Reads and writes run on these concurrently; the PostgreSQL server's `max_connections` must cover "
        "every process's pool.",
    )
    retention_days: NonNegativeInt = setting(
        "RETENTION_DAYS",
        90,
        "Days conversation history is kept (`0`: forever).",
        details="An hourly task deletes older turns and removes user ids from older usage records.",
    )
    moderation_retention_days: NonNegativeInt = setting(
        "MODERATION_RETENTION_DAYS",
        90,
        "Days moderation records and strikes are kept (`0`: forever).",
        details=(
            "Kept apart from conversation data: `/forget me` does not delete them, so it cannot undo "
            "moderation. The same hourly task deletes older ones (docs/privacy.md)."
        ),
    )


class RuntimeSettings(Section):
    """The process: logging, event loop and shutdown (docs/operations.md, docs/reliability.md)."""

    title: ClassVar[str] = "Runtime"

    log_level: str = setting(
        "LOG_LEVEL",
        "INFO",
        "Logging level.",
        details="DEBUG, INFO, WARNING or ERROR. Message content, tokens and keys are never logged at INFO or above.",
    )
    event_loop: Annotated[str, one_of("auto", "uvloop", "asyncio")] = setting(
        "EVENT_LOOP",
        "auto",
        "`auto` (uvloop where installed), `uvloop`, or `asyncio`.",
        details="uvloop has no Windows build; `uvloop` insists on it, `asyncio` uses Python's own loop. "
        "uvloop costs less CPU per request (docs/performance.md).",
    )
    # On SIGTERM/SIGINT, requests in progress get this long to finish before they are told and stopped.
    shutdown_grace: NonNegativeFloat = setting(
        "SHUTDOWN_GRACE",
        8.0,
        "Seconds requests in progress get to finish on SIGTERM/SIGINT.",
        details="The rest are told the bot is restarting (docs/reliability.md).",
    )
    log_format: Annotated[str, one_of("text", "json")] = setting(
        "LOG_FORMAT",
        "text",
        "`text` (human-readable lines) or `json` (one JSON object per line).",
        details="JSON keys: time, level, logger, event, guild, channel, command, latency (docs/operations.md).",
    )
    metrics_port: NonNegativeInt = setting(
        "METRICS_PORT",
        0,
        "Port serving `/metrics` (Prometheus) and `/healthz`; `0` turns them off.",
        details="See docs/operations.md for the metrics and what the health check tests.",
        shown_default="0 (off)",
    )
    metrics_host: str = setting(
        "METRICS_HOST",
        "127.0.0.1",
        "Address the metrics and health server listens on.",
        details="`0.0.0.0` inside a container, so the health check and Prometheus can reach it.",
    )
    metrics_guild_labels: Flag = setting(
        "METRICS_GUILD_LABELS",
        False,
        "Label command metrics with the server id.",
        details="Off by default: one series per server grows with the number of servers.",
    )


# The order the docs list them in.
SECTIONS: tuple[type[Section], ...] = (
    DiscordSettings,
    OpenAISettings,
    ChatSettings,
    SummarySettings,
    MediaSettings,
    RecallSettings,
    ModerationSettings,
    CostSettings,
    StorageSettings,
    RuntimeSettings,
)

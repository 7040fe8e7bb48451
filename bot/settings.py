"""Typed settings read from the environment and `.env`, with errors that name the variable."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

DEFAULT_DATABASE_URL = "sqlite:///data/bot.db"


class SettingsError(Exception):
    """Every problem found in the configuration, each naming its variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems

    def render(self) -> str:
        lines = ["The bot cannot start: its configuration is incomplete or wrong."]
        lines += [f"  - {problem}" for problem in self.problems]
        lines.append("Copy .env.example to .env and fill it in (see README.md, 'Settings').")
        return "\n".join(lines)


# Model families the official API serves for each job. With OPENAI_BASE_URL set (Ollama, vLLM...)
# any chat model name is accepted, since local servers name models freely.
MODEL_FAMILIES: dict[str, tuple[str, ...]] = {
    "CHAT_MODEL": ("gpt-", "o1", "o3", "o4", "chatgpt-"),
    "SUMMARY_MODEL": ("gpt-", "o1", "o3", "o4", "chatgpt-"),
    "MODERATION_MODEL": ("omni-moderation", "text-moderation"),
    "IMAGE_MODEL": ("gpt-image",),
    "TRANSCRIPTION_MODEL": ("whisper-", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-"),
}


def _env_field(env: str, default: Any = None, *, required: bool = False, doc: str = "") -> Any:
    return field(default=default, metadata={"env": env, "required": required, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Everything the bot can be configured with. Build it with `load_settings`."""

    discord_token: str = _env_field("DISCORD_TOKEN", "", required=True)
    openai_api_key: str = _env_field("OPENAI_API_KEY", "", required=True)
    openai_base_url: str | None = _env_field("OPENAI_BASE_URL")
    database_url: str = _env_field("DATABASE_URL", DEFAULT_DATABASE_URL)
    chat_model: str = _env_field("CHAT_MODEL", "gpt-5-mini")
    summary_model: str = _env_field("SUMMARY_MODEL", "gpt-5-mini")
    moderation_model: str = _env_field("MODERATION_MODEL", "omni-moderation-latest")
    # Automatic channel moderation (see README, "Automatic moderation").
    moderate_bot_messages: bool = _env_field("MODERATE_BOT_MESSAGES", False)
    moderation_batch_window: float = _env_field("MODERATION_BATCH_WINDOW", 0.02)
    moderation_batch_size: int = _env_field("MODERATION_BATCH_SIZE", 64)
    moderation_concurrency: int = _env_field("MODERATION_CONCURRENCY", 8)
    moderation_cache_seconds: float = _env_field("MODERATION_CACHE_SECONDS", 60.0)
    moderation_retry_interval: float = _env_field("MODERATION_RETRY_INTERVAL", 15.0)
    moderation_catchup_hours: float = _env_field("MODERATION_CATCHUP_HOURS", 24.0)
    moderation_catchup_messages: int = _env_field("MODERATION_CATCHUP_MESSAGES", 1000)
    image_model: str = _env_field("IMAGE_MODEL", "gpt-image-1.5")
    transcription_model: str = _env_field("TRANSCRIPTION_MODEL", "gpt-4o-mini-transcribe")
    # /imagine and /transcribe (see README, "Images and transcription").
    image_output_moderation: bool = _env_field("IMAGE_OUTPUT_MODERATION", True)
    imagine_progress_interval: float = _env_field("IMAGINE_PROGRESS_INTERVAL", 5.0)
    transcription_upload_limit: int = _env_field("TRANSCRIPTION_UPLOAD_LIMIT", 25 * 1024 * 1024)
    transcript_max_messages: int = _env_field("TRANSCRIPT_MAX_MESSAGES", 3)
    # /tldr (see README, "Summaries").
    tldr_max_messages: int = _env_field("TLDR_MAX_MESSAGES", 1000)
    tldr_chunk_tokens: int = _env_field("TLDR_CHUNK_TOKENS", 8000)
    tldr_concurrency: int = _env_field("TLDR_CONCURRENCY", 4)
    history_token_budget: int = _env_field("HISTORY_TOKEN_BUDGET", 6000)
    max_answer_tokens: int = _env_field("MAX_ANSWER_TOKENS", 1200)
    system_prompt: str = _env_field(
        "SYSTEM_PROMPT",
        "You are a helpful assistant in a Discord server. Answer concisely and use Discord markdown.",
    )
    reasoning_effort: str = _env_field("REASONING_EFFORT", "low")
    # Older OpenAI-compatible servers only know `max_tokens`; OpenAI's reasoning models refuse it.
    max_tokens_parameter: str = _env_field("MAX_TOKENS_PARAMETER", "max_completion_tokens")
    openai_timeout: float = _env_field("OPENAI_TIMEOUT", 60.0)
    openai_max_retries: int = _env_field("OPENAI_MAX_RETRIES", 2)
    stream_edit_interval: float = _env_field("STREAM_EDIT_INTERVAL", 1.0)
    # Opt-in: moderate the prompt while the chat request already runs (see README, "Performance").
    speculative_moderation: bool = _env_field("SPECULATIVE_MODERATION", False)
    allow_dms: bool = _env_field("ALLOW_DMS", False)
    sync_commands: bool = _env_field("SYNC_COMMANDS", True)
    log_level: str = _env_field("LOG_LEVEL", "INFO")
    event_loop: str = _env_field("EVENT_LOOP", "auto")
    # On SIGTERM/SIGINT, requests in progress get this long to finish before they are told and stopped.
    shutdown_grace: float = _env_field("SHUTDOWN_GRACE", 8.0)
    # Cost control, access and privacy (README: "Cost control", "Data the bot stores").
    prices_file: str | None = _env_field("PRICES_FILE")
    user_daily_budget: float = _env_field("USER_DAILY_BUDGET", 1.0)
    server_monthly_budget: float = _env_field("SERVER_MONTHLY_BUDGET", 25.0)
    user_requests_per_minute: float = _env_field("USER_REQUESTS_PER_MINUTE", 20.0)
    user_burst: int = _env_field("USER_BURST", 20)
    server_max_concurrent_jobs: int = _env_field("SERVER_MAX_CONCURRENT_JOBS", 4)
    server_queue_size: int = _env_field("SERVER_QUEUE_SIZE", 16)
    quota_cooldown: float = _env_field("QUOTA_COOLDOWN", 600.0)
    allowed_guild_ids: frozenset[int] = _env_field("ALLOWED_GUILD_IDS", frozenset())
    retention_days: int = _env_field("RETENTION_DAYS", 90)

    @property
    def database_path(self) -> Path:
        return Path(self.database_url.removeprefix("sqlite:///"))

    def setting_for_model(self, model: str) -> str:
        """The variable a model name came from, so errors can say which setting to change."""
        for f in fields(self):
            if f.name.endswith("_model") and getattr(self, f.name) == model:
                return str(f.metadata["env"])
        return "a *_MODEL setting"


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def _parse_positive_int(raw: str) -> int:
    value = int(raw.strip())
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def _parse_positive_float(raw: str) -> float:
    value = float(raw.strip())
    if value <= 0:
        raise ValueError("must be a positive number")
    return value


def _parse_non_negative_int(raw: str) -> int:
    value = int(raw.strip())
    if value < 0:
        raise ValueError("must be zero or more")
    return value


def _parse_at_least_1000(raw: str) -> int:
    value = int(raw.strip())
    if value < 1000:
        raise ValueError("must be at least 1000")
    return value


def _parse_non_negative_float(raw: str) -> float:
    value = float(raw.strip())
    if value < 0 or value != value:
        raise ValueError("must be zero or more")
    return value


def _parse_id_list(raw: str) -> frozenset[int]:
    return frozenset(int(part) for part in raw.replace(",", " ").split())


_PARSERS: dict[str, Callable[[str], Any]] = {
    "history_token_budget": _parse_positive_int,
    "max_answer_tokens": _parse_positive_int,
    "image_output_moderation": _parse_bool,
    "imagine_progress_interval": _parse_positive_float,
    "transcription_upload_limit": _parse_positive_int,
    "transcript_max_messages": _parse_positive_int,
    "tldr_max_messages": _parse_at_least_1000,
    "tldr_chunk_tokens": _parse_at_least_1000,
    "tldr_concurrency": _parse_positive_int,
    "openai_timeout": _parse_positive_float,
    "openai_max_retries": _parse_non_negative_int,
    "stream_edit_interval": _parse_positive_float,
    "speculative_moderation": _parse_bool,
    "allow_dms": _parse_bool,
    "sync_commands": _parse_bool,
    "shutdown_grace": _parse_non_negative_float,
    "moderate_bot_messages": _parse_bool,
    "moderation_batch_window": _parse_non_negative_float,
    "moderation_batch_size": _parse_positive_int,
    "moderation_concurrency": _parse_positive_int,
    "moderation_cache_seconds": _parse_non_negative_float,
    "moderation_retry_interval": _parse_positive_float,
    "moderation_catchup_hours": _parse_non_negative_float,
    "moderation_catchup_messages": _parse_non_negative_int,
    "user_daily_budget": _parse_non_negative_float,
    "server_monthly_budget": _parse_non_negative_float,
    "user_requests_per_minute": _parse_positive_float,
    "user_burst": _parse_positive_int,
    "server_max_concurrent_jobs": _parse_positive_int,
    "server_queue_size": _parse_non_negative_int,
    "quota_cooldown": _parse_positive_float,
    "allowed_guild_ids": _parse_id_list,
    "retention_days": _parse_non_negative_int,
}

_EXPECTED: dict[Callable[[str], Any], str] = {
    _parse_positive_int: "a positive whole number",
    _parse_positive_float: "a positive number",
    _parse_non_negative_int: "a whole number, zero or more",
    _parse_at_least_1000: "a whole number, at least 1000",
    _parse_bool: "true or false",
    _parse_non_negative_float: "a number, zero or more",
    _parse_id_list: "server ids separated by commas",
}


def _read_environment(environ: Mapping[str, str] | None, env_file: str | Path | None) -> dict[str, str]:
    values: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    return values


def _check_database_url(url: str) -> str | None:
    if not url.startswith("sqlite:///"):
        return f"DATABASE_URL must look like sqlite:///path/to/bot.db (got {url!r})"
    path = Path(url.removeprefix("sqlite:///"))
    directory = path.parent if str(path.parent) else Path(".")
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"DATABASE_URL points at {path}, which is not writable by this user"
    return None


def load_settings(
    environ: Mapping[str, str] | None = None, *, env_file: str | Path | None = ".env"
) -> Settings:
    """Parse settings from `environ` (default: the process environment) over `env_file`."""
    raw = _read_environment(environ, env_file)
    problems: list[str] = []
    values: dict[str, Any] = {}
    for f in fields(Settings):
        env = f.metadata["env"]
        text = raw.get(env, "").strip()
        if not text:
            if f.metadata["required"]:
                problems.append(f"{env} is missing or empty")
            continue
        parser = _PARSERS.get(f.name)
        if parser is None:
            values[f.name] = text
            continue
        try:
            values[f.name] = parser(text)
        except ValueError:
            problems.append(f"{env} must be {_EXPECTED[parser]} (got {text!r})")
    settings = Settings(**values)
    if settings.reasoning_effort not in {"off", "none", "minimal", "low", "medium", "high", "xhigh"}:
        problems.append("REASONING_EFFORT must be off, none, minimal, low, medium, high or xhigh")
    if settings.event_loop not in {"auto", "uvloop", "asyncio"}:
        problems.append("EVENT_LOOP must be auto, uvloop or asyncio")
    if settings.max_tokens_parameter not in {"max_completion_tokens", "max_tokens"}:
        problems.append("MAX_TOKENS_PARAMETER must be max_completion_tokens or max_tokens")
    if database_problem := _check_database_url(settings.database_url):
        problems.append(database_problem)
    for env, prefixes in MODEL_FAMILIES.items():
        if env in {"CHAT_MODEL", "SUMMARY_MODEL"} and settings.openai_base_url:
            continue
        model = str(raw.get(env, "")).strip() or _default_of(env)
        if not model.startswith(prefixes):
            problems.append(
                f"{env}={model!r} is not a known model family (expected a name starting with "
                f"{' or '.join(prefixes)})"
            )
    if problems:
        raise SettingsError(problems)
    return settings


def _default_of(env: str) -> str:
    for f in fields(Settings):
        if f.metadata["env"] == env:
            return str(f.default)
    raise KeyError(env)


def documented_settings() -> list[tuple[str, str, bool]]:
    """(variable, default, required) for every setting, for docs and `check`."""
    return [(f.metadata["env"], str(f.default), bool(f.metadata["required"])) for f in fields(Settings)]

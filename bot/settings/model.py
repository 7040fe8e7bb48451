"""`Settings`: every section composed into one flat, frozen object, and `load_settings` that reads it."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from functools import cache
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bot.settings.rules import Variable
from bot.settings.sections import (
    GPT_FAMILY,
    SECTIONS,
    ChatSettings,
    CostSettings,
    DiscordSettings,
    MediaSettings,
    ModerationSettings,
    OpenAISettings,
    RecallSettings,
    RuntimeSettings,
    Section,
    StorageSettings,
    SummarySettings,
)


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


class Settings(
    # Pydantic lists inherited fields last base first; this order lists them as the docs do.
    RuntimeSettings,
    StorageSettings,
    CostSettings,
    ModerationSettings,
    RecallSettings,
    MediaSettings,
    SummarySettings,
    ChatSettings,
    OpenAISettings,
    DiscordSettings,
    BaseSettings,
):
    """Everything the bot can be configured with. Build it with `load_settings`.

    Built directly (`Settings(chat_model=...)`, as tests do) it reads neither the environment nor `.env`.
    """

    model_config = SettingsConfigDict(
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        case_sensitive=True,
        defer_build=False,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    @property
    def database_path(self) -> Path:
        return Path(self.database_url.removeprefix("sqlite:///"))

    def setting_for_model(self, model: str) -> str:
        """The variable a model name came from, so errors can say which setting to change."""
        for env, value in self.models().items():
            if value == model:
                return env
        return "a *_MODEL setting"

    def models(self) -> dict[str, str]:
        """Each *_MODEL variable and the model it names."""
        return {v.env: getattr(self, v.name) for v in variables() if v.name.endswith("_model")}


@cache
def variables() -> tuple[Variable, ...]:
    """Every setting, section by section, in the order the docs list them."""
    return tuple(
        Variable.of(name, info) for section in SECTIONS for name, info in section.model_fields.items()
    )


def variables_of(section: type[Section]) -> tuple[Variable, ...]:
    return tuple(v for v in variables() if v.name in section.model_fields)


# Model families the official API serves for each job (see `setting(model_family=...)`).
MODEL_FAMILIES: dict[str, tuple[str, ...]] = {v.env: v.model_family for v in variables() if v.model_family}


def _read_environment(environ: Mapping[str, str] | None, env_file: str | Path | None) -> dict[str, str]:
    values: dict[str, str] = {}
    if env_file is not None:
        dotenv = DotEnvSettingsSource(Settings, env_file=env_file, case_sensitive=True)
        values.update({key: value for key, value in dotenv.env_vars.items() if value is not None})
    values.update(os.environ if environ is None else environ)
    return values


def _database_problem(path: Path) -> str | None:
    directory = path.parent if str(path.parent) else Path(".")
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"DATABASE_URL points at {path}, which is not writable by this user"
    return None


def _model_problems(settings: Settings) -> list[str]:
    problems = []
    for v in variables():
        if not v.model_family or (v.any_model_with_base_url and settings.openai_base_url):
            continue
        model = getattr(settings, v.name)
        if not model.startswith(v.model_family):
            problems.append(
                f"{v.env}={model!r} is not a known model family (expected a name starting with "
                f"{' or '.join(v.model_family)})"
            )
    if not settings.openai_base_url:
        for model in settings.chat_model_choices():
            if not model.startswith(GPT_FAMILY):
                problems.append(f"CHAT_MODELS lists {model!r}, which is not a GPT-family chat model")
    return problems


def _shard_problems(settings: Settings) -> list[str]:
    if settings.shard_count is None:
        if settings.shard_ids:
            return ["SHARD_IDS needs SHARD_COUNT, the total number of shards across every process"]
        return []
    beyond = sorted(i for i in settings.shard_ids if i >= settings.shard_count)
    if beyond:
        return [
            f"SHARD_IDS lists shard {beyond[0]}, but SHARD_COUNT={settings.shard_count} numbers the shards "
            f"0 to {settings.shard_count - 1}"
        ]
    return []


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    env_file: str | Path | None = ".env",
    not_needed: Collection[str] = (),
) -> Settings:
    """Parse settings from `environ` (default: the process environment) over `env_file`.

    An explicit `environ` replaces the process environment entirely. Empty values count as unset.
    `not_needed`: required variables a command does without (`invite` needs no OpenAI key).
    """
    raw = _read_environment(environ, env_file)
    problems: list[str] = []
    given: dict[str, str] = {}
    for v in variables():
        text = raw.get(v.env, "").strip()
        if text:
            given[v.name] = text
        elif v.required and v.env not in not_needed:
            problems.append(f"{v.env} is missing or empty")
    bad: set[str] = set()
    try:
        settings = Settings.model_validate(given)
    except ValidationError as exc:
        by_alias = {v.env: v.name for v in variables()}
        bad = {by_alias.get(str(error["loc"][0]), str(error["loc"][0])) for error in exc.errors()}
        # The other values are still checked, so one run reports every problem.
        settings = Settings.model_validate({k: value for k, value in given.items() if k not in bad})
    problems += [v.problem(given[v.name]) for v in variables() if v.name in bad]
    if database_problem := _database_problem(settings.database_path):
        problems.append(database_problem)
    problems += _model_problems(settings)
    problems += _shard_problems(settings)
    if problems:
        raise SettingsError(problems)
    return settings


def documented_settings() -> list[tuple[str, str, bool]]:
    """(variable, default, required) for every setting, for docs and `check`."""
    return [(v.env, v.env_value, v.required) for v in variables()]

"""How one setting is declared: its variable, default, one-line doc and the rule a raw value must meet."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, GetCoreSchemaHandler
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema, core_schema


@dataclass(frozen=True)
class Rule:
    """What a value must be, told to the operator as `NAME <phrase> (got 'value')`.

    `parse` turns text from the environment into a value (Python values pass untouched); `check` may refuse
    a parsed value by raising ValueError. Either failing becomes one problem naming the variable.
    """

    phrase: str
    parse: Callable[[str], Any] | None = None
    check: Callable[[Any], Any] | None = None
    show_value: bool = True

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        schema = handler(source)
        if self.check is not None:
            schema = core_schema.no_info_after_validator_function(self.check, schema)
        if self.parse is not None:
            parse = self.parse
            schema = core_schema.no_info_before_validator_function(
                lambda value: parse(value.strip()) if isinstance(value, str) else value, schema
            )
        return schema


def one_of(*choices: str) -> Rule:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"not one of {choices}")
        return value

    phrase = "must be " + ", ".join(choices[:-1]) + " or " + choices[-1]
    return Rule(phrase, check=check, show_value=False)


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def _number(text: str) -> float:
    value = float(text)
    if math.isnan(value):
        raise ValueError("not a number")
    return value


def _ids(text: str) -> frozenset[int]:
    return frozenset(int(part) for part in text.replace(",", " ").split())


def _sync_choice(text: str) -> bool | None:
    return None if text.lower() == "auto" else _flag(text)


def _positive(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise ValueError("not positive")
    return value


def _shard_ids(text: str) -> frozenset[int]:
    """`0-3`, `0,1` or `0-1,4`: each id once."""
    ids: list[int] = []
    for part in text.replace(" ", "").split(","):
        low, dash, high = part.partition("-")
        first, last = int(low), int(high) if dash else int(low)
        if first < 0 or last < first:
            raise ValueError("bad range")
        ids += range(first, last + 1)
    if len(set(ids)) != len(ids):
        raise ValueError("an id listed twice")
    return frozenset(ids)


PositiveInt = Annotated[int, Field(gt=0), Rule("must be a positive whole number", parse=int)]
NonNegativeInt = Annotated[int, Field(ge=0), Rule("must be a whole number, zero or more", parse=int)]
AtLeast1000 = Annotated[int, Field(ge=1000), Rule("must be a whole number, at least 1000", parse=int)]
PositiveFloat = Annotated[float, Field(gt=0), Rule("must be a positive number", parse=_number)]
NonNegativeFloat = Annotated[float, Field(ge=0), Rule("must be a number, zero or more", parse=_number)]
Flag = Annotated[bool, Rule("must be true or false", parse=_flag)]
ServerIds = Annotated[frozenset[int], Rule("must be server ids separated by commas", parse=_ids)]
SyncChoice = Annotated[bool | None, Rule("must be auto, true or false", parse=_sync_choice)]
OptionalPositiveInt = Annotated[
    int | None, Rule("must be a positive whole number", parse=int, check=_positive)
]
ShardIds = Annotated[
    frozenset[int],
    Rule(
        "must be shard ids or ranges separated by commas, each id once, such as 0-3 or 0,1",
        parse=_shard_ids,
    ),
]


def setting(
    env: str,
    default: Any,
    doc: str,
    *,
    details: str = "",
    required: bool = False,
    shown_default: str | None = None,
    model_family: tuple[str, ...] = (),
    any_model_with_base_url: bool = False,
    secret: bool = False,
) -> Any:
    """Declare a setting. `doc` is the one-line meaning (README); `details` adds to it in docs/settings.md.

    `model_family`: name prefixes the official API serves for this job; with OPENAI_BASE_URL set and
    `any_model_with_base_url`, any name passes, since local servers name models freely. A `secret` is left
    out of the repr, so logging the settings never logs it.
    """
    return Field(
        default=default,
        validation_alias=env,
        description=doc,
        repr=not secret,
        json_schema_extra={
            "env": env,
            "details": details,
            "required": required,
            "shown_default": shown_default,
            "model_family": list(model_family),
            "any_model_with_base_url": any_model_with_base_url,
        },
    )


@dataclass(frozen=True)
class Variable:
    """One setting as the loader and the docs see it."""

    name: str
    env: str
    default: Any
    doc: str
    details: str
    required: bool
    shown_default: str | None
    model_family: tuple[str, ...]
    any_model_with_base_url: bool
    rule: Rule | None

    @classmethod
    def of(cls, name: str, info: FieldInfo) -> Variable:
        extra = info.json_schema_extra
        if not isinstance(extra, dict):
            raise TypeError(f"{name} was not declared with setting()")
        family = extra["model_family"]
        rules = [item for item in info.metadata if isinstance(item, Rule)]
        return cls(
            name=name,
            env=str(extra["env"]),
            default=info.default,
            doc=info.description or "",
            details=str(extra["details"]),
            required=bool(extra["required"]),
            shown_default=None if extra["shown_default"] is None else str(extra["shown_default"]),
            model_family=tuple(str(prefix) for prefix in family) if isinstance(family, list) else (),
            any_model_with_base_url=bool(extra["any_model_with_base_url"]),
            rule=rules[-1] if rules else None,
        )

    @property
    def env_value(self) -> str:
        """The default as it would be written in `.env`."""
        value = self.default
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return f"{value:g}"
        if isinstance(value, frozenset):
            return ",".join(str(item) for item in sorted(value))
        return str(value)

    def problem(self, text: str) -> str:
        """The one message for a bad value of this variable."""
        if self.rule is not None and not self.rule.show_value:
            return f"{self.env} {self.rule.phrase}"
        phrase = self.rule.phrase if self.rule else "is not valid"
        return f"{self.env} {phrase} (got {text!r})"

"""The contract a domain signs for every table it keeps: what /forget me, /forget channel and retention do to it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Fate(StrEnum):
    """What /forget me does to a member's rows in a table."""

    DELETED = "deleted"
    PSEUDONYMISED = "pseudonymised"  # the row stays, the member's id in it is replaced or removed
    KEPT = "kept"  # kept on purpose; TablePolicy.why_kept says why, its retention for how long
    NOT_PERSONAL = "not personal"  # the table holds no member's id


class Retention(StrEnum):
    """How long a table's rows live; Privacy turns the first two into cutoffs from the settings."""

    CONVERSATION = "conversation"  # RETENTION_DAYS
    MODERATION = "moderation"  # MODERATION_RETENTION_DAYS
    UNTIL_MODERATED = (
        "until moderated"  # deleted by the moderation drain once judged (or MODERATION_RETENTION_DAYS)
    )
    WHILE_SET = "while set"  # a setting: until the command that set it changes or clears it
    DATABASE = "database"  # for the life of the database


@dataclass(frozen=True)
class TablePolicy:
    """One table, claimed by exactly one owner, with its stated policy."""

    table: str
    holds: str  # what it holds about people, in a few words (docs/privacy.md and the report)
    on_forget_user: Fate
    retention: Retention
    why_kept: str = ""

    def __post_init__(self) -> None:
        if self.on_forget_user is Fate.KEPT and not self.why_kept:
            raise ValueError(f"table {self.table} is kept on /forget me without saying why")


@dataclass(frozen=True)
class Effect:
    """What one request did (or deliberately did not do) to one table's rows, as plain data for the reply."""

    table: str
    fate: Fate
    rows: int
    noun: str  # singular; the reply adds an "s" for other counts
    note: str = ""

    def phrase(self) -> str:
        text = f"{self.rows} {self.noun}{'' if self.rows == 1 else 's'}"
        return f"{text} ({self.note})" if self.note else text


# A cutoff timestamp per retention class: rows made before it are deleted or anonymised. A class missing
# from the mapping is kept (its setting is 0, "keep forever").
Cutoffs = Mapping[Retention, float]


@runtime_checkable
class DataOwner(Protocol):
    """A repository that stores per-user or per-channel data and answers for it, next to its own SQL.

    Privacy calls every registered owner; an owner subclasses this to inherit the no-op capabilities it does
    not need. Each of its tables is declared in `owned_tables`, including tables it deliberately keeps.
    """

    owned_tables: tuple[TablePolicy, ...]

    async def forget_user_data(self, guild_id: int | None, user_id: int) -> Sequence[Effect]:
        """/forget me in one server (`guild_id`), or in every server and DMs (None)."""
        return ()

    async def forget_channel_data(self, channel_id: int) -> Sequence[Effect]:
        """/forget channel: the channel's conversation."""
        return ()

    async def purge_expired_data(self, cutoffs: Cutoffs) -> Sequence[Effect]:
        """The hourly retention purge."""
        return ()


def guild_clause(guild_id: int | None) -> tuple[str, tuple[int, ...]]:
    """SQL (and its parameters) limiting a statement to one server, or to none when `guild_id` is None."""
    if guild_id is None:
        return "1 = 1", ()
    return "guild_id = ?", (guild_id,)

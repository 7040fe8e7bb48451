"""The storage interface the domains use, and `open_store`, which picks the driver from DATABASE_URL."""

from __future__ import annotations

from pathlib import Path

from bot.storage.base import (
    Params,
    Result,
    Row,
    SchemaTooNew,
    Store,
    StoreError,
    Transaction,
    bundled_migrations,
)
from bot.storage.sqlite import SqliteStore
from bot.util.metrics import Metrics

__all__ = [
    "Params",
    "Result",
    "Row",
    "SchemaTooNew",
    "SqliteStore",
    "Store",
    "StoreError",
    "Transaction",
    "bundled_migrations",
    "is_postgres_url",
    "open_store",
]


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


async def open_store(url: str | Path, *, pool_size: int = 10, metrics: Metrics | None = None) -> Store:
    """`postgresql://...` opens PostgreSQL; `sqlite:///path` or a bare path opens SQLite. Migrates both."""
    text = str(url)
    store: Store
    if is_postgres_url(text):
        # Imported here: asyncpg costs 3 MiB resident in every process that runs on SQLite.
        from bot.storage.postgres import PostgresStore

        store = await PostgresStore.open(text, pool_size=pool_size)
    else:
        store = await SqliteStore.open(Path(text.removeprefix("sqlite:///")))
    store.metrics = metrics
    return store

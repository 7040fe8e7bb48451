"""The tables processes coordinate through (leases, cache versions): claimed here as holding nobody's data."""

from __future__ import annotations

from bot.privacy.owner import DataOwner, Fate, Retention, TablePolicy


class ClusterBookkeeping(DataOwner):
    """Which process holds which lease (host:pid), and the version of each server's cached settings."""

    owned_tables = (
        TablePolicy(
            "leases",
            "no member id: which bot process runs a background job",
            Fate.NOT_PERSONAL,
            Retention.DATABASE,
        ),
        TablePolicy(
            "cache_versions",
            "no member id: a counter per server whose cached settings or history changed",
            Fate.NOT_PERSONAL,
            Retention.DATABASE,
        ),
    )

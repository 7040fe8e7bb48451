-- Several bot processes sharing one database (docs/storage.md, "What is shared across processes").

-- Named leases: one process at a time holds each (the retention purge, the outage-queue drain). `holder`
-- is "host:pid:random" for logs; a holder that stops renewing loses the lease once `expires_at` passes.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL
);

-- What another process changed, so its caches drop what they hold of it. The row ('*', 0), made by the
-- first change, counts every change; every other row (a cache scope, a server id or 0 for all) records the
-- count at its last change.
CREATE TABLE cache_versions (
    scope   TEXT    NOT NULL,
    key     INTEGER NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX cache_versions_by_version ON cache_versions (version);

-- A queued message is claimed by one draining process until `claimed_until`; a dead claimer's rows are
-- claimed again after it.
ALTER TABLE moderation_queue ADD COLUMN claimed_by TEXT;
ALTER TABLE moderation_queue ADD COLUMN claimed_until REAL;

-- Which process streams each answer: start-up tells only dead processes' answers they were interrupted.
ALTER TABLE inflight_answers ADD COLUMN process TEXT NOT NULL DEFAULT '';

-- Cost control shared by every bot process on one database (docs/cost.md, "Several processes").

-- In-flight admissions: a call's budget reservation (its worst-case cost) and, once `running`, one of its
-- server's job slots. Rows live while their holder renews them; a crashed holder's rows expire.
CREATE TABLE cost_claims (
    id          INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,           -- 0 for direct messages
    user_id     INTEGER,
    amount      REAL    NOT NULL,           -- USD reserved against the budgets
    running     INTEGER NOT NULL DEFAULT 0, -- 1: holds a job slot; 0: waits for one
    holder      TEXT    NOT NULL,           -- the process that holds it (host:pid:random)
    expires_at  REAL    NOT NULL            -- wall clock; renewed by the holder while it lives
);
CREATE INDEX cost_claims_by_guild ON cost_claims (guild_id, expires_at);
CREATE INDEX cost_claims_by_holder ON cost_claims (holder);

-- Each member's request allowance (a token bucket), per server.
CREATE TABLE rate_buckets (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    tokens      REAL    NOT NULL,
    updated_at  REAL    NOT NULL,           -- wall clock of the last take
    taken       INTEGER NOT NULL DEFAULT 0, -- whether the last take got a token
    PRIMARY KEY (guild_id, user_id)
);
CREATE INDEX rate_buckets_by_age ON rate_buckets (updated_at);

-- The quota circuit breaker, one row once it first opened (none: closed): open while opened_at is set;
-- one probe at a time after the cooldown.
CREATE TABLE quota_breaker (
    name          TEXT    PRIMARY KEY,
    opened_at     REAL,                     -- wall clock; NULL: closed
    outage        INTEGER NOT NULL DEFAULT 0, -- counts outages, so notices are told once per outage
    probe_holder  TEXT,
    probe_until   REAL                      -- a probe whose holder died is given up after this
);

-- Which servers' mod-logs were told about the current outage, so each is told once across processes.
CREATE TABLE quota_notices (
    guild_id  INTEGER NOT NULL,
    outage    INTEGER NOT NULL,
    heard     INTEGER NOT NULL DEFAULT 0,   -- 1: the mod-log (or owner) took the notice
    PRIMARY KEY (guild_id, outage)
);

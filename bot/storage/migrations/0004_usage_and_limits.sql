-- The usage ledger: one row per metered OpenAI call. user_id is NULL once the user ran /forget me
-- (user_hash then carries a keyed hash, so forgetting cannot reset today's budget) or after RETENTION_DAYS.
CREATE TABLE usage_events (
    id                INTEGER PRIMARY KEY,
    created_at        REAL    NOT NULL,
    guild_id          INTEGER NOT NULL,          -- 0 for direct messages and the `check` command
    channel_id        INTEGER,
    user_id           INTEGER,
    user_hash         TEXT,
    command           TEXT    NOT NULL,
    kind              TEXT    NOT NULL,          -- chat | moderation | image | transcription | speech | embedding
    model             TEXT    NOT NULL,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    images            INTEGER NOT NULL DEFAULT 0,
    image_size        TEXT,
    image_quality     TEXT,
    audio_seconds     REAL    NOT NULL DEFAULT 0,
    cost              REAL                        -- USD; NULL when the price table does not know the model
);
-- Budgets sum a server's month and a user's day: both read a time range of one server.
CREATE INDEX usage_by_guild_time ON usage_events (guild_id, created_at);
CREATE INDEX usage_by_user_time ON usage_events (guild_id, user_id, created_at);
CREATE INDEX usage_by_user_hash ON usage_events (user_hash) WHERE user_hash IS NOT NULL;

-- Budgets a server's admins set with /limits budget; NULL means the setting's default.
CREATE TABLE guild_budgets (
    guild_id          INTEGER PRIMARY KEY,
    user_daily_cap    REAL,
    server_monthly_cap REAL,
    updated_by        INTEGER NOT NULL,
    updated_at        REAL    NOT NULL
);

-- Per-command rules a server's admins set with /limits command and /limits role.
CREATE TABLE command_rules (
    guild_id    INTEGER NOT NULL,
    command     TEXT    NOT NULL,                 -- the top-level command name, e.g. 'ask'
    enabled     INTEGER NOT NULL DEFAULT 1,
    role_id     INTEGER,                          -- NULL: no role needed
    updated_by  INTEGER NOT NULL,
    updated_at  REAL    NOT NULL,
    PRIMARY KEY (guild_id, command)
);

-- A random key made once per database, for hashing the user ids of forgotten users.
CREATE TABLE privacy_keys (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

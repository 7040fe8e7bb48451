-- Automatic moderation: per-server policy, actions taken, strikes, and the durable outage queue.
CREATE TABLE moderation_policies (
    guild_id          INTEGER PRIMARY KEY,
    enabled           INTEGER NOT NULL DEFAULT 1,
    thresholds        TEXT    NOT NULL DEFAULT '{}',   -- JSON {category: score}; absent = the endpoint's flag
    actions           TEXT    NOT NULL DEFAULT '{}',   -- JSON {category: log|delete|warn}
    default_action    TEXT    NOT NULL DEFAULT 'warn',
    strikes_to_timeout INTEGER NOT NULL DEFAULT 0,     -- 0: no escalation
    strike_window     REAL    NOT NULL DEFAULT 86400,
    timeout_seconds   REAL    NOT NULL DEFAULT 600,
    exempt_roles      TEXT    NOT NULL DEFAULT '[]',
    exempt_channels   TEXT    NOT NULL DEFAULT '[]',
    modlog_channel_id INTEGER,
    fail_open         INTEGER NOT NULL DEFAULT 0,
    updated_at        REAL    NOT NULL
);

-- One row per flagged message acted on (or logged); the mod-log buttons refer to it by id.
CREATE TABLE moderation_actions (
    id             INTEGER PRIMARY KEY,
    guild_id       INTEGER NOT NULL,
    channel_id     INTEGER NOT NULL,
    message_id     INTEGER NOT NULL,
    author_id      INTEGER NOT NULL,
    source         TEXT    NOT NULL,                   -- message | edit | queue
    categories     TEXT    NOT NULL,                   -- JSON list of the categories acted on
    scores         TEXT    NOT NULL,                   -- JSON {category: score} of those categories
    action         TEXT    NOT NULL,                   -- log | delete | warn
    deleted        INTEGER NOT NULL DEFAULT 0,
    warned         TEXT    NOT NULL DEFAULT '',        -- '' | dm | channel | failed
    timed_out      REAL    NOT NULL DEFAULT 0,         -- seconds of timeout applied
    false_positive INTEGER NOT NULL DEFAULT 0,
    reviewed_by    INTEGER,
    created_at     REAL    NOT NULL
);
CREATE INDEX moderation_actions_by_message ON moderation_actions (message_id);

-- Strikes drive escalation; a "False positive" clears its strike.
CREATE TABLE moderation_strikes (
    id         INTEGER PRIMARY KEY,
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    action_id  INTEGER NOT NULL REFERENCES moderation_actions (id) ON DELETE CASCADE,
    created_at REAL    NOT NULL,
    cleared_at REAL
);
CREATE INDEX moderation_strikes_by_user ON moderation_strikes (guild_id, user_id, created_at);

-- Channel messages seen while the Moderation endpoint was failing; drained when it recovers.
CREATE TABLE moderation_queue (
    id          INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    channel_id  INTEGER NOT NULL,
    message_id  INTEGER NOT NULL,
    subject     TEXT    NOT NULL,                      -- JSON of the message as moderation needs it
    attempts    INTEGER NOT NULL DEFAULT 0,
    enqueued_at REAL    NOT NULL
);
CREATE INDEX moderation_queue_order ON moderation_queue (id);

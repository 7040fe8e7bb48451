-- /recall: servers that turned it on, and one embedding per indexed message (float32 little-endian blob).
CREATE TABLE recall_servers (
    guild_id    INTEGER PRIMARY KEY,
    enabled_by  INTEGER NOT NULL,          -- 0 once that member used /forget me
    enabled_at  REAL    NOT NULL
);

CREATE TABLE recall_vectors (
    message_id        INTEGER PRIMARY KEY,
    guild_id          INTEGER NOT NULL,
    channel_id        INTEGER NOT NULL,
    parent_channel_id INTEGER NOT NULL DEFAULT 0,   -- a thread's channel; 0 for a channel's own message
    author_id         INTEGER NOT NULL,
    author_name       TEXT    NOT NULL DEFAULT '',
    created_at        REAL    NOT NULL,
    excerpt           TEXT    NOT NULL,             -- the start of the message, quoted back in results
    model             TEXT    NOT NULL,
    vector            BLOB    NOT NULL
);
-- Search loads one server's vectors; deletion goes by channel, author or age.
CREATE INDEX recall_by_guild ON recall_vectors (guild_id, model);
CREATE INDEX recall_by_channel ON recall_vectors (channel_id);
CREATE INDEX recall_by_author ON recall_vectors (author_id);
CREATE INDEX recall_by_age ON recall_vectors (created_at);

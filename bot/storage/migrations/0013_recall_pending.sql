-- /recall: messages whose embedding request failed, kept until a retry indexes them (or they are deleted).
CREATE TABLE recall_pending (
    message_id        INTEGER PRIMARY KEY,
    guild_id          INTEGER NOT NULL,
    channel_id        INTEGER NOT NULL,
    parent_channel_id INTEGER NOT NULL DEFAULT 0,
    author_id         INTEGER NOT NULL,
    author_name       TEXT    NOT NULL DEFAULT '',
    created_at        REAL    NOT NULL,          -- the message's time, for the retention purge
    text              TEXT    NOT NULL,          -- what is sent to the embedding model
    attempts          INTEGER NOT NULL,          -- failed requests so far
    next_attempt_at   REAL    NOT NULL
);
-- The indexer takes what is due; deletion goes by server, channel, author or age.
CREATE INDEX recall_pending_due ON recall_pending (next_attempt_at);
CREATE INDEX recall_pending_by_guild ON recall_pending (guild_id);
CREATE INDEX recall_pending_by_channel ON recall_pending (channel_id);
CREATE INDEX recall_pending_by_author ON recall_pending (author_id);
CREATE INDEX recall_pending_by_age ON recall_pending (created_at);

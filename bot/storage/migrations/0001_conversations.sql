-- Conversation memory: one row per turn, keyed by channel (a thread is a channel of its own).
CREATE TABLE turns (
    id          INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,          -- 0 for direct messages
    channel_id  INTEGER NOT NULL,
    author_id   INTEGER NOT NULL,          -- the asking member; the bot's id for assistant turns
    author_name TEXT    NOT NULL DEFAULT '',
    role        TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
    content     TEXT    NOT NULL,
    tokens      INTEGER NOT NULL CHECK (tokens >= 0),
    created_at  REAL    NOT NULL
);
-- Context assembly reads the newest turns of one channel: this index keeps it independent of length.
CREATE INDEX turns_by_channel ON turns (channel_id, id);
CREATE INDEX turns_by_author ON turns (guild_id, author_id);
CREATE INDEX turns_by_age ON turns (created_at);

-- Per-channel system prompt set with /persona.
CREATE TABLE channel_personas (
    channel_id  INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    persona     TEXT    NOT NULL,
    set_by      INTEGER NOT NULL,
    updated_at  REAL    NOT NULL
);

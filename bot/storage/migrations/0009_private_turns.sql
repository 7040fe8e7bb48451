-- A private /ask is remembered for its asker only: its turns carry the asker's id (0: the channel's shared memory).
ALTER TABLE turns ADD COLUMN private_to INTEGER NOT NULL DEFAULT 0;
-- Context assembly reads one memory of a channel (shared, or one member's private turns) newest first.
CREATE INDEX turns_by_memory ON turns (channel_id, private_to, id);

-- The chat model an admin chose for a server (channel_id 0) or one channel (/model set).
CREATE TABLE chat_model_choices (
    guild_id    INTEGER NOT NULL,
    channel_id  INTEGER NOT NULL,          -- 0: the server's default
    model       TEXT    NOT NULL,
    set_by      INTEGER NOT NULL,          -- 0 once that member used /forget me
    updated_at  REAL    NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
);

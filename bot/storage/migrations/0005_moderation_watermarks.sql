-- Per channel, the newest message id whose moderation verdict was acted on, with every older message
-- of the channel also handled. Start-up and reconnects catch up on the channel's history after it.
CREATE TABLE moderation_watermarks (
    channel_id  INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    message_id  INTEGER NOT NULL,
    updated_at  REAL    NOT NULL
);

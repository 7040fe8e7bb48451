-- Channels where voice messages are transcribed as they arrive (/transcribe auto enabled:true).
-- A row means "on"; turning it off deletes the row.
CREATE TABLE auto_transcribe_channels (
    channel_id  INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    enabled_by  INTEGER NOT NULL,
    updated_at  REAL    NOT NULL
);
CREATE INDEX auto_transcribe_by_guild ON auto_transcribe_channels (guild_id);

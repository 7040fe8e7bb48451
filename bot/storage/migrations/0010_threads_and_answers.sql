-- /ask thread:true: threads and forum posts the bot started (members talk there without mentions), each
-- server's choice of that mode, and the answers whose Regenerate and Continue buttons outlive a restart.
CREATE TABLE chat_threads (
    thread_id   INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    parent_id   INTEGER NOT NULL,
    started_by  INTEGER NOT NULL,          -- 0 once that member used /forget me
    model       TEXT    NOT NULL,
    created_at  REAL    NOT NULL
);
CREATE INDEX chat_threads_by_starter ON chat_threads (started_by);

CREATE TABLE thread_settings (
    guild_id      INTEGER PRIMARY KEY,
    every_message INTEGER NOT NULL,        -- 1: every member message in a bot thread is a turn
    set_by        INTEGER NOT NULL,        -- 0 once that member used /forget me
    updated_at    REAL    NOT NULL
);

CREATE TABLE chat_answers (
    answer_key  INTEGER PRIMARY KEY,       -- the interaction id that produced the answer (in its buttons)
    guild_id    INTEGER NOT NULL,
    channel_id  INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    user_name   TEXT    NOT NULL,
    prompt      TEXT    NOT NULL,
    answer      TEXT    NOT NULL,
    truncated   INTEGER NOT NULL,
    private     INTEGER NOT NULL,
    created_at  REAL    NOT NULL
);
CREATE INDEX chat_answers_by_user ON chat_answers (user_id);
CREATE INDEX chat_answers_by_channel ON chat_answers (channel_id);
CREATE INDEX chat_answers_by_age ON chat_answers (created_at);

-- Answers streaming right now: after a crash, start-up edits each one (its token lives 15 minutes) to say
-- the answer was interrupted. A row is inserted when an answer starts and deleted when it ends.
CREATE TABLE inflight_answers (
    id             INTEGER PRIMARY KEY,
    application_id INTEGER NOT NULL,
    token          TEXT    NOT NULL,
    message_id     INTEGER,                            -- NULL: the interaction's original response
    started_at     REAL    NOT NULL
);

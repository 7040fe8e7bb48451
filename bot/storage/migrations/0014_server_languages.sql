-- /settings language: the language a server's admins forced for its public posts (mod-log, notices,
-- welcome, answers' framing). No row: the server's own preferred locale.
CREATE TABLE server_languages (
    guild_id    INTEGER PRIMARY KEY,
    language    TEXT    NOT NULL,          -- a catalog language: en, ko
    set_by      INTEGER NOT NULL,          -- 0 once that member used /forget me
    updated_at  REAL    NOT NULL
);

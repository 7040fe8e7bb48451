-- Cost to the cent: prompt-cache hits and reasoning (both inside the token counts above them), what each
-- row's cost was computed from, and the budget alerts already sent (so a restart does not send them again).
ALTER TABLE usage_events ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;     -- of prompt_tokens
ALTER TABLE usage_events ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;  -- of completion_tokens
ALTER TABLE usage_events ADD COLUMN priced_from TEXT;  -- tokens | image | minute | characters | free; NULL: unpriced

CREATE TABLE budget_alerts (
    guild_id   INTEGER NOT NULL,
    month      TEXT    NOT NULL,          -- 'YYYY-MM' (UTC)
    threshold  INTEGER NOT NULL,          -- percent of the monthly budget: 50, 80 or 100
    sent_at    REAL    NOT NULL,
    delivered  INTEGER NOT NULL,          -- 0: neither a mod-log channel nor the owner's DMs took it
    PRIMARY KEY (guild_id, month, threshold)
);

-- Every message an answer is shown in (an answer over 2,000 characters spans several), so Regenerate
-- rewrites it whole; and where it came from: an /ask interaction or a reply to an @mention.
ALTER TABLE chat_answers ADD COLUMN message_ids TEXT NOT NULL DEFAULT '';  -- comma-separated, in order
ALTER TABLE chat_answers ADD COLUMN origin TEXT NOT NULL DEFAULT 'ask';    -- 'ask' or 'mention'

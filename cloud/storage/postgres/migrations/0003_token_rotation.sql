-- Token rotation: a staged token, promoted to token_hash by its first use (SQLite migration 2).
-- Partial and unique: only agents mid-rotation have an entry, and authenticate looks a
-- presented hash up in both columns. Heartbeats never touch either column, so their updates
-- of the agent row stay HOT.
ALTER TABLE agents ADD COLUMN next_token_hash text;
CREATE UNIQUE INDEX agents_next_token ON agents (next_token_hash)
    WHERE next_token_hash IS NOT NULL;

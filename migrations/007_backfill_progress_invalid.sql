-- Entries the source listed that were not valid DIDs, per collection, so that none is lost silently.
ALTER TABLE backfill_progress ADD COLUMN IF NOT EXISTS invalid_count BIGINT NOT NULL DEFAULT 0;

-- How many imported DIDs were new to the index, failure state, and the source's size estimate.
ALTER TABLE backfill_progress ADD COLUMN IF NOT EXISTS new_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE backfill_progress ADD COLUMN IF NOT EXISTS last_error TEXT;
ALTER TABLE backfill_progress ADD COLUMN IF NOT EXISTS attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE backfill_progress ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE backfill_progress ADD COLUMN IF NOT EXISTS next_retry_at TIMESTAMPTZ;
ALTER TABLE backfill_progress ADD COLUMN IF NOT EXISTS estimated_total BIGINT;

-- The original design's progress table (README, Design), unchanged: later migrations only add columns.
CREATE TABLE IF NOT EXISTS backfill_progress (
    collection TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    cursor TEXT NOT NULL DEFAULT '',
    imported_count BIGINT NOT NULL DEFAULT 0,
    completed_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

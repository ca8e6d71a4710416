-- The live stream's durable state, mirrored from the index (where the cursor is saved atomically
-- with the pairs it covers) so that status survives the server being down.
CREATE TABLE IF NOT EXISTS live_stream (
    url TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    cursor BIGINT NOT NULL,
    event_time TIMESTAMPTZ,
    accounts_deleted BIGINT NOT NULL DEFAULT 0,
    outdated_cursors BIGINT NOT NULL DEFAULT 0,
    catch_up_since TIMESTAMPTZ,
    catch_up_reason TEXT,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Pairs live indexing added and removed, per collection.
CREATE TABLE IF NOT EXISTS live_collection (
    collection TEXT PRIMARY KEY,
    pairs_added BIGINT NOT NULL DEFAULT 0,
    pairs_removed BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

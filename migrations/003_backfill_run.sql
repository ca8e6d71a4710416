-- The intent of the current (or last) run, so a restarted server can resume exactly that run.
CREATE TABLE IF NOT EXISTS backfill_run (
    id SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    source TEXT NOT NULL,
    mode TEXT NOT NULL,
    collections TEXT[],
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ended_at TIMESTAMPTZ
);

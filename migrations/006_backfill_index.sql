-- The identity of the index this progress was recorded against, so that a server notices a lost or
-- replaced index at startup, and the rows it marked to import again because of that.
CREATE TABLE IF NOT EXISTS backfill_index (
    id SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    identity TEXT NOT NULL,
    replaced_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE backfill_progress ADD COLUMN IF NOT EXISTS reimport BOOLEAN NOT NULL DEFAULT false;

/** Applies the SQL files in `migrations/` once each, in name order, recording them in `schema_migrations`. */
import type { Sql } from "postgres";

/** A migration: its file name and SQL text. */
export interface Migration {
  readonly name: string;
  readonly sql: string;
}

/** Reads `*.sql` from a directory, sorted by name. */
export async function loadMigrations(dir: URL): Promise<Migration[]> {
  const out: Migration[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile || !entry.name.endsWith(".sql")) continue;
    out.push({ name: entry.name, sql: await Deno.readTextFile(new URL(entry.name, dir)) });
  }
  return out.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/** The migrations shipped with the service. */
export const MIGRATIONS_DIR = new URL("../../migrations/", import.meta.url);

/** Applies pending migrations in one transaction; returns the names applied now. Idempotent. */
export async function migrate(sql: Sql, migrations: readonly Migration[]): Promise<string[]> {
  return await sql.begin(async (tx) => {
    // Serialises concurrent migrators on the same database.
    await tx`SELECT pg_advisory_xact_lock(hashtext('backfill:migrate:' || current_schema()))`;
    await tx`CREATE TABLE IF NOT EXISTS schema_migrations (
      name TEXT PRIMARY KEY,
      applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )`;
    const done = new Set(
      (await tx`SELECT name FROM schema_migrations`).map((r) => r.name as string),
    );
    const applied: string[] = [];
    for (const m of migrations) {
      if (done.has(m.name)) continue;
      await tx.unsafe(m.sql);
      await tx`INSERT INTO schema_migrations (name) VALUES (${m.name})`;
      applied.push(m.name);
    }
    return applied;
  });
}

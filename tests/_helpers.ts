/** Shared test fixtures: a Postgres schema per suite, LevelDB in a temp directory, quiet loggers. */
import type { Sql } from "postgres";
import { IndexStore } from "../lib/index_store.ts";
import { loadMigrations, migrate, MIGRATIONS_DIR } from "../lib/migrate.ts";
import { createSql, ProgressStore } from "../lib/progress_store.ts";

/** The real Postgres the tests use. */
export const TEST_DATABASE_URL = Deno.env.get("TEST_DATABASE_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";

/** A fresh schema (migrated) and a client bound to it; `drop()` removes both. */
export interface TestDb {
  readonly sql: Sql;
  readonly schema: string;
  readonly progress: ProgressStore;
  drop(): Promise<void>;
}

/** Creates a migrated schema with a unique name. */
export async function testDb(label = "t", opts: { migrate?: boolean } = {}): Promise<TestDb> {
  const schema = `test_${label.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${crypto.randomUUID().slice(0, 8)}`;
  const admin = createSql(TEST_DATABASE_URL, { max: 1 });
  await admin.unsafe(`CREATE SCHEMA ${schema}`);
  await admin.end();
  const sql = createSql(TEST_DATABASE_URL, { max: 4, schema });
  if (opts.migrate ?? true) await migrate(sql, await loadMigrations(MIGRATIONS_DIR));
  return {
    sql,
    schema,
    progress: new ProgressStore({ sql }),
    async drop() {
      await sql.end({ timeout: 1 });
      const a = createSql(TEST_DATABASE_URL, { max: 1 });
      await a.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await a.end();
    },
  };
}

/** A LevelDB index in a new temp directory; `cleanup()` closes and removes it. */
export async function testIndex(): Promise<{ index: IndexStore; dir: string; cleanup(): Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "backfill-index-" });
  const index = await IndexStore.open({ path: dir, cacheSize: 1 << 20, writeBufferSize: 1 << 20 });
  return {
    index,
    dir,
    async cleanup() {
      await index.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

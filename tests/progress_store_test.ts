/** Tests for lib/progress/store.ts and lib/progress/migrate.ts against the real Postgres, one schema per test. */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { loadMigrations, migrate, MIGRATIONS_DIR } from "../lib/progress/migrate.ts";
import { createSql, isConnectionError, ProgressStore } from "../lib/progress/store.ts";
import { TEST_DATABASE_URL, type TestDb, testDb, until } from "./_helpers.ts";

interface ColumnInfo {
  column_name: string;
  data_type: string;
  is_nullable: string;
  column_default: string | null;
}

async function columns(db: TestDb): Promise<ColumnInfo[]> {
  const rows = await db.sql<ColumnInfo[]>`
    SELECT column_name, data_type, is_nullable, column_default
    FROM information_schema.columns
    WHERE table_schema = ${db.schema} AND table_name = 'backfill_progress'
    ORDER BY ordinal_position`;
  return rows.map((r) => ({ ...r }));
}

// The original design's table (README, Design), column for column.
const DESIGN_COLUMNS: ColumnInfo[] = [
  { column_name: "collection", data_type: "text", is_nullable: "NO", column_default: null },
  { column_name: "source", data_type: "text", is_nullable: "NO", column_default: null },
  { column_name: "cursor", data_type: "text", is_nullable: "NO", column_default: "''::text" },
  { column_name: "imported_count", data_type: "bigint", is_nullable: "NO", column_default: "0" },
  {
    column_name: "completed_at",
    data_type: "timestamp with time zone",
    is_nullable: "YES",
    column_default: null,
  },
  {
    column_name: "created_at",
    data_type: "timestamp with time zone",
    is_nullable: "NO",
    column_default: "now()",
  },
];

// ---- migrate ----

Deno.test("migrate: applies every migration once, records them, and is idempotent", async () => {
  {
    await using db = await testDb("progress", { migrate: false });
    const migrations = await loadMigrations(MIGRATIONS_DIR);
    const names = migrations.map((m) => m.name);
    assert(names.length >= 2, `migrations: ${names}`);
    assertEquals(names, [...names].sort());
    assertEquals(names[0], "001_backfill_progress.sql");
    assertEquals(await migrate(db.sql, migrations), names);
    assertEquals(await migrate(db.sql, migrations), []);
    assertEquals(await migrate(db.sql, migrations), []);
    const recorded = await db.sql`SELECT name, applied_at FROM schema_migrations ORDER BY name`;
    assertEquals(recorded.map((r) => r.name), names);
    for (const r of recorded) assert(r.applied_at instanceof Date);
  }
});

Deno.test("migrate: a new migration is applied on top of recorded ones", async () => {
  {
    await using db = await testDb("progress", { migrate: false });
    const migrations = await loadMigrations(MIGRATIONS_DIR);
    assertEquals(await migrate(db.sql, migrations.slice(0, 1)), [migrations[0].name]);
    assertEquals(await migrate(db.sql, migrations), migrations.slice(1).map((m) => m.name));
    const extra = { name: "999_test_extra.sql", sql: "CREATE TABLE test_extra (x INT)" };
    assertEquals(await migrate(db.sql, [...migrations, extra]), ["999_test_extra.sql"]);
    assertEquals(await migrate(db.sql, [...migrations, extra]), []);
  }
});

Deno.test("migrate: concurrent migrators apply each migration exactly once", async () => {
  {
    await using db = await testDb("progress", { migrate: false });
    const migrations = await loadMigrations(MIGRATIONS_DIR);
    const others = [0, 1, 2].map(() => createSql(TEST_DATABASE_URL, { max: 1, schema: db.schema }));
    try {
      const results = await Promise.all(others.map((sql) => migrate(sql, migrations)));
      assertEquals(results.flat().sort(), migrations.map((m) => m.name).sort());
    } finally {
      await Promise.all(others.map((sql) => sql.end({ timeout: 1 })));
    }
    const recorded = await db.sql`SELECT count(*)::int AS n FROM schema_migrations`;
    assertEquals(recorded[0].n, migrations.length);
  }
});

Deno.test("migrate: a failing migration rolls back and records nothing", async () => {
  {
    await using db = await testDb("progress", { migrate: false });
    const migrations = await loadMigrations(MIGRATIONS_DIR);
    const bad = {
      name: "998_bad.sql",
      sql: "CREATE TABLE half_done (x INT); SELECT nonsense FROM",
    };
    await assertRejects(migrate(db.sql, [...migrations, bad]));
    const tables = await db.sql`
      SELECT table_name FROM information_schema.tables WHERE table_schema = ${db.schema}`;
    assertEquals(tables.map((t) => t.table_name), []);
    assertEquals(await migrate(db.sql, migrations), migrations.map((m) => m.name));
  }
});

Deno.test("migrate: 001 creates exactly the original design's table", async () => {
  {
    await using db = await testDb("progress", { migrate: false });
    const [first] = await loadMigrations(MIGRATIONS_DIR);
    await migrate(db.sql, [first]);
    assertEquals(await columns(db), DESIGN_COLUMNS);
    const pk = await db.sql`
      SELECT kcu.column_name
      FROM information_schema.table_constraints tc
      JOIN information_schema.key_column_usage kcu
        ON tc.constraint_name = kcu.constraint_name AND tc.table_schema = kcu.table_schema
      WHERE tc.table_schema = ${db.schema} AND tc.table_name = 'backfill_progress'
        AND tc.constraint_type = 'PRIMARY KEY'`;
    assertEquals(pk.map((r) => r.column_name), ["collection"]);
  }
});

Deno.test("migrate: later migrations only add columns after the original design's", async () => {
  {
    await using db = await testDb("progress");
    const cols = await columns(db);
    assertEquals(cols.slice(0, DESIGN_COLUMNS.length), DESIGN_COLUMNS);
    const added = Object.fromEntries(
      cols.slice(DESIGN_COLUMNS.length).map((c) => [c.column_name, c]),
    );
    assertEquals(Object.keys(added).sort(), [
      "attempts",
      "estimated_total",
      "invalid_count",
      "last_error",
      "new_count",
      "next_retry_at",
      "reimport",
      "updated_at",
    ]);
    assertEquals(added.new_count.data_type, "bigint");
    assertEquals(added.estimated_total.data_type, "bigint");
    assertEquals(added.attempts.data_type, "integer");
    assertEquals(added.last_error.is_nullable, "YES");
    assertEquals(added.next_retry_at.is_nullable, "YES");
    assertEquals([added.reimport.data_type, added.reimport.is_nullable], ["boolean", "NO"]);
    assertEquals([added.invalid_count.data_type, added.invalid_count.is_nullable], [
      "bigint",
      "NO",
    ]);
  }
});

// ---- ProgressStore ----

Deno.test("seed: inserts new rows with defaults and skips existing ones", async () => {
  {
    await using fx = await testDb("progress");
    const { progress } = fx;
    assertEquals(await progress.seed([], "bsky.network"), 0);
    assertEquals(await progress.seed(["b.b.b", "a.a.a"], "bsky.network"), 2);
    const rows = await progress.list();
    assertEquals(rows.map((r) => r.collection), ["a.a.a", "b.b.b"]);
    const a = rows[0];
    assertEquals(
      {
        source: a.source,
        cursor: a.cursor,
        imported: a.imported,
        new: a.new,
        completedAt: a.completedAt,
        lastError: a.lastError,
        attempts: a.attempts,
        nextRetryAt: a.nextRetryAt,
        estimatedTotal: a.estimatedTotal,
      },
      {
        source: "bsky.network",
        cursor: "",
        imported: 0,
        new: 0,
        completedAt: null,
        lastError: null,
        attempts: 0,
        nextRetryAt: null,
        estimatedTotal: null,
      },
    );
    assert(a.createdAt instanceof Date && a.updatedAt instanceof Date);
    // Overlap: only the new one counts.
    assertEquals(await progress.seed(["a.a.a", "c.c.c"], "bsky.network"), 1);
    assertEquals((await progress.list()).length, 3);
  }
});

Deno.test("seed: re-seeding returns 0 and keeps cursor, counts, completion and source", async () => {
  {
    await using fx = await testDb("progress");
    const { progress } = fx;
    await progress.seed(["a.a.a", "b.b.b"], "bsky.network");
    await progress.saveCheckpoint("a.a.a", {
      source: "bsky.network",
      cursor: "cur-7",
      imported: 7000,
      new: 12,
    });
    await progress.complete("b.b.b", {
      source: "bsky.network",
      cursor: "final",
      imported: 3,
      new: 3,
    });
    const before = await progress.list();
    assertEquals(await progress.seed(["a.a.a", "b.b.b"], "other.relay"), 0);
    assertEquals(await progress.list(), before);
    const a = before[0];
    assertEquals([a.source, a.cursor, a.imported, a.new], ["bsky.network", "cur-7", 7000, 12]);
  }
});

Deno.test("seed: more than one chunk of collections", async () => {
  {
    await using fx = await testDb("progress");
    const { progress } = fx;
    const many = Array.from({ length: 2345 }, (_, i) => `com.example.c${i}`);
    assertEquals(await progress.seed(many, "bsky.network"), 2345);
    assertEquals(await progress.seed(many, "bsky.network"), 0);
    assertEquals((await progress.list()).length, 2345);
  }
});

Deno.test("seed: a collection listed twice in one call is inserted once", async () => {
  {
    await using fx = await testDb("progress");
    const { progress } = fx;
    assertEquals(await progress.seed(["a.a.a", "a.a.a", "b.b.b"], "bsky.network"), 2);
    assertEquals((await progress.list()).map((r) => r.collection), ["a.a.a", "b.b.b"]);
  }
});

Deno.test("counts come back as JS numbers, beyond 32 bits", async () => {
  {
    await using db = await testDb("progress");
    const { progress } = db;
    await progress.seed(["a.a.a", "b.b.b"], "bsky.network");
    const big = 30_000_000_123;
    await progress.saveCheckpoint("a.a.a", {
      source: "s",
      cursor: "c",
      imported: big,
      new: big - 1,
    });
    await progress.saveCheckpoint("b.b.b", { source: "s", cursor: "c", imported: 5, new: 2 });
    await progress.setEstimates(new Map([["a.a.a", 61_000_000_000]]));
    const a = (await progress.get("a.a.a"))!;
    assertEquals(typeof a.imported, "number");
    assertEquals(typeof a.new, "number");
    assertEquals(typeof a.attempts, "number");
    assertEquals(typeof a.estimatedTotal, "number");
    assertEquals([a.imported, a.new, a.estimatedTotal], [big, big - 1, 61_000_000_000]);
    const rows = await progress.list();
    const sum = rows.reduce((n, r) => n + r.imported, 0);
    assertEquals(sum, big + 5, "adding row counts is numeric, not string concatenation");
    // The same total computed by Postgres, for comparison.
    const [pg] = await db.sql`SELECT SUM(imported_count) AS s FROM backfill_progress`;
    assertEquals(Number(pg.s), sum);
  }
});

Deno.test("get: a missing collection is undefined", async () => {
  {
    await using fx = await testDb("progress");
    const { progress } = fx;
    assertEquals(await progress.get("no.such.thing"), undefined);
  }
});

Deno.test("saveCheckpoint: updates cursor, counts, source and updated_at only", async () => {
  {
    await using fx = await testDb("progress");
    const { progress } = fx;
    await progress.seed(["a.a.a"], "bsky.network");
    const before = (await progress.get("a.a.a"))!;
    await until(() => Date.now() > before.updatedAt.getTime(), {
      what: "the clock to pass the row's updated_at",
    });
    await progress.saveCheckpoint("a.a.a", {
      source: "relay2.example",
      cursor: "abc",
      imported: 10,
      new: 4,
    });
    const after = (await progress.get("a.a.a"))!;
    assertEquals(
      [after.source, after.cursor, after.imported, after.new, after.completedAt],
      ["relay2.example", "abc", 10, 4, null],
    );
    assert(after.updatedAt > before.updatedAt, "updated_at moves");
    assertEquals(after.createdAt, before.createdAt);
    // A checkpoint for a collection without a row does nothing.
    await progress.saveCheckpoint("zz.zz.zz", { source: "s", cursor: "c", imported: 1, new: 1 });
    assertEquals(await progress.get("zz.zz.zz"), undefined);
  }
});

Deno.test("fail, startAttempt and complete", async () => {
  {
    await using fx = await testDb("progress");
    const { progress } = fx;
    await progress.seed(["a.a.a"], "bsky.network");
    await progress.startAttempt("a.a.a");
    await progress.startAttempt("a.a.a");
    const retryAt = new Date("2030-01-02T03:04:05.000Z");
    await progress.fail("a.a.a", "x".repeat(5000), retryAt);
    let row = (await progress.get("a.a.a"))!;
    assertEquals(row.attempts, 2);
    assertEquals(row.lastError?.length, 2000, "error text is capped");
    assertEquals(row.nextRetryAt?.toISOString(), retryAt.toISOString());
    assertEquals(row.completedAt, null);

    await progress.complete("a.a.a", {
      source: "bsky.network",
      cursor: "last",
      imported: 9,
      new: 1,
    });
    row = (await progress.get("a.a.a"))!;
    assert(row.completedAt instanceof Date);
    assertEquals(
      [row.cursor, row.imported, row.new, row.lastError, row.nextRetryAt, row.attempts],
      ["last", 9, 1, null, null, 2],
    );
  }
});

Deno.test("restart: clears progress, errors and attempts, and switches the source", async () => {
  {
    await using fx = await testDb("progress");
    const { progress } = fx;
    await progress.seed(["a.a.a", "b.b.b"], "bsky.network");
    await progress.startAttempt("a.a.a");
    await progress.fail("a.a.a", "boom", new Date(Date.now() + 60_000));
    await progress.complete("a.a.a", {
      source: "bsky.network",
      cursor: "end",
      imported: 50,
      new: 5,
    });
    await progress.saveCheckpoint("b.b.b", {
      source: "bsky.network",
      cursor: "k",
      imported: 1,
      new: 1,
    });
    await progress.restart("a.a.a", "relay.other");
    const a = (await progress.get("a.a.a"))!;
    assertEquals(
      [
        a.source,
        a.cursor,
        a.imported,
        a.new,
        a.completedAt,
        a.lastError,
        a.nextRetryAt,
        a.attempts,
      ],
      ["relay.other", "", 0, 0, null, null, null, 0],
    );
    // Other rows are untouched.
    const b = (await progress.get("b.b.b"))!;
    assertEquals([b.source, b.cursor, b.imported], ["bsky.network", "k", 1]);
  }
});

Deno.test("setEstimates: sets known collections, ignores unknown ones, empty is a no-op", async () => {
  {
    await using fx = await testDb("progress");
    const { progress } = fx;
    await progress.seed(["a.a.a", "b.b.b", "c.c.c"], "bsky.network");
    await progress.setEstimates(new Map());
    await progress.setEstimates(new Map([["a.a.a", 28_000_000], ["b.b.b", 0], ["x.x.x", 5]]));
    const rows = await progress.list();
    assertEquals(rows.map((r) => [r.collection, r.estimatedTotal]), [
      ["a.a.a", 28_000_000],
      ["b.b.b", 0],
      ["c.c.c", null],
    ]);
    assertEquals(await progress.get("x.x.x"), undefined);
    // Replacing an estimate.
    await progress.setEstimates(new Map([["a.a.a", 29_000_000]]));
    assertEquals((await progress.get("a.a.a"))!.estimatedTotal, 29_000_000);
  }
});

Deno.test("setEstimates: more than one chunk", async () => {
  {
    await using fx = await testDb("progress");
    const { progress } = fx;
    const many = Array.from({ length: 1500 }, (_, i) => `com.example.c${i}`);
    await progress.seed(many, "bsky.network");
    await progress.setEstimates(new Map(many.map((c, i) => [c, i * 10])));
    const rows = await progress.list();
    const byName = new Map(rows.map((r) => [r.collection, r.estimatedTotal]));
    assertEquals(byName.get("com.example.c0"), 0);
    assertEquals(byName.get("com.example.c1499"), 14990);
    assert(rows.every((r) => typeof r.estimatedTotal === "number"));
  }
});

Deno.test("retrying: a non-connection error is thrown at once; connection codes are recognised", async () => {
  {
    await using fx = await testDb("progress");
    const { progress } = fx;
    let calls = 0;
    await assertRejects(
      progress.retrying("x", () => {
        calls++;
        return Promise.reject(Object.assign(new Error("syntax"), { code: "42601" }));
      }),
      /syntax/,
    );
    assertEquals(calls, 1);
    let tries = 0;
    const got = await progress.retrying("y", () => {
      tries++;
      if (tries < 3) {
        return Promise.reject(Object.assign(new Error("refused"), { code: "ECONNREFUSED" }));
      }
      return Promise.resolve("ok");
    });
    assertEquals([got, tries], ["ok", 3]);
  }
  assertEquals(isConnectionError({ code: "57P01" }), true);
  assertEquals(isConnectionError({ code: "CONNECTION_CLOSED" }), true);
  assertEquals(isConnectionError({ code: "23505" }), false);
  assertEquals(isConnectionError(new Error("x")), false);
  assertEquals(isConnectionError(undefined), false);
});

Deno.test("ping works on a live database", async () => {
  {
    await using fx = await testDb("progress");
    const { sql } = fx;
    await new ProgressStore({ sql }).ping();
  }
});

import { assert, assertEquals } from "./_assert.ts";
import { BusyError } from "../lib/util/errors.ts";
import type { IndexStore } from "../lib/index/store.ts";
import { createSql } from "../lib/progress/store.ts";
import { takeRunLock } from "../lib/progress/run_lock.ts";
import type { SimRelay } from "../lib/sim/relay.ts";
import { deadline, sleep } from "../lib/util/async.js";
import {
  indexDids,
  pagesReach,
  proxiedBackfillFixture as fixture,
  TEST_DATABASE_URL,
  testBackfiller,
  type TestDb,
  testDb,
  testIndex,
  until,
} from "./_helpers.ts";
import { startPgProxy } from "./_pg_proxy.ts";
import { backfillThroughPgRestart, checkExact, readIndex, readRows } from "./_child.ts";

async function assertExact(relay: SimRelay, index: IndexStore, db: TestDb) {
  const rows = new Map((await db.progress.list()).map((r) => [r.collection, r]));
  assertEquals([...rows.keys()].sort(), relay.world.collections().sort(), "rows = discovered");
  for (const c of relay.world.collections()) {
    const expected = [...new Set(relay.world.dids(c))].sort();
    assertEquals(await indexDids(index, c), expected, `DIDs of ${c}`);
    const row = rows.get(c)!;
    assert(row.completedAt !== null, `${c} completed`);
    assertEquals(row.imported, expected.length, `imported_count of ${c}`);
    assertEquals(row.new, expected.length, `new_count of ${c}`);
  }
}

Deno.test("Postgres restarts mid-run (FATAL 57P01 + refused, then 57P03 while starting): no failures, exact sets and counts", async () => {
  const f = await fixture(101);
  try {
    const t0 = performance.now();
    const started = await f.backfiller.start({ source: f.source });
    await pagesReach(f.backfiller, 20);
    const p1 = f.backfiller.state!.pages;
    await f.proxy.restart(2000, { fatal: true, mode: "refuse" });
    await pagesReach(f.backfiller, p1 + 30);
    await f.proxy.restart(1500, { mode: "starting" });
    const summary = await started.done;
    const ms = performance.now() - t0;
    console.log(
      `run ${
        Math.round(ms)
      } ms, ${summary.completed} completed, ${summary.failed.length} failed; ` +
        `proxy ${JSON.stringify(f.proxy.stats)}; warnings: ` +
        [...new Set(f.warnings.map((w) => JSON.parse(w).msg))].join(", "),
    );
    assertEquals(summary.failed, []);
    assertEquals(summary.stopped, false);
    assert(f.proxy.stats.cut >= 2 && f.proxy.stats.refused >= 0, "connections were cut");
    assert(f.warnings.some((w) => w.includes("postgres unreachable")), "the outage was noticed");
    await assertExact(f.relay, f.index, f.db);
    const again = await f.backfiller.start({ source: f.source });
    assertEquals(again.queued, 0);
    await again.done;
  } finally {
    await f.close();
  }
});

Deno.test({
  name: "advisoryLock: releasing a lock whose connection died does not crash the process",
  async fn() {
    const db = await testDb("pglock");
    const proxy = startPgProxy();
    const sql = createSql(proxy.url(TEST_DATABASE_URL), { max: 2, schema: db.schema });
    try {
      const lock = await takeRunLock({
        url: proxy.url(TEST_DATABASE_URL),
        schema: db.schema,
        onLost() {},
      });
      assert(lock, "lock taken");
      await proxy.restart(300);
      await lock.release().catch(() => {});
      // Nothing to wait for: a window in which the dead connection's error could crash the process.
      await sleep(200);
    } finally {
      await sql.end({ timeout: 1 });
      await proxy.close();
      await db.drop();
    }
  },
});

Deno.test({
  name: "the run lock survives a Postgres restart: a second process stays refused",
  async fn() {
    const f = await fixture(103, { lockThroughProxy: true });
    try {
      const started = await f.backfiller.start({ source: f.source });
      await pagesReach(f.backfiller, 10);
      await f.proxy.restart(500);
      await pagesReach(f.backfiller, (f.backfiller.state?.pages ?? 0) + 5);
      // Pages no longer wait for Postgres (its mirror is off the write path), so wait for what this
      // test is about: Postgres back, and the first run holding its lock again.
      await until(async () => {
        const [r] = await f.db.sql`
          SELECT count(*)::int AS n FROM pg_locks
          WHERE locktype = 'advisory' AND granted AND objsubid = 1
            AND objid = ((hashtext('backfill:run:' || current_schema())::bigint & 4294967295)::text)::oid`;
        return r.n === 1;
      }, { what: "the first run to hold its run lock again after the restart" });
      assert(f.backfiller.running, "the first run is still going");
      let refused = false;
      const idx = await testIndex();
      const other = testBackfiller({
        index: idx.index,
        db: f.db,
        listUrl: `${f.relay.url}/llms.txt`,
      });
      try {
        const second = await other.start({ source: f.source });
        await other.stop();
        await second.done;
      } catch (err) {
        refused = err instanceof BusyError;
      } finally {
        await idx.cleanup();
      }
      assert(refused, "a second backfill was accepted while the first still ran");
      await f.backfiller.stop();
      await started.done;
    } finally {
      await f.close();
    }
  },
});

Deno.test("main.ts backfill through a restarting Postgres exits 0 with its summary", async () => {
  // How soon it exits after its last page is a figure of `deno task bench` (bench_timings.ts).
  await using run = await backfillThroughPgRestart();
  const sql = createSql(run.dbUrl, { max: 1 });
  try {
    assertEquals(
      checkExact(run.world, await readIndex(run.dataDir, run.world), await readRows(sql)),
      [],
    );
  } finally {
    await sql.end({ timeout: 1 });
  }
  assertEquals(run.status?.code, 0, `${run.stdout}\n${run.stderr}`);
  assert(run.stdout.includes("done in"), run.stdout);
});

Deno.test("stopping a run while Postgres is unreachable returns promptly; the index keeps the truth", async () => {
  const f = await fixture(107);
  try {
    const started = await f.backfiller.start({ source: f.source });
    await pagesReach(f.backfiller, 10);
    // Postgres stays down until stop() returns: a stop that waited for it would not return at all.
    // How long stop() takes is a figure of `deno task bench` (bench_timings.ts).
    let endOutage!: () => void;
    const outage = f.proxy.restart(new Promise<void>((r) => endOutage = r), { mode: "refuse" });
    try {
      await until(() => f.warnings.some((l) => l.includes("postgres unreachable")), {
        what: "the run to meet the outage",
      });
      await deadline(f.backfiller.stop(), 30_000).catch((err) => {
        throw new Error(`stop() did not return while Postgres was down: ${err.message}`);
      });
      assert((await started.done).stopped);
    } finally {
      endOutage();
      await outage;
    }
    const summary = await (await f.backfiller.start({ source: f.source })).done;
    assertEquals(summary.failed, []);
    await assertExact(f.relay, f.index, f.db);
  } finally {
    await f.close();
  }
});

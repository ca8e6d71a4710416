import { assert, assertEquals } from "./_assert.ts";
import type { Backfiller } from "../lib/run/backfill.ts";
import { BusyError } from "../lib/util/errors.ts";
import type { IndexStore } from "../lib/index/store.ts";
import { createLogger } from "../lib/util/log.ts";
import { createSql, ProgressStore } from "../lib/progress/store.ts";
import { takeRunLock } from "../lib/progress/run_lock.ts";
import { type SimRelay, startSimRelay } from "../lib/sim/relay.ts";
import { makeWorld } from "../lib/sim/world.ts";
import { parseSource } from "../lib/source/source.ts";
import {
  indexDids,
  TEST_DATABASE_URL,
  testBackfiller,
  type TestDb,
  testDb,
  testIndex,
  until,
} from "./_helpers.ts";
import { startPgProxy } from "./_pg_proxy.ts";
import { checkExact, freshDatabase, readIndex, readRows, spawnMain } from "./_child.ts";

/** A backfiller whose progress database sits behind a restartable proxy. */
async function fixture(seed: number, opts: { lockThroughProxy?: boolean } = {}) {
  const world = makeWorld({ seed, largeSizes: [4000, 2500, 1500], collections: 16, tailMax: 40 });
  const relay = await startSimRelay({ world, latencyMs: 15, jitterMs: 10 });
  const db = await testDb("pgrestart");
  const idx = await testIndex();
  const proxy = startPgProxy();
  const warnings: string[] = [];
  const log = createLogger({ level: "warn", write: (l) => warnings.push(l) });
  const sql = createSql(proxy.url(TEST_DATABASE_URL), { max: 4, schema: db.schema });
  const progress = new ProgressStore({ sql, log, maxRetryDelayMs: 250 });
  const proxied: TestDb = { ...db, sql, progress };
  const backfiller = testBackfiller({
    index: idx.index,
    db: proxied,
    listUrl: `${relay.url}/llms.txt`,
    pageLimit: 50,
    concurrency: 2,
    log,
    lockUrl: opts.lockThroughProxy ? proxy.url(TEST_DATABASE_URL) : undefined,
  });
  return {
    world,
    relay,
    db,
    sql,
    index: idx.index,
    proxy,
    warnings,
    backfiller,
    source: parseSource(relay.url),
    async close() {
      await backfiller.stop();
      await sql.end({ timeout: 1 });
      await proxy.close();
      await relay.close();
      await idx.cleanup();
      await db.drop();
    },
  };
}

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

async function pagesReach(b: Backfiller, n: number, ms = 60_000) {
  await until(() => {
    const pages = b.state?.pages ?? 0;
    if (pages < n && !b.running) throw new Error(`run ended before ${n} pages`);
    return pages >= n;
  }, { timeoutMs: ms, what: `${n} pages`, everyMs: 5 });
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
      await new Promise((r) => setTimeout(r, 200));
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

Deno.test({
  name: "main.ts backfill through a restarting Postgres exits 0 with its summary",
  async fn() {
    const world = makeWorld({ seed: 3, largeSizes: [3000, 2000], collections: 10 });
    const relay = await startSimRelay({ world, latencyMs: 20 });
    const db = await freshDatabase("pgrestart");
    const proxy = startPgProxy();
    const dataDir = await Deno.makeTempDir({ prefix: "backfill-pgrestart-" });
    const sql = createSql(db.url, { max: 1 });
    try {
      const child = spawnMain(["backfill"], {
        DATABASE_URL: proxy.url(db.url),
        DATA_DIR: dataDir,
        BACKFILL_SOURCE: relay.url,
        LEXICON_LIST_URL: `${relay.url}/llms.txt`,
        BACKFILL_PAGE_LIMIT: "50",
        BACKFILL_MAX_RPS: "1000",
        LOG_LEVEL: "warn",
      });
      await until(() => relay.stats.pages > 20, { timeoutMs: 30_000, what: "pages" });
      await proxy.restart(1000);
      let last = relay.stats.pages, lastAt = performance.now();
      const watch = setInterval(() => {
        if (relay.stats.pages !== last) [last, lastAt] = [relay.stats.pages, performance.now()];
      }, 10);
      const status = await child.waitFor(60_000);
      clearInterval(watch);
      const lingered = performance.now() - lastAt;
      if (!status) child.kill("SIGKILL");
      assertEquals(checkExact(world, await readIndex(dataDir, world), await readRows(sql)), []);
      const out = await child.stdout;
      assertEquals(status?.code, 0, `${out}\n${await child.stderr}`);
      assert(out.includes("done in"), out);
      assert(lingered < 2500, `exited ${Math.round(lingered)} ms after the last page`);
    } finally {
      await sql.end({ timeout: 1 });
      await proxy.close();
      await relay.close();
      await db.drop();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "two short Postgres outages cost about their own length, not seconds more",
  async fn() {
    const f = await fixture(101);
    try {
      const t0 = performance.now();
      const started = await f.backfiller.start({ source: f.source });
      await pagesReach(f.backfiller, 20);
      await f.proxy.restart(2000, { fatal: true, mode: "refuse" });
      await pagesReach(f.backfiller, f.backfiller.state!.pages + 30);
      await f.proxy.restart(1500, { mode: "starting" });
      assertEquals((await started.done).failed, []);
      const ms = performance.now() - t0;
      assert(ms < 10_000, `the run took ${Math.round(ms)} ms with 3.5 s of outages`);
    } finally {
      await f.close();
    }
  },
});

Deno.test("stopping a run while Postgres is unreachable returns promptly; the index keeps the truth", async () => {
  const f = await fixture(107);
  try {
    const started = await f.backfiller.start({ source: f.source });
    await pagesReach(f.backfiller, 10);
    const outage = f.proxy.restart(8000, { mode: "refuse" });
    await until(() => f.warnings.some((l) => l.includes("postgres unreachable")), {
      what: "the run to meet the outage",
    });
    const t0 = performance.now();
    await f.backfiller.stop();
    const ms = performance.now() - t0;
    console.log(`stop during the outage took ${Math.round(ms)} ms`);
    assert(ms < 4000, `stop took ${Math.round(ms)} ms during the outage`);
    assert((await started.done).stopped);
    await outage;
    const summary = await (await f.backfiller.start({ source: f.source })).done;
    assertEquals(summary.failed, []);
    await assertExact(f.relay, f.index, f.db);
  } finally {
    await f.close();
  }
});

import { assert, assertEquals } from "./_assert.ts";
import { createSql } from "../lib/progress/store.ts";
import { startSimRelay } from "../lib/sim/relay.ts";
import { makeWorld, type SimWorld } from "../lib/sim/world.ts";
import { describeReport, runChaos } from "./chaos.ts";
import {
  checkConsistent,
  checkExact,
  freePort,
  freshDatabase,
  readIndex,
  readRows,
  spawnMain,
} from "./_child.ts";
import { until } from "./_helpers.ts";

const LOG = Deno.env.get("CHAOS_LOG") ? (l: string) => console.log(l) : undefined;

Deno.test("chaos: 20 SIGKILLs and 3 SIGTERMs at random moments, then a final run: exact sets and counts", async () => {
  const seed = Number(Deno.env.get("CHAOS_SEED") ?? 20251124);
  const report = await runChaos({
    kills: 20,
    terms: 3,
    seed,
    world: makeWorld({ seed, largeSizes: [2500, 1500, 1000], collections: 16, tailMax: 40 }),
    pageLimit: 25,
    latencyMs: 30,
    jitterMs: 20,
    windowMs: 300,
    log: LOG,
  });
  const summary = describeReport(`seed ${seed}`, report);
  console.log(summary);
  assertEquals(report.problems, [], summary);
  assertEquals(report.kills, 20, summary);
  assertEquals(report.terms, 3, summary);
  assertEquals(report.finishedEarly, 0, "the world outlasted the kill schedule");
  // Each interruption loses at most the pages in flight (one per worker, plus one read ahead).
  assert(
    report.pagesServed <= report.minimalPages + report.interruptions.length * 2 * 2,
    `no run started over: ${report.pagesServed} pages for ${report.minimalPages}`,
  );
});

Deno.test("chaos (embedded Postgres): SIGKILLs while PGlite creates its cluster and while paging, then exact", async () => {
  const seed = 7;
  const report = await runChaos({
    kills: 4,
    terms: 1,
    seed,
    embedded: true,
    world: makeWorld({ seed, largeSizes: [1500, 800], collections: 10, tailMax: 30 }),
    pageLimit: 25,
    latencyMs: 30,
    jitterMs: 20,
    windowMs: 400,
    pgInitKills: 2,
    log: LOG,
  });
  const summary = describeReport("embedded", report);
  console.log(summary);
  assertEquals(report.problems, [], summary);
  assertEquals(report.kills, 4, summary);
  assertEquals(report.interruptions.filter((x) => x.phase === "pg-init").length, 2, summary);
});

/** A relay, a database and a data directory for one child-process test. */
async function childFixture(world: SimWorld, latencyMs: number) {
  const relay = await startSimRelay({ world, latencyMs });
  const db = await freshDatabase("term");
  const dataDir = await Deno.makeTempDir({ prefix: "backfill-term-" });
  const sql = createSql(db.url, { max: 1 });
  const env: Record<string, string> = {
    DATABASE_URL: db.url,
    DATA_DIR: dataDir,
    BACKFILL_SOURCE: relay.url,
    LEXICON_LIST_URL: `${relay.url}/llms.txt`,
    BACKFILL_PAGE_LIMIT: "50",
    BACKFILL_CONCURRENCY: "2",
    BACKFILL_MAX_RPS: "1000",
    LOG_LEVEL: "warn",
  };
  return {
    relay,
    env,
    dataDir,
    /** Index and rows agree (Postgres level with the index, as after a graceful stop). */
    async assertStoppedCleanly() {
      const snap = await readIndex(dataDir, world);
      const rows = await readRows(sql);
      assertEquals(checkConsistent(world, snap, rows), []);
      for (const [c, row] of rows) {
        const cp = snap.checkpoints.get(c);
        if (cp) assertEquals(row.imported, cp.imported, `${c}: Postgres level with the index`);
      }
    },
    async assertExact() {
      assertEquals(checkExact(world, await readIndex(dataDir, world), await readRows(sql)), []);
    },
    async close() {
      await sql.end({ timeout: 1 });
      await relay.close();
      await db.drop();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
}

Deno.test({
  name: "SIGTERM while the run is being planned: exit 0 within 10 s",
  async fn() {
    const world = makeWorld({ seed: 5, largeSizes: [3000, 2000], collections: 10 });
    const f = await childFixture(world, 300);
    try {
      const child = spawnMain(["backfill"], f.env);
      // llms.txt is the first request of planning; listCollections then takes 300 ms.
      await until(() => f.relay.stats.requests > 0, { timeoutMs: 30_000, what: "discovery" });
      child.kill("SIGTERM");
      const status = await child.waitFor(10_000);
      if (!status) {
        child.kill("SIGKILL");
        await child.status;
      }
      assertEquals(status?.code, 0, "exit 0 within 10 s of SIGTERM");
      await f.assertStoppedCleanly();
    } finally {
      await f.close();
    }
  },
});

Deno.test("server mode: SIGTERM mid-run exits 0 within 10 s; a restarted server resumes and ends exact", async () => {
  const world = makeWorld({ seed: 9, largeSizes: [2000, 1200], collections: 12, tailMax: 30 });
  const f = await childFixture(world, 25);
  const password = "chaos-admin";
  const auth = { authorization: `Bearer ${password}` };
  const serve = async () => {
    const port = freePort();
    const child = spawnMain(["start"], {
      ...f.env,
      PORT: String(port),
      HOST: "127.0.0.1",
      RELAY_ADMIN_PASSWORD: password,
    });
    const base = `http://127.0.0.1:${port}`;
    await until(async () => {
      if (child.exited) throw new Error(`server exited: ${await child.stderr}`);
      // Ready, not just alive: /healthz answers while startup still waits for Postgres.
      return await fetch(`${base}/readyz`).then(async (r) => {
        await r.body?.cancel();
        return r.ok;
      }, () => false);
    }, { timeoutMs: 30_000, what: "the server to come up", everyMs: 50 });
    const call = async (method: string, path: string) => {
      const res = await fetch(base + path, { method, headers: auth });
      return { status: res.status, body: await res.json() };
    };
    return { child, call };
  };
  const stop = async (child: ReturnType<typeof spawnMain>) => {
    const t = performance.now();
    child.kill("SIGTERM");
    const status = await child.waitFor(10_000);
    if (!status) {
      child.kill("SIGKILL");
      await child.status;
    }
    assertEquals(status?.code, 0, `server exit within 10 s: ${await child.stderr}`);
    return performance.now() - t;
  };
  try {
    const one = await serve();
    const started = await one.call("POST", "/admin/backfill-collections");
    assertEquals(started.status, 200, JSON.stringify(started.body));
    assertEquals(started.body.status, "started");
    await until(() => f.relay.stats.pages >= 15, { timeoutMs: 30_000, what: "pages" });
    const ms = await stop(one.child);
    console.log(`server stopped ${Math.round(ms)} ms after SIGTERM, ${f.relay.stats.pages} pages`);
    await f.assertStoppedCleanly();

    const two = await serve();
    let last: unknown;
    await until(async () => {
      const s = await two.call("GET", "/admin/backfill-collections");
      assertEquals(s.status, 200);
      last = s.body;
      if (s.body.completed === s.body.total && s.body.total > 0 && !s.body.running) return true;
      if (!s.body.running) {
        // Collections the first server never reached are not "interrupted": start them by hand.
        const r = await two.call("POST", "/admin/backfill-collections");
        assert(r.status === 200 || r.status === 409, JSON.stringify(r.body));
      }
      return false;
    }, { timeoutMs: 60_000, what: "every collection done", everyMs: 100 }).catch((err) => {
      throw new Error(`${err.message}: ${JSON.stringify(last)}`);
    });
    await stop(two.child);
    await f.assertExact();
  } finally {
    await f.close();
  }
});

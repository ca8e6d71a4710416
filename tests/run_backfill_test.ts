import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { BusyError } from "../lib/util/errors.ts";
import { makeWorld, worldFromLists } from "../lib/sim/world.ts";
import { startSimRelay } from "../lib/sim/relay.ts";
import { parseSource } from "../lib/source/source.ts";
import { indexDids, testBackfiller, testDb, testIndex } from "./_helpers.ts";

async function fixture(opts: Parameters<typeof startSimRelay>[0] = {}) {
  const relay = await startSimRelay(opts);
  const db = await testDb("backfill");
  const idx = await testIndex();
  return {
    relay,
    db,
    index: idx.index,
    source: parseSource(relay.url),
    backfiller: (o: Partial<Parameters<typeof testBackfiller>[0]> = {}) =>
      testBackfiller({ index: idx.index, db, listUrl: `${relay.url}/llms.txt`, ...o }),
    async close() {
      await relay.close();
      await idx.cleanup();
      await db.drop();
    },
  };
}

async function assertMatchesWorld(
  f: Awaited<ReturnType<typeof fixture>>,
  collections = f.relay.world.collections(),
) {
  const rows = new Map((await f.db.progress.list()).map((r) => [r.collection, r]));
  for (const c of collections) {
    const expected = [...new Set(f.relay.world.dids(c))].sort();
    assertEquals(await indexDids(f.index, c), expected, `DIDs of ${c}`);
    const row = rows.get(c);
    assert(row, `row for ${c}`);
    assert(row.completedAt !== null, `${c} completed`);
    assertEquals(row.imported, expected.length, `imported_count of ${c}`);
  }
}

Deno.test("full run: discovered collections match the source exactly, rows are exactly the discovered set", async () => {
  const f = await fixture({ world: makeWorld({ seed: 7 }), llmsExtra: ["com.example.onlyinlist"] });
  try {
    const started = await f.backfiller().start({ source: f.source });
    const summary = await started.done;
    assertEquals(summary.failed, []);
    const expected = [...f.relay.world.collections(), "com.example.onlyinlist"].sort();
    assertEquals(started.collections, expected.length);
    assertEquals((await f.db.progress.list()).map((r) => r.collection), expected);
    await assertMatchesWorld(f);
  } finally {
    await f.close();
  }
});

Deno.test("paging edge cases: exact multiple of the page, one short of it, empty, single, short pages with a cursor", async () => {
  const mk = (n: number, p: string) =>
    Array.from({ length: n }, (_, i) => `did:plc:${p}${String(i).padStart(8, "0")}`);
  const world = worldFromLists({
    "com.example.exact": mk(300, "exact"), // 3 full pages of 100, then an empty page without a cursor
    "com.example.minusone": mk(299, "minus"),
    "com.example.plusone": mk(301, "plus"),
    "com.example.empty": [],
    "com.example.single": mk(1, "single"),
  });
  const f = await fixture({ world, shortPageEvery: 3 });
  try {
    const summary = await (await f.backfiller({ pageLimit: 100 }).start({
      source: f.source,
      collections: world.collections(),
    })).done;
    assertEquals(summary.failed, []);
    await assertMatchesWorld(f);
  } finally {
    await f.close();
  }
});

Deno.test("resume: a stopped run continues from the saved cursors and ends exact, without refetching from the start", async () => {
  const f = await fixture({
    world: makeWorld({ seed: 3, largeSizes: [6000, 3000] }),
    latencyMs: 5,
  });
  try {
    const b = f.backfiller({ pageLimit: 100, concurrency: 2 });
    const started = await b.start({ source: f.source });
    while ((b.state?.pages ?? 0) < 30) await new Promise((r) => setTimeout(r, 10));
    await b.stop();
    const mid = await f.db.progress.list();
    const resumed = mid.filter((r) => r.completedAt === null && r.cursor !== "");
    assert(resumed.length > 0, "some collection stopped midway with a cursor");
    assert((await started.done).stopped);
    const before = f.relay.stats.pages;
    const summary = await (await f.backfiller({ pageLimit: 100 }).start({ source: f.source })).done;
    assertEquals(summary.failed, []);
    await assertMatchesWorld(f);
    const totalPages = f.relay.world.collections().reduce(
      (n, c) => n + Math.floor(f.relay.world.size(c) / 100) + 1,
      0,
    );
    assert(f.relay.stats.pages < totalPages + before, "resumed run did not start over");
  } finally {
    await f.close();
  }
});

Deno.test("re-trigger after completion fetches nothing and keeps counts; 409 while running", async () => {
  const f = await fixture({ world: makeWorld({ seed: 5, largeSizes: [3000] }), latencyMs: 2 });
  try {
    const b = f.backfiller();
    const first = await b.start({ source: f.source });
    await assertRejects(() => b.start({ source: f.source }), BusyError);
    await first.done;
    const rowsBefore = await f.db.progress.list();
    const reqs = f.relay.stats.byCollection;
    const listBefore = Object.values(reqs).reduce((a, b) => a + b, 0);
    const again = await b.start({ source: f.source });
    assertEquals(again.queued, 0);
    await again.done;
    const listAfter = Object.values(f.relay.stats.byCollection).reduce((a, b) => a + b, 0);
    assertEquals(listAfter, listBefore, "no listRepos requests on a re-trigger");
    assertEquals(
      (await f.db.progress.list()).map((r) => [r.collection, r.imported]),
      rowsBefore.map((r) => [r.collection, r.imported]),
    );
  } finally {
    await f.close();
  }
});

Deno.test("second process on the same database is refused by the advisory lock", async () => {
  const f = await fixture({ world: makeWorld({ seed: 9, largeSizes: [2000] }), latencyMs: 20 });
  try {
    const one = await f.backfiller().start({ source: f.source });
    const other = f.backfiller();
    await assertRejects(() => other.start({ source: f.source }), BusyError, "another process");
    await one.done;
    await (await other.start({ source: f.source })).done;
  } finally {
    await f.close();
  }
});

Deno.test("catch-up fetches only the new tail and keeps counts exact", async () => {
  const world = makeWorld({ seed: 11, largeSizes: [450], collections: 3 });
  const f = await fixture({ world });
  try {
    await (await f.backfiller({ pageLimit: 100 }).start({ source: f.source })).done;
    const big = world.collections()[0];
    world.append(big, 130);
    f.relay.resetStats();
    const summary =
      await (await f.backfiller({ pageLimit: 100 }).start({ source: f.source, catchUp: true }))
        .done;
    assertEquals(summary.failed, []);
    await assertMatchesWorld(f);
    // 450 → final cursor at 400; the tail is 50 + 130 = 180 DIDs: two pages of 100 at most, plus the end.
    assert(
      (f.relay.stats.byCollection[big] ?? 0) <= 3,
      `catch-up pages for ${big}: ${f.relay.stats.byCollection[big]}`,
    );
    assertEquals(summary.imported, 130);
  } finally {
    await f.close();
  }
});

Deno.test("a failing collection is recorded and the run goes on; it is retried on the next trigger", async () => {
  const world = makeWorld({ seed: 13, largeSizes: [500], collections: 6 });
  const bad = world.collections()[2];
  const f = await fixture({ world, forbidden: [bad] });
  try {
    const summary = await (await f.backfiller().start({ source: f.source })).done;
    assertEquals(summary.failed.map((x) => x.collection), [bad]);
    const row = await f.db.progress.get(bad);
    assert(row?.lastError?.includes("403"), row?.lastError ?? "no error");
    assertEquals(row?.attempts, 1);
    assert(row?.nextRetryAt !== null);
    await assertMatchesWorld(f, world.collections().filter((c) => c !== bad));
    f.relay.setFaults({ forbidden: [] });
    const again = await (await f.backfiller().start({ source: f.source })).done;
    assertEquals(again.failed, []);
    await assertMatchesWorld(f);
    assertEquals((await f.db.progress.get(bad))?.lastError, null);
  } finally {
    await f.close();
  }
});

Deno.test("loop guards fail a collection instead of spinning: repeated cursor, endless empty pages", async () => {
  const world = makeWorld({ seed: 17, largeSizes: [400, 300], collections: 4 });
  const [a, b] = world.collections();
  const f = await fixture({ world, malformed: { [a]: "repeat-cursor", [b]: "empty-with-cursor" } });
  try {
    const summary = await (await f.backfiller().start({ source: f.source })).done;
    const failed = new Map(summary.failed.map((x) => [x.collection, x.error]));
    assert(failed.get(a)?.includes("repeated cursor"), failed.get(a));
    assert(failed.get(b)?.includes("empty pages"), failed.get(b));
  } finally {
    await f.close();
  }
});

Deno.test("invalid DIDs are skipped and counted, never written", async () => {
  const world = worldFromLists({
    "com.example.mixed": [
      "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
      "not-a-did",
      "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb",
      "did:PLC:x",
    ],
  });
  const f = await fixture({ world });
  try {
    const b = f.backfiller();
    const summary = await (await b.start({ source: f.source, collections: ["com.example.mixed"] }))
      .done;
    assertEquals(summary.failed, []);
    assertEquals(await indexDids(f.index, "com.example.mixed"), [
      "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
      "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb",
    ]);
    assertEquals(b.state?.invalid, 2);
    assertEquals((await f.db.progress.get("com.example.mixed"))?.imported, 2);
  } finally {
    await f.close();
  }
});

Deno.test("a cursor is never sent to another source: incomplete rows restart against the new one", async () => {
  const world = makeWorld({ seed: 19, largeSizes: [1500], collections: 2 });
  const f = await fixture({ world, latencyMs: 3 });
  const other = await startSimRelay({ world, cursorSecret: "other-relay" });
  try {
    const b = f.backfiller({ pageLimit: 100 });
    await b.start({ source: f.source });
    while ((b.state?.pages ?? 0) < 5) await new Promise((r) => setTimeout(r, 5));
    await b.stop();
    const incomplete = (await f.db.progress.list()).filter((r) => r.completedAt === null).map((r) =>
      r.collection
    );
    assert(incomplete.length > 0);
    const otherSource = parseSource(other.url);
    const summary = await (await f.backfiller({ pageLimit: 100 }).start({ source: otherSource }))
      .done;
    assertEquals(summary.failed, [], "the other relay would reject a foreign cursor with 400");
    assertEquals(other.stats.byStatus["400"] ?? 0, 0);
    for (const r of await f.db.progress.list()) {
      assertEquals(r.source, incomplete.includes(r.collection) ? otherSource.name : f.source.name);
    }
    await assertMatchesWorld(f);
  } finally {
    await other.close();
    await f.close();
  }
});

Deno.test("faults from the source (429s, 5xx, resets) still end with exact sets and counts", async () => {
  const world = makeWorld({ seed: 23, largeSizes: [1200, 800], collections: 8 });
  const f = await fixture({ world, rate429: 0.1, rate5xx: 0.1, rateReset: 0.05, retryAfterSec: 0 });
  try {
    const summary = await (await f.backfiller({ maxAttempts: 20 }).start({ source: f.source }))
      .done;
    assertEquals(summary.failed, []);
    await assertMatchesWorld(f);
    assert((f.relay.stats.byStatus["429"] ?? 0) > 0, "faults were injected");
  } finally {
    await f.close();
  }
});

import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { BusyError, ConfirmationError } from "../lib/util/errors.ts";
import { freePort } from "./_child.ts";
import { makeWorld, worldFromLists } from "../lib/sim/world.ts";
import { type SimRelayOptions, startSimRelay } from "../lib/sim/relay.ts";
import { parseSource } from "../lib/source/source.ts";
import { backfillFixture, indexDids, until } from "./_helpers.ts";
import { createLogger } from "../lib/util/log.ts";
import { DEFAULTS } from "../lib/app/config.ts";

function fixture(relay: SimRelayOptions = {}) {
  return backfillFixture({ label: "backfill", relay });
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
  await using f = await fixture({
    world: makeWorld({ seed: 7 }),
    llmsExtra: ["com.example.onlyinlist"],
  });
  const started = await f.makeBackfiller().start({ source: f.source });
  const summary = await started.done;
  assertEquals(summary.failed, []);
  const expected = [...f.relay.world.collections(), "com.example.onlyinlist"].sort();
  assertEquals(started.collections, expected.length);
  assertEquals((await f.db.progress.list()).map((r) => r.collection), expected);
  await assertMatchesWorld(f);
});

Deno.test("a DID the source lists again one, two or three pages later counts once, while pages are written ahead", async () => {
  const did = (i: number) => `did:plc:rep${String(i).padStart(8, "0")}`;
  // Pages of 5: each page repeats a DID of the page 1, 2 or 3 before it, some in the same slot.
  const list: string[] = [];
  for (let p = 0; p < 40; p++) {
    for (let k = 0; k < 5; k++) {
      const back = (p + k) % 4;
      list.push(k === 0 && p >= back && back > 0 ? list[(p - back) * 5 + k + 1] : did(p * 5 + k));
    }
  }
  const world = worldFromLists({ "com.example.repeats": list });
  const distinct = new Set(list).size;
  assert(distinct < list.length - 20, `the world repeats DIDs (${distinct} of ${list.length})`);
  await using f = await fixture({ world });
  const summary = await (await f.makeBackfiller({ pageLimit: 5 }).start({
    source: f.source,
    collections: world.collections(),
  })).done;
  assertEquals(summary.failed, []);
  await assertMatchesWorld(f);
  const [row] = await f.db.progress.list();
  assertEquals([row.imported, row.new], [distinct, distinct]);
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
  await using f = await fixture({ world, shortPageEvery: 3 });
  const summary = await (await f.makeBackfiller({ pageLimit: 100 }).start({
    source: f.source,
    collections: world.collections(),
  })).done;
  assertEquals(summary.failed, []);
  await assertMatchesWorld(f);
});

Deno.test("resume: a stopped run continues from the saved cursors and ends exact, without refetching from the start", async () => {
  await using f = await fixture({
    world: makeWorld({ seed: 3, largeSizes: [6000, 3000] }),
    latencyMs: 5,
  });
  const b = f.makeBackfiller({ pageLimit: 100, concurrency: 2 });
  const started = await b.start({ source: f.source });
  await until(() => (b.state?.pages ?? 0) >= 30, { what: "30 pages written" });
  await b.stop();
  const mid = await f.db.progress.list();
  const resumed = mid.filter((r) => r.completedAt === null && r.cursor !== "");
  assert(resumed.length > 0, "some collection stopped midway with a cursor");
  assert((await started.done).stopped);
  const before = f.relay.stats.pages;
  const summary = await (await f.makeBackfiller({ pageLimit: 100 }).start({ source: f.source }))
    .done;
  assertEquals(summary.failed, []);
  await assertMatchesWorld(f);
  const totalPages = f.relay.world.collections().reduce(
    (n, c) => n + Math.floor(f.relay.world.size(c) / 100) + 1,
    0,
  );
  assert(f.relay.stats.pages < totalPages + before, "resumed run did not start over");
});

Deno.test("re-trigger after completion fetches nothing and keeps counts; 409 while running", async () => {
  await using f = await fixture({
    world: makeWorld({ seed: 5, largeSizes: [3000] }),
    latencyMs: 2,
  });
  const b = f.makeBackfiller();
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
});

Deno.test("second process on the same database is refused by the advisory lock", async () => {
  await using f = await fixture({
    world: makeWorld({ seed: 9, largeSizes: [2000] }),
    latencyMs: 20,
  });
  const one = await f.makeBackfiller().start({ source: f.source });
  const other = f.makeBackfiller();
  await assertRejects(() => other.start({ source: f.source }), BusyError, "another process");
  await one.done;
  await (await other.start({ source: f.source })).done;
});

Deno.test("catch-up fetches only the new tail and keeps counts exact", async () => {
  const world = makeWorld({ seed: 11, largeSizes: [450], collections: 3 });
  await using f = await fixture({ world });
  await (await f.makeBackfiller({ pageLimit: 100 }).start({ source: f.source })).done;
  const big = world.collections()[0];
  world.append(big, 130);
  f.relay.resetStats();
  const summary =
    await (await f.makeBackfiller({ pageLimit: 100 }).start({ source: f.source, catchUp: true }))
      .done;
  assertEquals(summary.failed, []);
  await assertMatchesWorld(f);
  // 450 → final cursor at 400; the tail is 50 + 130 = 180 DIDs: two pages of 100 at most, plus the end.
  assert(
    (f.relay.stats.byCollection[big] ?? 0) <= 3,
    `catch-up pages for ${big}: ${f.relay.stats.byCollection[big]}`,
  );
  assertEquals(summary.imported, 130);
});

Deno.test("a failing collection is recorded and the run goes on; it is retried on the next trigger", async () => {
  const world = makeWorld({ seed: 13, largeSizes: [500], collections: 6 });
  const bad = world.collections()[2];
  await using f = await fixture({ world, forbidden: [bad] });
  const summary = await (await f.makeBackfiller().start({ source: f.source })).done;
  assertEquals(summary.failed.map((x) => x.collection), [bad]);
  const row = await f.db.progress.get(bad);
  assert(row?.lastError?.includes("403"), row?.lastError ?? "no error");
  assertEquals(row?.attempts, 1);
  assert(row?.nextRetryAt !== null);
  await assertMatchesWorld(f, world.collections().filter((c) => c !== bad));
  f.relay.setFaults({ forbidden: [] });
  const again = await (await f.makeBackfiller().start({ source: f.source })).done;
  assertEquals(again.failed, []);
  await assertMatchesWorld(f);
  assertEquals((await f.db.progress.get(bad))?.lastError, null);
});

Deno.test("loop guards fail a collection instead of spinning: repeated cursor, endless empty pages", async () => {
  const world = makeWorld({ seed: 17, largeSizes: [400, 300], collections: 4 });
  const [a, b] = world.collections();
  await using f = await fixture({
    world,
    malformed: { [a]: "repeat-cursor", [b]: "empty-with-cursor" },
  });
  const summary = await (await f.makeBackfiller().start({ source: f.source })).done;
  const failed = new Map(summary.failed.map((x) => [x.collection, x.error]));
  assert(failed.get(a)?.includes("repeated cursor"), failed.get(a));
  assert(failed.get(b)?.includes("empty pages"), failed.get(b));
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
  await using f = await fixture({ world });
  const b = f.makeBackfiller();
  const summary = await (await b.start({ source: f.source, collections: ["com.example.mixed"] }))
    .done;
  assertEquals(summary.failed, []);
  assertEquals(await indexDids(f.index, "com.example.mixed"), [
    "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
    "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb",
  ]);
  assertEquals(b.state?.invalid, 2);
  assertEquals((await f.db.progress.get("com.example.mixed"))?.imported, 2);
});

Deno.test("a cursor is never sent to another source: incomplete rows restart against the new one", async () => {
  const world = makeWorld({ seed: 19, largeSizes: [1500], collections: 2 });
  await using f = await fixture({ world, latencyMs: 3 });
  const other = await startSimRelay({ world, cursorSecret: "other-relay" });
  try {
    const b = f.makeBackfiller({ pageLimit: 100 });
    await b.start({ source: f.source });
    await until(() => (b.state?.pages ?? 0) >= 5, { what: "5 pages written" });
    await b.stop();
    const incomplete = (await f.db.progress.list()).filter((r) => r.completedAt === null).map((r) =>
      r.collection
    );
    assert(incomplete.length > 0);
    const otherSource = parseSource(other.url);
    const summary =
      await (await f.makeBackfiller({ pageLimit: 100 }).start({ source: otherSource }))
        .done;
    assertEquals(summary.failed, [], "the other relay would reject a foreign cursor with 400");
    assertEquals(other.stats.byStatus["400"] ?? 0, 0);
    for (const r of await f.db.progress.list()) {
      assertEquals(r.source, incomplete.includes(r.collection) ? otherSource.name : f.source.name);
    }
    await assertMatchesWorld(f);
  } finally {
    await other.close();
  }
});

Deno.test("faults from the source (429s, 5xx, resets) still end with exact sets and counts", async () => {
  const world = makeWorld({ seed: 23, largeSizes: [1200, 800], collections: 8 });
  await using f = await fixture({
    world,
    rate429: 0.1,
    rate5xx: 0.1,
    rateReset: 0.05,
    retryAfterSec: 0,
  });
  const summary = await (await f.makeBackfiller({ maxAttempts: 20 }).start({ source: f.source }))
    .done;
  assertEquals(summary.failed, []);
  await assertMatchesWorld(f);
  assert((f.relay.stats.byStatus["429"] ?? 0) > 0, "faults were injected");
});

Deno.test("a catch-up against a dead source changes nothing; without confirm-source-switch it is refused with what it would redo", async () => {
  const world = makeWorld({ seed: 29, largeSizes: [700], collections: 4 });
  await using f = await fixture({ world });
  // A port nothing listens on: every request is refused.
  const dead = parseSource(`http://127.0.0.1:${freePort()}`);
  await (await f.makeBackfiller().start({ source: f.source })).done;
  const before = await f.db.progress.list();
  const checkpoints = await Promise.all(before.map((r) => f.index.getCheckpoint(r.collection)));
  const total = before.reduce((n, r) => n + r.imported, 0);
  const refused = await assertRejects(
    () => f.makeBackfiller().start({ source: dead, catchUp: true }),
    ConfirmationError,
  ) as ConfirmationError;
  assertEquals(refused.parameter, "confirm-source-switch");
  assertEquals(refused.details.collections, before.length);
  assertEquals(refused.details.dids, total);
  assert(refused.message.includes(`${before.length} completed collection(s) (${total} DIDs)`));
  assertEquals(await f.db.progress.interruptedRun(), undefined, "a refused run is not recorded");

  const summary = await (await f.makeBackfiller({ maxAttempts: 2 }).start({
    source: dead,
    catchUp: true,
    confirmSourceSwitch: true,
  })).done;
  assertEquals(summary.failed.length, before.length);
  const after = await f.db.progress.list();
  for (const [i, r] of after.entries()) {
    assertEquals(r.source, f.source.name, r.collection);
    assertEquals(r.imported, before[i].imported, r.collection);
    assert(r.completedAt !== null, `${r.collection} is still complete`);
    assertEquals(await f.index.getCheckpoint(r.collection), checkpoints[i], r.collection);
  }
  // The right source then picks up from the final cursors, not from the start.
  f.relay.resetStats();
  const again = await (await f.makeBackfiller().start({ source: f.source, catchUp: true })).done;
  assertEquals(again.failed, []);
  assert(f.relay.stats.didsServed < total, `re-served ${f.relay.stats.didsServed} of ${total}`);
  await assertMatchesWorld(f);
});

Deno.test("an incomplete collection keeps its cursor and counts until the new source serves its first page", async () => {
  const world = makeWorld({ seed: 31, largeSizes: [1500], collections: 2 });
  await using f = await fixture({ world, latencyMs: 3 });
  const dead = parseSource(`http://127.0.0.1:${freePort()}`);
  const b = f.makeBackfiller({ pageLimit: 100 });
  await b.start({ source: f.source });
  await until(() => (b.state?.pages ?? 0) >= 5, { what: "5 pages written" });
  await b.stop();
  const before = await f.db.progress.list();
  assert(before.some((r) => r.completedAt === null && r.cursor !== ""));
  const summary = await (await f.makeBackfiller({ maxAttempts: 2 }).start({ source: dead })).done;
  assert(summary.failed.length > 0);
  for (const r of await f.db.progress.list()) {
    const was = before.find((x) => x.collection === r.collection)!;
    assertEquals([r.source, r.cursor, r.imported], [was.source, was.cursor, was.imported]);
  }
  const done = await (await f.makeBackfiller({ pageLimit: 100 }).start({ source: f.source })).done;
  assertEquals(done.failed, []);
  await assertMatchesWorld(f);
});

Deno.test("a collection whose entries were all malformed is flagged with its invalid count, and reset fetches it again", async () => {
  const world = makeWorld({ seed: 37, largeSizes: [47], collections: 2 });
  const [bad, good] = [...world.collections()].sort((a, b) => world.size(b) - world.size(a));
  await using f = await fixture({ world, malformed: { [bad]: "non-object-entries" } });
  const first = await (await f.makeBackfiller().start({ source: f.source })).done;
  assertEquals(first.failed, []);
  assertEquals(first.invalid, world.size(bad));
  assertEquals(first.flagged, [{ collection: bad, invalid: world.size(bad), imported: 0 }]);
  const row = await f.db.progress.get(bad);
  assertEquals([row?.imported, row?.invalid, row?.completedAt !== null], [0, 47, true]);
  assertEquals((await f.db.progress.get(good))?.invalid, 0);

  // A healthy source does not change a completed collection by itself: it stays flagged.
  f.relay.setFaults({ malformed: {} });
  await (await f.makeBackfiller().start({ source: f.source })).done;
  assertEquals((await f.db.progress.get(bad))?.invalid, 47);

  // The documented redo: reset it, then run.
  assertEquals((await f.makeBackfiller().reset([bad])).reset, [bad]);
  const redo = await (await f.makeBackfiller().start({ source: f.source })).done;
  assertEquals([redo.invalid, redo.flagged], [0, []]);
  const after = await f.db.progress.get(bad);
  assertEquals([after?.imported, after?.invalid, after?.completedAt !== null], [47, 0, true]);
  await assertMatchesWorld(f);
});

/** Requests that page all of `c` at `limit`: full pages, then one without a cursor. */
function requestsAt(f: Awaited<ReturnType<typeof fixture>>, c: string, limit: number): number {
  return Math.floor(f.relay.world.size(c) / limit) + 1;
}

/** Runs a full backfill asking for 10000-DID pages (the default), keeping its log lines. */
async function runAt10000(f: Awaited<ReturnType<typeof fixture>>) {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: "info", write: (l) => lines.push(JSON.parse(l)) });
  const summary = await (await f.makeBackfiller({ pageLimit: DEFAULTS.pageLimit, log }).start({
    source: f.source,
  })).done;
  const listed = f.relay.world.collections().reduce(
    (n, c) => n + (f.relay.stats.byCollection[c] ?? 0),
    0,
  );
  const fallbacks = lines.filter((l) => l.refused !== undefined);
  return { summary, listed, fallbacks };
}

const PAGE_WORLD = { seed: 37, largeSizes: [25000, 20000, 12000, 10000], collections: 9 };

/**
 * A run at 10000 that never had to fall back: exact, only 200s, and each collection paged in
 * pages of `served` DIDs (what the source actually gave).
 */
async function assertPagedAt(f: Awaited<ReturnType<typeof fixture>>, served: number) {
  const { summary, fallbacks } = await runAt10000(f);
  assertEquals(summary.failed, []);
  assertEquals(summary.pageLimit, 10000);
  assertEquals(fallbacks, []);
  await assertMatchesWorld(f);
  for (const c of f.relay.world.collections()) {
    assertEquals(f.relay.stats.byCollection[c], requestsAt(f, c, served), `requests for ${c}`);
  }
  assertEquals(Object.keys(f.relay.stats.byStatus), ["200"]);
  assertEquals(f.relay.stats.didsServed, f.relay.world.totals().entries);
}

Deno.test("page size: a source that accepts 10000 is paged in 10000-DID pages", async () => {
  assertEquals(DEFAULTS.pageLimit, 10000);
  await using f = await fixture({ world: makeWorld(PAGE_WORLD) });
  await assertPagedAt(f, 10000);
});

Deno.test("page size: a source that refuses more than 2000 with a 400 is paged at 2000, logged once, and every collection completes", async () => {
  await using f = await fixture({
    world: makeWorld(PAGE_WORLD),
    maxLimit: 2000,
    overLimit: "reject",
  });
  const { summary, listed, fallbacks } = await runAt10000(f);
  assertEquals(summary.failed, []);
  assertEquals(summary.pageLimit, 2000);
  await assertMatchesWorld(f);
  assertEquals(fallbacks.length, 1, JSON.stringify(fallbacks));
  assertEquals([fallbacks[0].source, fallbacks[0].refused, fallbacks[0].limit], [
    f.source.name,
    10000,
    2000,
  ]);
  // Only requests already sent at 10000 when the first refusal came back were refused.
  const refused = f.relay.stats.byStatus["400"] ?? 0;
  assert(refused >= 1 && refused <= 4, `${refused} refusals for a run 4 collections at a time`);
  assertEquals(Object.keys(f.relay.stats.byStatus).sort(), ["200", "400"]);
  const at2000 = f.relay.world.collections().reduce((n, c) => n + requestsAt(f, c, 2000), 0);
  assertEquals(listed, at2000 + refused);
});

Deno.test("page size: a source that clamps to 2000 without a word is paged to the end, exact", async () => {
  await using f = await fixture({ world: makeWorld(PAGE_WORLD), maxLimit: 2000 });
  await assertPagedAt(f, 2000);
});

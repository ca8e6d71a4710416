import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { BusyError } from "../lib/util/errors.ts";
import { IndexStore } from "../lib/index/store.ts";
import { makeWorld, worldFromLists } from "../lib/sim/world.ts";
import { startSimRelay } from "../lib/sim/relay.ts";
import { parseSource } from "../lib/source/source.ts";
import { indexDids, testBackfiller, testDb } from "./_helpers.ts";

Deno.test("a collection marked complete in Postgres but missing from a new index is backfilled again", async () => {
  const world = makeWorld({ seed: 71, largeSizes: [300], collections: 3 });
  const relay = await startSimRelay({ world });
  const db = await testDb("edge");
  const dir = await Deno.makeTempDir();
  try {
    let index = await IndexStore.open({ path: `${dir}/a` });
    await (await testBackfiller({ index, db, listUrl: `${relay.url}/llms.txt` }).start({
      source: parseSource(relay.url),
    })).done;
    await index.close();
    // The operator replaces the index volume; Postgres still says complete.
    index = await IndexStore.open({ path: `${dir}/b` });
    const again = await testBackfiller({ index, db, listUrl: `${relay.url}/llms.txt` }).start({
      source: parseSource(relay.url),
    });
    assertEquals(again.queued, world.collections().length);
    await again.done;
    for (const c of world.collections()) {
      assertEquals(await indexDids(index, c), [...world.dids(c)].sort(), c);
      assertEquals((await db.progress.get(c))?.imported, world.size(c));
    }
    await index.close();
  } finally {
    await relay.close();
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reset holds the backfiller: a start during a reset is refused, and vice versa", async () => {
  const world = makeWorld({ seed: 73, largeSizes: [2000], collections: 2 });
  const relay = await startSimRelay({ world, latencyMs: 20 });
  const db = await testDb("edge");
  const dir = await Deno.makeTempDir();
  const index = await IndexStore.open({ path: dir });
  try {
    const b = testBackfiller({ index, db, listUrl: `${relay.url}/llms.txt`, pageLimit: 100 });
    const source = parseSource(relay.url);
    await (await b.start({ source })).done;
    const [c] = world.collections();
    const resetting = b.reset([c]);
    await assertRejects(() => b.start({ source }), BusyError);
    assertEquals((await resetting).reset, [c]);
    const run = await b.start({ source });
    await assertRejects(() => b.reset([c]), BusyError);
    await run.done;
    assertEquals((await db.progress.get(c))?.imported, world.size(c));
  } finally {
    await index.close();
    await relay.close();
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a source that keeps sending fresh cursors over DIDs it already listed is stopped", async () => {
  const same = Array.from({ length: 6000 }, () => "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa");
  const relay = await startSimRelay({ world: worldFromLists({ "com.example.loop": same }) });
  const db = await testDb("edge");
  const dir = await Deno.makeTempDir();
  const index = await IndexStore.open({ path: dir });
  try {
    const b = testBackfiller({ index, db, listUrl: `${relay.url}/llms.txt`, pageLimit: 100 });
    const summary =
      await (await b.start({ source: parseSource(relay.url), collections: ["com.example.loop"] }))
        .done;
    assertEquals(summary.failed.length, 1);
    assert(summary.failed[0].error.includes("already listed"), summary.failed[0].error);
    assert(relay.stats.pages < 60, `stopped after ${relay.stats.pages} pages`);
    assertEquals((await db.progress.get("com.example.loop"))?.imported, 1);
  } finally {
    await index.close();
    await relay.close();
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("against a 20 rps token bucket the run stays under it, nearly free of 429s, and exact", async (t) => {
  const world = makeWorld({ seed: 79, largeSizes: [1500, 1200, 900], collections: 6 });
  for (const okLimitHeaders of [true, false]) {
    await t.step(
      okLimitHeaders ? "RateLimit-* on every answer" : "only a 429 says so",
      async () => {
        const relay = await startSimRelay({
          world,
          latencyMs: 5,
          maxRps: 20,
          limitHeaders: "retry-after",
          okLimitHeaders,
        });
        const db = await testDb("edge");
        const dir = await Deno.makeTempDir();
        const index = await IndexStore.open({ path: dir });
        try {
          // Our own cap is twice the source's: only the source's signals keep us under it.
          const b = testBackfiller({
            index,
            db,
            listUrl: `${relay.url}/llms.txt`,
            pageLimit: 50,
            maxRps: 40,
            concurrency: 4,
            maxAttempts: 20,
          });
          const started = performance.now();
          const summary = await (await b.start({ source: parseSource(relay.url) })).done;
          const seconds = (performance.now() - started) / 1000;
          assertEquals(summary.failed, []);
          for (const c of world.collections()) {
            assertEquals(await indexDids(index, c), [...world.dids(c)].sort(), c);
          }
          const ok = relay.stats.byStatus["200"] ?? 0;
          const throttled = relay.stats.byStatus["429"] ?? 0;
          // With the headers the limiter stops before the bucket is empty; without them it learns
          // from the first 429s (each pauses the host and halves the rate).
          assert(throttled <= (okLimitHeaders ? 2 : 8), `${throttled} 429s`);
          assert(ok / seconds <= 20 * 1.25, `${(ok / seconds).toFixed(1)} rps`);
        } finally {
          await index.close();
          await relay.close();
          await db.drop();
          await Deno.remove(dir, { recursive: true });
        }
      },
    );
  }
});

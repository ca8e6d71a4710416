import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { BusyError } from "../lib/util/errors.ts";
import { makeWorld, worldFromLists } from "../lib/sim/world.ts";
import { backfillFixture, indexDids, testIndex } from "./_helpers.ts";

Deno.test("a collection marked complete in Postgres but missing from a new index is backfilled again", async () => {
  const world = makeWorld({ seed: 71, largeSizes: [300], collections: 3 });
  await using f = await backfillFixture({ label: "edge", relay: { world } });
  await (await f.backfiller.start({ source: f.source })).done;
  // The operator replaces the index volume; Postgres still says complete.
  await using replaced = await testIndex();
  const again = await f.makeBackfiller({ index: replaced.index }).start({ source: f.source });
  assertEquals(again.queued, world.collections().length);
  await again.done;
  for (const c of world.collections()) {
    assertEquals(await indexDids(replaced.index, c), [...world.dids(c)].sort(), c);
    assertEquals((await f.db.progress.get(c))?.imported, world.size(c));
  }
});

Deno.test("reset holds the backfiller: a start during a reset is refused, and vice versa", async () => {
  const world = makeWorld({ seed: 73, largeSizes: [2000], collections: 2 });
  await using f = await backfillFixture({
    label: "edge",
    relay: { world, latencyMs: 20 },
    backfiller: { pageLimit: 100 },
  });
  const b = f.backfiller, source = f.source;
  await (await b.start({ source })).done;
  const [c] = world.collections();
  const resetting = b.reset([c]);
  await assertRejects(() => b.start({ source }), BusyError);
  assertEquals((await resetting).reset, [c]);
  const run = await b.start({ source });
  await assertRejects(() => b.reset([c]), BusyError);
  await run.done;
  assertEquals((await f.db.progress.get(c))?.imported, world.size(c));
});

Deno.test("a source that keeps sending fresh cursors over DIDs it already listed is stopped", async () => {
  const same = Array.from({ length: 6000 }, () => "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa");
  await using f = await backfillFixture({
    label: "edge",
    relay: { world: worldFromLists({ "com.example.loop": same }) },
    backfiller: { pageLimit: 100 },
  });
  const summary =
    await (await f.backfiller.start({ source: f.source, collections: ["com.example.loop"] }))
      .done;
  assertEquals(summary.failed.length, 1);
  assert(summary.failed[0].error.includes("already listed"), summary.failed[0].error);
  assert(f.relay.stats.pages < 60, `stopped after ${f.relay.stats.pages} pages`);
  assertEquals((await f.db.progress.get("com.example.loop"))?.imported, 1);
});

Deno.test("against a 20 rps token bucket the run stays under it, nearly free of 429s, and exact", async (t) => {
  const world = makeWorld({ seed: 79, largeSizes: [1500, 1200, 900], collections: 6 });
  for (const okLimitHeaders of [true, false]) {
    await t.step(
      okLimitHeaders ? "RateLimit-* on every answer" : "only a 429 says so",
      async () => {
        // Our own cap is twice the source's: only the source's signals keep us under it.
        await using f = await backfillFixture({
          label: "edge",
          relay: { world, latencyMs: 5, maxRps: 20, limitHeaders: "retry-after", okLimitHeaders },
          backfiller: { pageLimit: 50, maxRps: 40, concurrency: 4, maxAttempts: 20 },
        });
        const started = performance.now();
        const summary = await (await f.backfiller.start({ source: f.source })).done;
        const seconds = (performance.now() - started) / 1000;
        assertEquals(summary.failed, []);
        for (const c of world.collections()) {
          assertEquals(await indexDids(f.index, c), [...world.dids(c)].sort(), c);
        }
        const ok = f.relay.stats.byStatus["200"] ?? 0;
        const throttled = f.relay.stats.byStatus["429"] ?? 0;
        // With the headers the limiter stops before the bucket is empty; without them it learns
        // from the first 429s (each pauses the host and halves the rate).
        assert(throttled <= (okLimitHeaders ? 2 : 8), `${throttled} 429s`);
        // A ceiling on the rate, the behaviour under test: a slow machine only lowers it.
        assert(ok / seconds <= 20 * 1.25, `${(ok / seconds).toFixed(1)} rps`);
      },
    );
  }
});

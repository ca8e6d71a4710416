/** Tests for lib/run/retry_loop.ts: the server's loop that runs failed collections again once due. */
import { assert, assertEquals } from "./_assert.ts";
import { IndexStore } from "../lib/index/store.ts";
import { silentLogger } from "../lib/util/log.ts";
import { makeWorld } from "../lib/sim/world.ts";
import { startSimRelay } from "../lib/sim/relay.ts";
import { parseSource } from "../lib/source/source.ts";
import { startRetryLoop } from "../lib/run/retry_loop.ts";
import { testBackfiller, testDb, until } from "./_helpers.ts";

Deno.test("server's retry loop runs failed collections again once they are due", async () => {
  const world = makeWorld({ seed: 79, largeSizes: [250], collections: 4 });
  const bad = world.collections()[1];
  const relay = await startSimRelay({ world, forbidden: [bad] });
  const db = await testDb("edge");
  const dir = await Deno.makeTempDir();
  const index = await IndexStore.open({ path: dir });
  const ac = new AbortController();
  try {
    const b = testBackfiller({ index, db, listUrl: `${relay.url}/llms.txt` });
    const first = await (await b.start({ source: parseSource(relay.url) })).done;
    assertEquals(first.failed.map((f) => f.collection), [bad]);
    relay.setFaults({ forbidden: [] });
    startRetryLoop({
      backfiller: b,
      progress: db.progress,
      log: silentLogger,
      signal: ac.signal,
      everyMs: 20,
    });
    await until(async () => (await db.progress.get(bad))?.completedAt != null, {
      timeoutMs: 120_000,
      what: "the retry loop to complete the failed collection",
      everyMs: 20,
    });
    await until(() => !b.running, { timeoutMs: 120_000, what: "the retry run to end" });
    const row = await db.progress.get(bad);
    assert(row?.completedAt, "retried and completed");
    assertEquals(row?.imported, world.size(bad));
    assertEquals(row?.lastError, null);
  } finally {
    ac.abort();
    await index.close();
    await relay.close();
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Tests for lib/run/retry_loop.ts: the server's loop that runs failed collections again once due. */
import { assert, assertEquals } from "./_assert.ts";
import { silentLogger } from "../lib/util/log.ts";
import { makeWorld } from "../lib/sim/world.ts";
import { startRetryLoop } from "../lib/run/retry_loop.ts";
import { backfillFixture, until } from "./_helpers.ts";

Deno.test("server's retry loop runs failed collections again once they are due", async () => {
  const world = makeWorld({ seed: 79, largeSizes: [250], collections: 4 });
  const bad = world.collections()[1];
  await using f = await backfillFixture({ label: "retry", relay: { world, forbidden: [bad] } });
  const ac = new AbortController();
  f.defer(() => ac.abort());
  const b = f.backfiller;
  const first = await (await b.start({ source: f.source })).done;
  assertEquals(first.failed.map((x) => x.collection), [bad]);
  f.relay.setFaults({ forbidden: [] });
  startRetryLoop({
    backfiller: b,
    progress: f.db.progress,
    log: silentLogger,
    signal: ac.signal,
    everyMs: 20,
  });
  await until(async () => (await f.db.progress.get(bad))?.completedAt != null, {
    timeoutMs: 120_000,
    what: "the retry loop to complete the failed collection",
    everyMs: 20,
  });
  await until(() => !b.running, { timeoutMs: 120_000, what: "the retry run to end" });
  const row = await f.db.progress.get(bad);
  assert(row?.completedAt, "retried and completed");
  assertEquals(row?.imported, world.size(bad));
  assertEquals(row?.lastError, null);
});

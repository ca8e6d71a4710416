/** Issue 13 in the live consumer: doubt keeps pairs (counted by reason), and a Jetstream's deletes change nothing. */
import { assert, assertEquals } from "./_assert.ts";
import { indexDids, testIndex, until } from "./_helpers.ts";
import { makeWorld, type SimRelay, startSimRelay } from "../lib/sim/mod.ts";
import { LiveConsumer, parseStreamUrl } from "../lib/stream/mod.ts";
import type { IndexStore } from "../lib/index/mod.ts";
import { silentLogger } from "../lib/util/mod.ts";

/** Runs a consumer over the whole backlog of `path` and returns its status at the end. */
async function consumeAll(relay: SimRelay, index: IndexStore, path: string) {
  const endpoint = parseStreamUrl(relay.url.replace("http", "ws") + path);
  const first = await LiveConsumer.open({ endpoint, index, log: silentLogger });
  // No saved cursor means "from now": replay the backlog as if the cursor were 0.
  await index.applyLive([], { stream: endpoint.url, value: { ...first.checkpoint, cursor: 0 } });
  const live = await LiveConsumer.open({ endpoint, index, log: silentLogger, flushMs: 20 });
  const ac = new AbortController();
  const running = live.run(ac.signal);
  try {
    const last = path === "/subscribe" ? relay.stream.lastTimeUs : relay.stream.lastSeq;
    await until(() => live.checkpoint.cursor >= last, {
      timeoutMs: 60_000,
      what: "the consumer to reach the end",
    });
    return live.status();
  } finally {
    ac.abort();
    await running;
  }
}

/** The pairs the index holds, per collection of the world. */
async function pairs(index: IndexStore, relay: SimRelay): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  for (const c of relay.world.collections()) out.set(c, new Set(await indexDids(index, c)));
  return out;
}

/** A world whose every listed pair is in the index already (as after a backfill). */
async function backfilled(index: IndexStore, relay: SimRelay): Promise<void> {
  for (const c of relay.world.collections()) {
    const dids = relay.world.dids(c);
    if (dids.length > 0) {
      await index.applyLive(dids.map((did) => ({ kind: "add", collection: c, did })));
    }
  }
}

const WORLD = { seed: 21, largeSizes: [120, 80], collections: 6, tailMax: 20 };
const MIX = { delete: 0.4, update: 0.05, repeat: 0.9, accountDelete: 0 };

Deno.test("live deletes: commits that prove nothing remove nothing, and are counted by reason", async () => {
  const relay = await startSimRelay({
    world: makeWorld(WORLD),
    stream: { seed: 21, realRepos: true, mix: { ...MIX, unprovable: 1 } },
  });
  const { index, cleanup } = await testIndex();
  try {
    await backfilled(index, relay);
    const before = await pairs(index, relay);
    await relay.stream.generate(800);
    const s = await consumeAll(relay, index, "/xrpc/com.atproto.sync.subscribeRepos");
    // Every commit withheld, corrupted or pre-v1.1: creates still add; a delete removes only when
    // the commit still proves it (a withheld commit that empties the whole repo needs no blocks).
    assertEquals(Object.keys(s.deletes_kept_by_reason).sort(), [
      "bad_block",
      "missing_blocks",
      "no_prev_data",
    ]);
    const kept = Object.values(s.deletes_kept_by_reason).reduce((a, b) => a + b, 0);
    assert(kept > 100, `${kept} deletes kept`);
    const perCollection = Object.values(s.collections).flatMap((c) =>
      Object.values(c.deletes_kept)
    );
    assertEquals(perCollection.reduce((a, b) => a + b, 0), kept, "per collection adds up");
    assert(s.pairs_removed_by_proof < kept / 10, `few removals: ${s.pairs_removed_by_proof}`);
    const after = await pairs(index, relay);
    let keptPairs = 0;
    for (const [c, dids] of before) {
      const truth = new Set(relay.stream.truth(c));
      for (const did of dids) {
        // Doubt never removes: whatever left the index has truly left the collection.
        if (!after.get(c)!.has(did)) assert(!truth.has(did), `${c} ${did} wrongly removed`);
        else if (!truth.has(did)) keptPairs++;
      }
    }
    assert(keptPairs > 10, `${keptPairs} pairs kept for want of proof`);
  } finally {
    await relay.close();
    await cleanup();
  }
});

Deno.test("live deletes: on a Jetstream deletes change nothing; on the firehose the same stream is exact", async () => {
  for (const path of ["/subscribe", "/xrpc/com.atproto.sync.subscribeRepos"]) {
    const relay = await startSimRelay({
      world: makeWorld(WORLD),
      stream: { seed: 22, realRepos: true, mix: MIX },
    });
    const { index, cleanup } = await testIndex();
    try {
      await backfilled(index, relay);
      const before = await pairs(index, relay);
      await relay.stream.generate(800);
      const s = await consumeAll(relay, index, path);
      const after = await pairs(index, relay);
      if (path === "/subscribe") {
        assertEquals(s.pairs_removed, 0);
        assert((s.deletes_kept_by_reason.jetstream ?? 0) > 50, "deletes kept: jetstream");
        for (const [c, dids] of before) {
          for (const did of dids) assert(after.get(c)!.has(did), `${c} ${did} kept`);
        }
      } else {
        assert(s.pairs_removed_by_proof > 10, `removed by proof: ${s.pairs_removed_by_proof}`);
        assertEquals(s.deletes_kept_by_reason, {});
        for (const [c, dids] of after) assertEquals(dids, new Set(relay.stream.truth(c)), c);
      }
    } finally {
      await relay.close();
      await cleanup();
    }
  }
});

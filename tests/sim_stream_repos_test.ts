/** The sim firehose with real repos: every commit proves what it did, and proofs lead to the truth. */
import { assert, assertEquals } from "./_assert.ts";
import { makeWorld, startSimRelay } from "../lib/sim/mod.ts";
import { collect } from "./_helpers.ts";
import { proveCommit } from "../lib/stream/proof.ts";

Deno.test("sim firehose with real repos: a model applying proven commits ends at the truth", async () => {
  const world = makeWorld({ seed: 11, accounts: 300, collections: 6, largeSizes: [120, 80] });
  const relay = await startSimRelay({
    world,
    stream: { seed: 11, realRepos: true, mix: { delete: 0.45, update: 0.1, repeat: 0.9 } },
  });
  try {
    // The model starts from what the source lists (every account's history) and follows the stream.
    const model = new Map<string, Set<string>>();
    for (const c of world.collections()) model.set(c, new Set(relay.stream.truth(c)));
    const N = 1500;
    await relay.stream.generate(N);
    const ws = relay.url.replace("http", "ws") + "/xrpc/com.atproto.sync.subscribeRepos?cursor=0";
    const last = relay.stream.lastSeq;
    const { events } = await collect(ws, (e) => {
      const ev = e[e.length - 1];
      return "cursor" in ev && ev.cursor !== undefined && ev.cursor >= last;
    }, 60_000);
    let emptied = 0, entered = 0, deletes = 0;
    for (const ev of events) {
      if (ev.type === "account" && ev.status === "deleted") {
        for (const s of model.values()) s.delete(ev.did);
      }
      if (ev.type !== "commit") continue;
      const p = await proveCommit(ev.firehose!);
      assert(
        p.proven,
        `commit ${ev.cursor} proves: ${!p.proven && p.reason} ${!p.proven && p.detail}`,
      );
      for (const op of ev.ops) {
        if (op.action === "delete") deletes++;
        else {
          if (!model.has(op.collection)) model.set(op.collection, new Set());
          model.get(op.collection)!.add(ev.did);
        }
      }
      for (const c of p.emptied) model.get(c)?.delete(ev.did), emptied++;
      entered += p.entered.length;
    }
    assert(deletes > 100 && emptied > 20 && entered > 20, `${deletes} deletes, ${emptied} emptied`);
    for (const [c, dids] of model) {
      assertEquals(new Set(relay.stream.truth(c)), dids, c);
    }
  } finally {
    await relay.close();
  }
});

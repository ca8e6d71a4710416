/**
 * End to end: `main.ts start` follows the sim relay's firehose while a backfill pages the same
 * relay into one index; the server is killed with SIGKILL several times mid-stream. When both have
 * settled, the index equals the sim world's truth exactly and every count adds up.
 */
import { assert, assertEquals } from "./_assert.ts";
import { type Child, freePort, freshDatabase, spawnMain } from "./_child.ts";
import { indexDids, until } from "./_helpers.ts";
import { sleep } from "../lib/util/async.js";
import { IndexStore } from "../lib/index/mod.ts";
import { makeWorld, startSimRelay } from "../lib/sim/mod.ts";

const PASSWORD = "e2e-live";

Deno.test({
  name: "live e2e: stream + backfill into one index, kill -9 three times, index equals the truth",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const relay = await startSimRelay({
      world: makeWorld({ seed: 21, largeSizes: [6000, 4000, 2000], collections: 15 }),
      stream: { seed: 21 },
    });
    const db = await freshDatabase("live_e2e");
    const dataDir = await Deno.makeTempDir({ prefix: "backfill-live-e2e-" });
    const port = freePort();
    const base = `http://127.0.0.1:${port}`;
    const auth = { authorization: `Bearer ${PASSWORD}` };
    const env = {
      DATABASE_URL: db.url,
      DATA_DIR: dataDir,
      PORT: String(port),
      HOST: "127.0.0.1",
      RELAY_ADMIN_PASSWORD: PASSWORD,
      BACKFILL_SOURCE: relay.url,
      LEXICON_LIST_URL: `${relay.url}/llms.txt`,
      LIVE_STREAM_URL: relay.url.replace("http", "ws") + "/xrpc/com.atproto.sync.subscribeRepos",
      BACKFILL_PAGE_LIMIT: "100",
      BACKFILL_MAX_RPS: "200",
      BACKFILL_CONCURRENCY: "3",
      LOG_LEVEL: "error",
    };
    // deno-lint-ignore no-explicit-any
    const status = async (): Promise<any> => {
      const r = await fetch(`${base}/admin/backfill-collections`, { headers: auth });
      if (!r.ok) throw new Error(`status ${r.status}`);
      return await r.json();
    };
    let child: Child | undefined;
    const start = async () => {
      child = spawnMain(["start"], env);
      await until(() =>
        (async () => {
          if (child!.exited) throw new Error(`server exited: ${await child!.stderr}`);
          return (await status()).live?.connected === true;
        })().catch(() => false), {
        timeoutMs: 60_000,
        what: "the server's live stream to connect",
      });
    };
    try {
      await start();
      // The stream first, then the backfill: the procedure the README gives for a new index.
      assert((await status()).live.catch_up_needed, "a new index needs a backfill");
      relay.stream.setRate(400);
      relay.stream.start();
      const r = await fetch(`${base}/admin/backfill-collections`, {
        method: "POST",
        headers: auth,
      });
      assertEquals(r.status, 200, await r.text());
      for (let kill = 0; kill < 3; kill++) {
        await sleep(700 + kill * 400); // the workload: each SIGKILL later into the run
        child!.kill("SIGKILL");
        await child!.status;
        await start();
      }
      relay.stream.stop();
      // Settle: the stream drained to the last seq, the backfill done, then a catch-up for what
      // the source appended while it ran.
      const last = relay.stream.lastSeq;
      await until(() => (async () => (await status()).live.cursor >= last)().catch(() => false), {
        timeoutMs: 120_000,
        what: "the stream",
      });
      await until(() =>
        (async () => {
          const s = await status();
          return !s.running && s.completed === s.total && s.total > 0;
        })().catch(() => false), { timeoutMs: 180_000, what: "the backfill to finish" });
      const c = await fetch(`${base}/admin/backfill-collections?mode=catch-up`, {
        method: "POST",
        headers: auth,
      });
      assertEquals(c.status, 200, await c.text());
      await until(() =>
        (async () => {
          const s = await status();
          return !s.running && s.completed === s.total;
        })().catch(() => false), { timeoutMs: 180_000, what: "the catch-up to finish" });
      await until(() => (async () => !(await status()).live.catch_up_needed)().catch(() => false), {
        timeoutMs: 30_000,
        what: "the mark to clear",
      });
      const final = await status();
      child!.kill("SIGTERM");
      await child!.status;
      assert(relay.stream.deletedDids().length > 0, "some accounts were deleted");
      assertEquals(final.live.accounts_deleted, relay.stream.deletedDids().length);

      const index = await IndexStore.open({ path: `${dataDir}/index` });
      try {
        const live = index.liveCounts();
        for (const col of relay.world.collections()) {
          const want = relay.stream.truth(col).sort();
          const got = (await indexDids(index, col)).sort();
          assertEquals(
            got.length,
            want.length,
            `${col}: index ${got.length}, truth ${want.length}`,
          );
          assertEquals(got, want, col);
          const cp = await index.getCheckpoint(col);
          // Every DID the source listed counts, deleted accounts included.
          assertEquals(cp?.imported ?? 0, relay.world.size(col), `${col}: imported`);
          const l = live.get(col) ?? { added: 0, removed: 0 };
          assertEquals(
            got.length,
            (cp?.new ?? 0) + l.added - l.removed,
            `${col}: pairs = new + live added - live removed`,
          );
        }
        for (const did of relay.stream.deletedDids()) {
          assertEquals(await index.collectionsOf(did), [], `${did} left every collection`);
        }
      } finally {
        await index.close();
      }
    } finally {
      child?.kill("SIGKILL");
      await child?.status;
      await relay.close();
      await db.drop();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});

/**
 * Issue 13 end to end: the server (a child process) follows a sim firehose of real sync v1.1
 * commits (creates, updates, deletes, deletes of a collection's last record, account deletions)
 * while it backfills the sim's listing, and is killed with SIGKILL between rounds of the workload.
 * When both have settled, the index holds exactly the repos that hold a record in each collection.
 */
import { assert, assertEquals } from "./_assert.ts";
import { startSimRelay } from "../lib/sim/relay.ts";
import { makeWorld, seededRandom } from "../lib/sim/world.ts";
import { freePort, freshDatabase, readIndex, spawnMain } from "./_child.ts";
import { until } from "./_helpers.ts";
import { sleep } from "../lib/util/async.js";

const SEED = Number(Deno.env.get("LIVE_E2E_SEED") ?? 1313);

Deno.test("live deletes e2e: thousands of real commits, SIGKILLs between them; index = repos' truth", async () => {
  const world = makeWorld({ seed: SEED, largeSizes: [300, 200], collections: 10, tailMax: 30 });
  const relay = await startSimRelay({
    world,
    stream: {
      seed: SEED,
      realRepos: true,
      // Deletes often, mostly by accounts that write again: many collections empty and refill.
      mix: { delete: 0.35, update: 0.05, repeat: 0.85, multiOp: 0.1, accountDelete: 0.004 },
    },
  });
  const db = await freshDatabase("live_e2e");
  const dataDir = await Deno.makeTempDir({ prefix: "backfill-live-e2e-" });
  const password = "live-e2e";
  const env: Record<string, string> = {
    DATABASE_URL: db.url,
    DATA_DIR: dataDir,
    BACKFILL_SOURCE: relay.url,
    LEXICON_LIST_URL: `${relay.url}/llms.txt`,
    BACKFILL_PAGE_LIMIT: "20",
    BACKFILL_CONCURRENCY: "2",
    BACKFILL_MAX_RPS: "1000",
    LIVE_STREAM_URL: relay.url.replace("http", "ws") + "/xrpc/com.atproto.sync.subscribeRepos",
    RELAY_ADMIN_PASSWORD: password,
    LOG_LEVEL: "warn",
  };
  const auth = { authorization: `Bearer ${password}` };
  const serve = async () => {
    const port = freePort();
    const child = spawnMain(["start"], { ...env, PORT: String(port), HOST: "127.0.0.1" });
    const base = `http://127.0.0.1:${port}`;
    const call = async (method: string, path = "/admin/backfill-collections") => {
      const res = await fetch(base + path, { method, headers: auth });
      return { status: res.status, body: await res.json() };
    };
    await until(async () => {
      if (child.exited) throw new Error(`server exited: ${await child.stderr}`);
      const s = await call("GET").catch(() => undefined);
      return s?.status === 200 && s.body.live?.connected;
    }, { timeoutMs: 60_000, what: "the server to come up and connect", everyMs: 50 });
    // The backfill resumes by itself after a restart; start it when no run is going.
    const r = await call("POST");
    assert(r.status === 200 || r.status === 409, JSON.stringify(r.body));
    const metrics = () => fetch(`${base}/metrics`).then((r) => r.text());
    return { child, call, metrics };
  };
  try {
    // Five SIGKILLs, each at a seeded moment while a round of 700 events is being generated.
    const rand = seededRandom(SEED);
    const kills = Array.from(
      { length: Number(Deno.env.get("LIVE_E2E_KILLS") ?? 5) },
      () => 100 + Math.floor(rand() * 1500),
    );
    let server = await serve();
    // A consumer without a saved cursor starts at the stream's tip: the index follows the stream
    // without a gap only from its first durable cursor on (the README's start procedure).
    await relay.stream.generate(5);
    await until(async () => (await server.call("GET")).body.live?.cursor != null, {
      what: "a durable live cursor",
      everyMs: 50,
    });
    for (const [i, delayMs] of kills.entries()) {
      const generating = relay.stream.generate(700);
      await sleep(delayMs); // the workload: a SIGKILL at a seeded moment of the round
      server.child.kill("SIGKILL");
      await server.child.status;
      await generating;
      console.log(`kill ${i + 1} after ${delayMs} ms; stream at seq ${relay.stream.lastSeq}`);
      server = await serve();
    }
    await relay.stream.generate(700);

    // Settle: the consumer reaches the stream's last seq and the backfill completes.
    let last: Record<string, unknown> = {};
    await until(async () => {
      const s = await server.call("GET");
      last = s.body;
      const live = s.body.live;
      const done = s.body.total > 0 && s.body.completed === s.body.total && !s.body.running;
      if (done && live?.cursor >= relay.stream.lastSeq) return true;
      if (!s.body.running && !done) await server.call("POST");
      return false;
    }, { timeoutMs: 120_000, what: "the stream and the backfill to settle", everyMs: 100 })
      .catch((err) => {
        throw new Error(`${err.message}: ${JSON.stringify({ ...last, collections: undefined })}`);
      });
    const live = last.live as Record<string, number> & { deletes_kept_by_reason: object };
    // The same counts reach /metrics, per collection.
    const text = await server.metrics();
    const proofLines = text.split("\n").filter((l) =>
      l.startsWith("backfill_live_pairs_total{") && l.includes('change="removed_by_proof"')
    );
    const sum = proofLines.reduce((n, l) => n + Number(l.split(" ").at(-1)), 0);
    assertEquals(sum, live.pairs_removed_by_proof, "/metrics agrees with status");
    server.child.kill("SIGTERM");
    assertEquals((await server.child.waitFor(10_000))?.code, 0, "clean stop");

    const snap = await readIndex(dataDir, world);
    const names = new Set([...world.collections(), ...snap.dids.keys()]);
    let pairs = 0;
    for (const c of names) {
      const truth = new Set(relay.stream.truth(c));
      assertEquals(new Set(snap.dids.get(c) ?? []), truth, `${c}: index = repos holding a record`);
      pairs += truth.size;
    }
    const repos = relay.stream.repos!;
    console.log(
      `${relay.stream.stats.events} events, ${repos.written().size} repos written, ${pairs} pairs; ` +
        `removed by proof ${live.pairs_removed_by_proof}, first records ${live.pairs_added_by_first_record}`,
    );
    assert(live.pairs_removed_by_proof > 20, "proven removals happened");
    assert(live.pairs_added_by_first_record > 20, "first records were proven");
    assertEquals(live.deletes_kept_by_reason, {}, "every delete was provable");
  } finally {
    await relay.close();
    await db.drop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

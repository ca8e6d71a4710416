import { assert, assertEquals } from "./_assert.ts";
import { parseConfig } from "../lib/app/config.ts";
import { openRuntime } from "../lib/app/runtime.ts";
import { serve } from "../lib/app/server.ts";
import { createLogger } from "../lib/util/log.ts";
import { makeWorld } from "../lib/sim/world.ts";
import { startSimRelay } from "../lib/sim/relay.ts";
import { createSql } from "../lib/progress/store.ts";
import { TEST_DATABASE_URL, until } from "./_helpers.ts";
import { freePort } from "./_child.ts";

Deno.test("server: a deleted index is detected at startup, logged, shown in status and /readyz, and imported again", async () => {
  const world = makeWorld({ seed: 83, largeSizes: [1500, 900], collections: 5 });
  const relay = await startSimRelay({ world, latencyMs: 20 });
  const schema = `test_identity_${crypto.randomUUID().slice(0, 8)}`;
  const admin = createSql(TEST_DATABASE_URL, { max: 1 });
  await admin.unsafe(`CREATE SCHEMA ${schema}`);
  const dataDir = await Deno.makeTempDir();
  const port = freePort();
  const config = parseConfig({
    DATABASE_URL: TEST_DATABASE_URL,
    DATA_DIR: dataDir,
    PORT: String(port),
    HOST: "127.0.0.1",
    RELAY_ADMIN_PASSWORD: "pw",
    BACKFILL_SOURCE: relay.url,
    LEXICON_LIST_URL: `${relay.url}/llms.txt`,
    BACKFILL_MAX_RPS: "1000",
    BACKFILL_PAGE_LIMIT: "100",
  });
  const lines: string[] = [];
  const log = createLogger({ level: "info", write: (l) => lines.push(l) });
  const ac = new AbortController();
  let serving: Promise<void> | undefined;
  try {
    const first = await openRuntime({ config, log, schema });
    assertEquals(
      first.indexCheck.replaced,
      false,
      "a new index with no progress is not 'replaced'",
    );
    assertEquals((await (await first.backfiller.start({ source: config.source })).done).failed, []);
    await first.close();
    const again = await openRuntime({ config, log, schema });
    assertEquals(again.indexCheck.replaced, false, "the same index after a restart");
    await again.close();

    await Deno.remove(`${dataDir}/index`, { recursive: true });
    // `migrate` does not compare (run elsewhere it would find no index): nothing is marked.
    const migrateOnly = await openRuntime({ config, log, schema, checkIndex: false });
    assert((await migrateOnly.progress.list()).every((r) => r.completedAt !== null && !r.reimport));
    await migrateOnly.close();
    lines.length = 0;
    const rt = await openRuntime({ config, log, schema });
    assertEquals(rt.indexCheck.replaced, true);
    assertEquals([...rt.indexCheck.marked], [...world.collections()].sort());
    const warning = lines.map((l) => JSON.parse(l)).find((l) =>
      l.msg.startsWith("index is missing")
    );
    assert(warning, lines.join("\n"));
    assertEquals(warning.marked, world.collections().length);
    for (const r of await rt.progress.list()) {
      assert(r.completedAt === null && r.reimport && r.imported === 0, r.collection);
    }

    // Served: /readyz says 503 until the server has imported them again.
    const base = `http://127.0.0.1:${port}`;
    const status = async () =>
      await (await fetch(`${base}/admin/backfill-collections`, {
        headers: { authorization: "Bearer pw" },
      })).json();
    let ready = 0;
    serving = serve({
      open: () => Promise.resolve(rt),
      config,
      log,
      signal: ac.signal,
      onListen: () => ready++,
    });
    await until(() => ready > 0, { timeoutMs: 10_000, what: "the server to listen" });
    // It listens during startup; "ready" says the whole service answers.
    await until(() => lines.some((l) => JSON.parse(l).msg === "ready"), {
      timeoutMs: 10_000,
      what: 'the "ready" log line',
    });
    // By then the HTTP front lists from the index on its own thread.
    assert(
      lines.some((l) => JSON.parse(l).msg === "listings are served on the HTTP front's thread"),
      lines.join("\n"),
    );
    // `deno task test` runs without --expose-gc, which the front says (deno task start sets it).
    assertEquals(
      lines.some((l) => JSON.parse(l).msg.startsWith("V8's gc is not exposed")),
      typeof (globalThis as { gc?: unknown }).gc !== "function",
      lines.join("\n"),
    );
    // 15 pages at 20 ms each at the least: the re-import is still going.
    const early = await fetch(`${base}/readyz`);
    const body = await early.json();
    assertEquals(early.status, 503, JSON.stringify(body));
    assert(body.reimport_pending > 0, JSON.stringify(body));
    const s = await status();
    assert(
      s.index.replaced_at !== null && s.completed < world.collections().length,
      JSON.stringify(s),
    );
    if (early.status !== 200) {
      await until(async () => {
        const res = await fetch(`${base}/readyz`);
        await res.body?.cancel();
        return res.status === 200;
      }, { timeoutMs: 60_000, what: "the re-import to finish (/readyz 200)", everyMs: 50 });
    }
    const done = await status();
    assertEquals(done.completed, world.collections().length);
    assertEquals(done.index.reimport, 0);
    const big = world.collections().find((c) => world.size(c) === 1500)!;
    const xrpc = await (await fetch(
      `${base}/xrpc/com.atproto.sync.listReposByCollection?collection=${big}&limit=2000`,
    )).json();
    assertEquals(xrpc.repos.length, 1500);
  } finally {
    ac.abort();
    await serving;
    await relay.close();
    await admin.unsafe(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
    await Deno.remove(dataDir, { recursive: true });
  }
});

import { assert, assertEquals } from "./_assert.ts";
import { type Config, parseConfig } from "../lib/app/config.ts";
import { createLogger, type Logger } from "../lib/util/log.ts";
import { openRuntime, renderMetrics, type Runtime } from "../lib/app/runtime.ts";
import { makeWorld } from "../lib/sim/world.ts";
import { startSimRelay } from "../lib/sim/relay.ts";
import { createSql } from "../lib/progress/store.ts";
import { TEST_DATABASE_URL } from "./_helpers.ts";

/** Parses Prometheus text format strictly enough to catch malformed lines; returns samples by name. */
function parseProm(text: string): Map<string, { labels: Record<string, string>; value: number }[]> {
  const out = new Map<string, { labels: Record<string, string>; value: number }[]>();
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      if (meta[1] === "TYPE") types.set(meta[2], meta[3]);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+]+|\+Inf|-Inf|NaN)$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2];
    }
    const value = m[4] === "+Inf" ? Infinity : Number(m[4]);
    out.set(m[1], [...(out.get(m[1]) ?? []), { labels, value }]);
  }
  for (const name of out.keys()) {
    const base = name.replace(/_(bucket|sum|count)$/, "");
    assert(types.has(name) || types.has(base), `sample ${name} has no TYPE`);
  }
  return out;
}

/** Opens a runtime against `relayUrl` on a new schema and data directory, runs `fn`, cleans up. */
async function withRuntime(
  relayUrl: string,
  opts: { env?: Record<string, string>; log?: Logger; oneShot?: boolean },
  fn: (rt: Runtime, config: Config) => Promise<void>,
): Promise<void> {
  const schema = `test_runtime_${crypto.randomUUID().slice(0, 8)}`;
  const admin = createSql(TEST_DATABASE_URL, { max: 1 });
  await admin.unsafe(`CREATE SCHEMA ${schema}`);
  const dataDir = await Deno.makeTempDir();
  try {
    const config = parseConfig({
      DATABASE_URL: TEST_DATABASE_URL,
      DATA_DIR: dataDir,
      BACKFILL_SOURCE: relayUrl,
      LEXICON_LIST_URL: `${relayUrl}/llms.txt`,
      ...opts.env,
    });
    const log = opts.log ?? createLogger({ level: "error", write() {} });
    const rt = await openRuntime({ config, log, schema, oneShot: opts.oneShot });
    try {
      await fn(rt, config);
    } finally {
      await rt.close();
    }
  } finally {
    await admin.unsafe(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
    await Deno.remove(dataDir, { recursive: true });
  }
}

Deno.test("runtime: a real run's /metrics covers pages, DIDs, statuses, latency, limiter, states and index size; logs hold no secrets", async () => {
  const world = makeWorld({ seed: 61, largeSizes: [1500, 600], collections: 8 });
  const relay = await startSimRelay({ world, rate429: 0.2, retryAfterSec: 0 });
  const lines: string[] = [];
  const secret = "very-secret-admin-token";
  const env = {
    RELAY_ADMIN_PASSWORD: secret,
    BACKFILL_MAX_RPS: "1000",
    BACKFILL_PAGE_LIMIT: "100",
    LOG_LEVEL: "debug",
  };
  const log = createLogger({ level: "debug", write: (l) => lines.push(l) });
  try {
    await withRuntime(relay.url, { env, log, oneShot: true }, async (rt, config) => {
      const summary = await (await rt.backfiller.start({ source: config.source })).done;
      assertEquals(summary.failed, []);
      const m = parseProm(await renderMetrics(rt));
      const total = world.collections().reduce((n, c) => n + world.size(c), 0);
      assertEquals(m.get("backfill_dids_imported_total")?.[0].value, total);
      assertEquals(m.get("backfill_dids_imported_total")?.[0].labels.source, relay.url);
      assert((m.get("backfill_pages_total")?.[0].value ?? 0) >= world.collections().length);
      const statuses = new Set(
        m.get("backfill_source_responses_total")?.map((s) => s.labels.status),
      );
      assert(statuses.has("200") && statuses.has("429"), [...statuses].join());
      const count = m.get("backfill_source_request_seconds_count")?.[0].value ?? 0;
      const responses = m.get("backfill_source_responses_total")!.reduce((n, s) => n + s.value, 0);
      assertEquals(count, responses, "every timed request has a status");
      // Every request the client made: the pages, and the source's collection sizes.
      const sizeRequests = relay.stats.byPath["/v1/listCollections"] ?? 0;
      assert(sizeRequests > 0, "the sizes went through the client");
      assertEquals(
        responses,
        Object.values(relay.stats.byCollection).reduce((a, b) => a + b, 0) + sizeRequests,
      );
      assert(m.has("backfill_rate_limiter_wait_seconds_total"));
      assert((m.get("backfill_source_throttled_total")?.[0].value ?? 0) > 0);
      const states = new Map(m.get("backfill_collections")?.map((s) => [s.labels.state, s.value]));
      assertEquals(states.get("completed"), world.collections().length);
      assert((m.get("backfill_index_size_bytes")?.[0].value ?? -1) >= 0);
      // A one-shot run on a new index: pages after a collection's first skip reads of keys never written.
      const keys = new Map(
        m.get("backfill_index_page_keys_total")?.map((s) => [s.labels.how, s.value]),
      );
      assert((keys.get("skipped") ?? 0) > 0, `page keys ${JSON.stringify([...keys])}`);
      const log = lines.join("\n");
      assert(!log.includes(secret), "the admin token was logged");
      assert(
        lines.every((l) => typeof JSON.parse(l).level === "string"),
        "every log line is JSON with a level",
      );
      assert(lines.some((l) => JSON.parse(l).msg === "collection finished"));
    });
  } finally {
    await relay.close();
  }
});

Deno.test("runtime: /metrics shows each flagged collection's invalid entries", async () => {
  const world = makeWorld({ seed: 67, largeSizes: [47], collections: 3 });
  const bad = [...world.collections()].sort((a, b) => world.size(b) - world.size(a))[0];
  const relay = await startSimRelay({ world, malformed: { [bad]: "non-object-entries" } });
  try {
    await withRuntime(relay.url, {}, async (rt, config) => {
      await (await rt.backfiller.start({ source: config.source })).done;
      const m = parseProm(await renderMetrics(rt));
      assertEquals(m.get("backfill_collection_invalid_entries"), [{
        labels: { collection: bad },
        value: 47,
      }]);
      assertEquals(m.get("backfill_dids_invalid_total")?.[0].value, 47);
      assertEquals(m.get("backfill_collections_reimport_pending")?.[0].value, 0);
    });
  } finally {
    await relay.close();
  }
});

Deno.test("runtime: the fresh filter is on by default for a one-shot run, off for the server unless set", async (t) => {
  const world = makeWorld({ seed: 71, largeSizes: [300, 200], collections: 3 });
  const relay = await startSimRelay({ world });
  const cases: [string, boolean, Record<string, string>, boolean][] = [
    ["one-shot, default", true, {}, true],
    ["server, default", false, {}, false],
    ["server, INDEX_FRESH_FILTER_MB=1", false, { INDEX_FRESH_FILTER_MB: "1" }, true],
    ["one-shot, INDEX_FRESH_FILTER_MB=0", true, { INDEX_FRESH_FILTER_MB: "0" }, false],
  ];
  try {
    for (const [name, oneShot, env, skips] of cases) {
      await t.step(name, async () => {
        const all = { BACKFILL_MAX_RPS: "1000", BACKFILL_PAGE_LIMIT: "50", ...env };
        await withRuntime(relay.url, { env: all, oneShot }, async (rt, config) => {
          await (await rt.backfiller.start({ source: config.source })).done;
          const { read, skipped } = rt.index.pageKeys;
          assert(read + skipped > 0, "pages after the first looked keys up");
          assertEquals(skipped > 0, skips, `read ${read}, skipped ${skipped}`);
        });
      });
    }
  } finally {
    await relay.close();
  }
});

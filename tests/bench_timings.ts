/**
 * Timing figures for `deno task bench`: how long recovery, stopping and giving up take, measured
 * on the scenarios the tests check for correctness. Wall-clock limits live here, as PASS/MISS
 * rows with the figure, not in `deno task test`, where a loaded machine would fail them.
 * Alone: `deno run -A tests/bench_timings.ts`.
 */
import type { LiveFigure } from "./bench_live.ts";
import { pagesReach, proxiedBackfillFixture, until } from "./_helpers.ts";
import { backfillThroughPgRestart, freePort, spawnMain } from "./_child.ts";
import { makeWorld, startSimRelay } from "../lib/sim/mod.ts";
import { parseSource } from "../lib/source/source.ts";
import { SourceClient } from "../lib/source/client.ts";
import { HostLimiter } from "../lib/source/rate_limiter.ts";
import { discoverCollections } from "../lib/source/discovery.ts";
import { silentLogger } from "../lib/util/log.ts";
import { deadline } from "../lib/util/async.js";

/** One timing: what it measures, its limit in ms, and the run that returns the figure in ms. */
interface Timing {
  readonly name: string;
  readonly limitMs: number;
  /** Returns the figure in ms and, optionally, what it was measured on. */
  run(): Promise<{ ms: number; note?: string }>;
}

const TIMINGS: Timing[] = [
  {
    name: "run through 2 Postgres outages (3.5 s)",
    limitMs: 10_000,
    async run() {
      await using f = await proxiedBackfillFixture(101);
      const t0 = performance.now();
      const started = await f.backfiller.start({ source: f.source });
      await pagesReach(f.backfiller, 20);
      await f.proxy.restart(2000, { fatal: true, mode: "refuse" });
      await pagesReach(f.backfiller, f.backfiller.state!.pages + 30);
      await f.proxy.restart(1500, { mode: "starting" });
      const summary = await started.done;
      if (summary.failed.length) throw new Error(`${summary.failed.length} collections failed`);
      return { ms: performance.now() - t0 };
    },
  },
  {
    name: "stop() while Postgres is down (8 s)",
    limitMs: 4_000,
    async run() {
      await using f = await proxiedBackfillFixture(107);
      const started = await f.backfiller.start({ source: f.source });
      await pagesReach(f.backfiller, 10);
      const outage = f.proxy.restart(8000, { mode: "refuse" });
      await until(() => f.warnings.some((l) => l.includes("postgres unreachable")), {
        what: "the run to meet the outage",
      });
      const t0 = performance.now();
      await f.backfiller.stop();
      const ms = performance.now() - t0;
      await started.done;
      await outage;
      return { ms };
    },
  },
  {
    name: "main.ts backfill exit after its last page",
    limitMs: 2_500,
    async run() {
      await using run = await backfillThroughPgRestart();
      if (run.status?.code !== 0) throw new Error(`exit ${run.status?.code}: ${run.stderr}`);
      return { ms: run.msAfterLastPage, note: "1 s Postgres restart mid-run" };
    },
  },
  {
    name: "main.ts migrate, unreachable Postgres",
    limitMs: 30_000,
    async run() {
      const dataDir = await Deno.makeTempDir();
      try {
        const t0 = performance.now();
        const child = spawnMain(["migrate"], {
          DATABASE_URL: `postgres://postgres@127.0.0.1:${freePort()}/nowhere`,
          DATABASE_WAIT_MS: "1500",
          DATA_DIR: dataDir,
          LOG_LEVEL: "error",
        });
        const status = await child.waitFor(60_000);
        if (!status) child.kill("SIGKILL");
        if (status?.code !== 1) throw new Error(`exit ${status?.code}: ${await child.stderr}`);
        return { ms: performance.now() - t0, note: "DATABASE_WAIT_MS 1.5 s" };
      } finally {
        await Deno.remove(dataDir, { recursive: true });
      }
    },
  },
  {
    name: "discovery, list body stalls",
    limitMs: 5_000,
    async run() {
      const server = Deno.serve(
        { port: 0, hostname: "127.0.0.1", onListen() {} },
        () =>
          new Response(
            new ReadableStream({
              start(ctrl) {
                ctrl.enqueue(new TextEncoder().encode("# Lexicon Garden\n"));
              },
            }),
          ),
      );
      try {
        const t0 = performance.now();
        const found = await discoverCollections({
          listUrl: `http://127.0.0.1:${server.addr.port}/llms.txt`,
          indexCollections: () => Promise.resolve([]),
          log: silentLogger,
          timeoutMs: 500,
        });
        if (!found.listError) throw new Error("the stalled list was not an error");
        return { ms: performance.now() - t0, note: "timeoutMs 500" };
      } finally {
        await server.shutdown();
      }
    },
  },
  {
    name: "SourceClient, hanging request, 2 attempts",
    limitMs: 5_000,
    async run() {
      let release!: () => void;
      const gate = new Promise<void>((r) => release = r);
      const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async () => {
        await gate;
        return new Response("too late");
      });
      try {
        const client = new SourceClient({
          source: parseSource(`http://127.0.0.1:${server.addr.port}`),
          limiter: new HostLimiter({ maxRps: 1000 }),
          timeoutMs: 200,
          maxAttempts: 2,
          maxBackoffMs: 1,
          log: silentLogger,
        });
        const t0 = performance.now();
        const err = await client.listRepos("a.b.c", "", 10).then(() => undefined, (e) => e);
        if (!(err instanceof Error)) throw new Error("the hanging request did not fail");
        return { ms: performance.now() - t0, note: "timeoutMs 200" };
      } finally {
        release();
        await server.shutdown();
      }
    },
  },
  {
    name: "sim relay, 2000-DID page, median",
    limitMs: 25,
    async run() {
      const world = makeWorld({ seed: 1, largeSizes: [200000], collections: 1 });
      const relay = await startSimRelay({ world });
      try {
        const c = "app.bsky.feed.like";
        const times: number[] = [];
        for (let i = 0; i < 40; i++) {
          const q = new URLSearchParams({
            collection: c,
            limit: "2000",
            cursor: relay.cursorFor(c, i * 2000),
          });
          const t = performance.now();
          const res = await fetch(`${relay.url}/xrpc/com.atproto.sync.listReposByCollection?${q}`);
          const body = await res.json();
          times.push(performance.now() - t);
          if (body.repos?.length !== 2000) throw new Error(`page ${i}: ${body.repos?.length} DIDs`);
        }
        times.sort((x, y) => x - y);
        return { ms: times[20], note: `40 pages, p95 ${times[37].toFixed(2)} ms` };
      } finally {
        await relay.close();
      }
    },
  },
  {
    name: "sim streams, 200 live events to 2 subscribers",
    limitMs: 10_000,
    async run() {
      const relay = await startSimRelay({ world: makeWorld({ seed: 5 }), stream: { seed: 5 } });
      try {
        const base = relay.url.replace("http", "ws");
        const receive = (path: string) => {
          const ws = new WebSocket(base + path);
          let n = 0;
          return {
            ws,
            done: new Promise<void>((resolve) => {
              ws.onmessage = () => {
                if (++n >= 200) resolve();
              };
            }),
          };
        };
        const subs = [receive("/xrpc/com.atproto.sync.subscribeRepos"), receive("/subscribe")];
        try {
          await until(() => relay.stream.stats.connections >= 2, { what: "both subscribers" });
          const t0 = performance.now();
          relay.stream.setRate(2000);
          relay.stream.start();
          await deadline(Promise.all(subs.map((s) => s.done)), 60_000);
          return { ms: performance.now() - t0, note: "2000 events/s" };
        } finally {
          relay.stream.stop();
          for (const s of subs) s.ws.close();
        }
      } finally {
        await relay.close();
      }
    },
  },
];

function fmtMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 100 ? 2 : 0)} ms`;
}

/** Runs every timing; a timing that throws is a MISS row saying why. */
export async function runTimingBench(
  opts: { log?: (line: string) => void } = {},
): Promise<LiveFigure[]> {
  const log = opts.log ?? ((l: string) => console.error(l));
  const rows: LiveFigure[] = [];
  for (const t of TIMINGS) {
    try {
      const { ms, note } = await t.run();
      log(`[timing] ${t.name}: ${fmtMs(ms)}${note ? ` (${note})` : ""}`);
      rows.push({
        name: t.name,
        target: `< ${fmtMs(t.limitMs)}`,
        measured: `${fmtMs(ms)}${note ? ` (${note})` : ""}`,
        ok: ms < t.limitMs,
      });
    } catch (err) {
      log(`[timing] ${t.name}: ${err instanceof Error ? err.message : err}`);
      rows.push({
        name: t.name,
        target: `< ${fmtMs(t.limitMs)}`,
        measured: `error: ${err}`,
        ok: false,
      });
    }
  }
  return rows;
}

if (import.meta.main) {
  const rows = await runTimingBench();
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(46)} ${r.target.padEnd(10)} ${r.measured.padEnd(44)} ${
        r.ok ? "PASS" : "MISS"
      }`,
    );
  }
  Deno.exit(rows.every((r) => r.ok) ? 0 : 1);
}

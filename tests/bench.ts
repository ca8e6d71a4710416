/**
 * `deno task bench`: seed mode (the original design, README: Design) against default mode on a simulated relay with
 * latency, the floor for the world, ingest at zero latency, peak RSS, and this project's own
 * listReposByCollection latency. Each backfill runs in its own process (tests/bench_child.ts) with
 * a fresh Postgres database and a fresh LevelDB; the simulated relay stays in this process.
 */
import type { Hono } from "hono";
import { runLiveBench } from "./bench_live.ts";
import { runTimingBench } from "./bench_timings.ts";
import { parseArgs } from "node:util";
import { Backfiller } from "../lib/run/backfill.ts";
import { type Config, DEFAULTS, parseConfig } from "../lib/app/config.ts";
import { createApp } from "../lib/http/app.ts";
import { encodeCursor } from "../lib/http/xrpc_cursor.ts";
import { IndexStore } from "../lib/index/store.ts";
import { silentLogger } from "../lib/util/log.ts";
import { createSql, ProgressStore } from "../lib/progress/store.ts";
import { type SimRelay, type SimRelayStats, startSimRelay } from "../lib/sim/relay.ts";
import { makeWorld, seededRandom, type SimWorld } from "../lib/sim/world.ts";
import { parseSource } from "../lib/source/source.ts";
import { type ChildReport, processCpuS, REPORT_PREFIX } from "./bench_child.ts";
import { freshDatabase, shippedV8Flags } from "./_child.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const CHILD = new URL("./bench_child.ts", import.meta.url).pathname;
const XRPC = "/xrpc/com.atproto.sync.listReposByCollection";

/**
 * Large collections at scale 1: bsky.network's largest (like, post, profile, follow ≈ 26–30M, then
 * repost, block, …) divided by 200. The tail (collections 15..N, 0..60 DIDs) is kept far heavier than
 * the real one: 136 of the default 150 collections are one request each, about a quarter of default
 * mode's requests, against ~4% on bsky.network (1,270 tail collections next to ~30,500 pages).
 */
export const BASE_LARGE = [
  150_000,
  140_000,
  135_000,
  130_000,
  75_000,
  50_000,
  40_000,
  15_000,
  10_000,
  5_000,
  5_000,
  3_000,
  2_000,
  1_000,
];

/** Targets from the issue. */
export const TARGETS = {
  speedup: 6,
  floorRatio: 1.25,
  ingestDidsPerSec: 200_000,
  peakRssMb: 250,
  /** "Flat": peak RSS with the largest collection 10× bigger grows by at most this factor. */
  rssGrowth: 1.2,
  xrpcP50Ms: 5,
};

/** Command-line flags. */
export interface BenchFlags {
  scale: number;
  latency: number;
  jitter: number;
  collections: number;
  concurrency?: number;
  maxRps?: number;
  skipSeed: boolean;
  rssCheck: boolean;
  json: boolean;
  keep: boolean;
  seed: number;
  allocator: "auto" | "glibc" | "jemalloc";
  skipLive: boolean;
  liveOnly: boolean;
}

const USAGE = `usage: deno task bench [flags]
  --scale X          large collections are X × ${BASE_LARGE.slice(0, 4).join("/")}/… DIDs (1)
  --collections N    collections in the world, tail included (150)
  --latency MS       simulated relay latency per request (50)
  --jitter MS        plus uniform 0..MS more (20)
  --concurrency N    overrides default mode's BACKFILL_CONCURRENCY (${DEFAULTS.concurrency})
  --max-rps N        overrides default mode's BACKFILL_MAX_RPS (${DEFAULTS.maxRps})
  --skip-seed        skip seed mode (no speed-up figure)
  --skip-live        skip the live indexing figures (tests/bench_live.ts)
  --live-only        only the live indexing figures
  --no-rss-check     skip the zero-latency runs with the largest collection 1× and 10×
  --json             print a machine-readable summary on stdout instead of the table
  --keep             keep temp directories and databases
  --seed N           world seed (42)
  --allocator A      malloc for the backfill processes: auto (jemalloc when installed, as the Docker
                     image and the systemd units run it), glibc, or jemalloc (auto)`;

/** Parses flags; throws with the usage on anything unknown or malformed. */
export function parseBenchFlags(args: string[]): BenchFlags | "help" {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      scale: { type: "string" },
      collections: { type: "string" },
      latency: { type: "string" },
      jitter: { type: "string" },
      concurrency: { type: "string" },
      "max-rps": { type: "string" },
      "skip-seed": { type: "boolean" },
      "skip-live": { type: "boolean" },
      "live-only": { type: "boolean" },
      "no-rss-check": { type: "boolean" },
      json: { type: "boolean" },
      keep: { type: "boolean" },
      seed: { type: "string" },
      allocator: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return "help";
  const allocator = values.allocator ?? "auto";
  if (allocator !== "auto" && allocator !== "glibc" && allocator !== "jemalloc") {
    throw new Error(`--allocator must be auto, glibc or jemalloc, not ${allocator}\n${USAGE}`);
  }
  const num = (k: keyof typeof values, dflt: number, min = 0): number => {
    const v = values[k];
    if (v === undefined) return dflt;
    const n = Number(v);
    if (typeof v !== "string" || !Number.isFinite(n) || n < min) {
      throw new Error(`--${k} must be a number >= ${min}\n${USAGE}`);
    }
    return n;
  };
  return {
    scale: num("scale", 1, 0.001),
    collections: Math.round(num("collections", 150, BASE_LARGE.length)),
    latency: num("latency", 50),
    jitter: num("jitter", 20),
    concurrency: values.concurrency === undefined
      ? undefined
      : Math.round(num("concurrency", 0, 1)),
    maxRps: values["max-rps"] === undefined ? undefined : num("max-rps", 0, 0.1),
    skipSeed: values["skip-seed"] ?? false,
    skipLive: values["skip-live"] ?? false,
    liveOnly: values["live-only"] ?? false,
    rssCheck: !(values["no-rss-check"] ?? false),
    json: values.json ?? false,
    keep: values.keep ?? false,
    seed: Math.round(num("seed", 42)),
    allocator,
  };
}

/** The benchmark world: BASE_LARGE × scale (the largest × `largestFactor`) and a tail of 0..60 DIDs. */
export function benchWorld(flags: BenchFlags, largestFactor = 1): SimWorld {
  const sizes = BASE_LARGE.map((n) => Math.max(1, Math.round(n * flags.scale)));
  sizes[0] *= largestFactor;
  return makeWorld({
    seed: flags.seed,
    collections: flags.collections,
    largeSizes: sizes,
    tailMax: 60,
    emptyRate: 0.15,
  });
}

/** Requests one collection of `size` DIDs takes at `limit`: only a response without a cursor ends it. */
export function requestsFor(size: number, limit: number): number {
  return Math.floor(size / limit) + 1;
}

/** The world's floor at `limit` and `maxRps`: the longest chain of pages, or the total at the rate cap. */
export function worldFloor(
  world: SimWorld,
  limit: number,
  maxRps: number,
  rttMs: number,
): { chainRequests: number; chainS: number; totalRequests: number; rateS: number; floorS: number } {
  let chainRequests = 0, totalRequests = 1; // + the one listCollections request, also paced
  for (const c of world.collections()) {
    const n = requestsFor(world.size(c), limit);
    chainRequests = Math.max(chainRequests, n);
    totalRequests += n;
  }
  const chainS = (chainRequests * rttMs) / 1000;
  const rateS = totalRequests / maxRps;
  return { chainRequests, chainS, totalRequests, rateS, floorS: Math.max(chainS, rateS) };
}

/** Percentile (nearest rank) of an ascending array. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

interface RunResult {
  readonly label: string;
  readonly config: Config;
  readonly report: ChildReport;
  readonly processS: number;
  readonly listRequests: number;
  readonly relay: SimRelayStats;
  /** Once a second: seconds since spawn, listRepos requests served so far. */
  readonly served: [number, number][];
  readonly problems: string[];
  readonly dataDir: string;
  readonly dbUrl: string;
  /** Core-seconds: the whole machine busy, this process (the relay), the rest (Postgres, anything else). */
  readonly cpu: { machine: number; cores: number; wall: number; relay: number; other: number };
}

/** Busy and total core-seconds since boot, from /proc/stat. */
function machineCpu(): { busy: number; total: number } {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1).map(
    Number,
  );
  const idle = f[3] + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: (total - idle) / 100, total: total / 100 };
}

function ownCpuS(): number {
  return processCpuS();
}

const log = (line: string) => console.error(line);

/** How a backfill process is launched: the shipped V8 flags and, for jemalloc, the library to preload. */
export interface Launch {
  readonly v8Flags: string;
  readonly allocator: "glibc" | "jemalloc";
  readonly preload?: string;
}

const JEMALLOC_PATHS = [
  "/usr/local/lib/libjemalloc.so.2",
  "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
  "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
  "/usr/lib64/libjemalloc.so.2",
  "/usr/lib/libjemalloc.so.2",
];

/** Picks the allocator for `--allocator`; `auto` means jemalloc when it is installed. */
function resolveLaunch(choice: BenchFlags["allocator"], v8Flags: string): Launch {
  if (choice === "glibc") return { v8Flags, allocator: "glibc" };
  const preload = JEMALLOC_PATHS.find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  if (preload) return { v8Flags, allocator: "jemalloc", preload };
  if (choice === "jemalloc") {
    throw new Error(
      `--allocator jemalloc: no libjemalloc.so.2 in ${JEMALLOC_PATHS.join(", ")} ` +
        "(Debian/Ubuntu: apt-get install libjemalloc2)",
    );
  }
  return { v8Flags, allocator: "glibc" };
}

/** The parent's environment minus everything parseConfig reads (and LD_PRELOAD), so a child sees only what we set. */
export function inheritedEnv(): Record<string, string> {
  const env = Deno.env.toObject();
  for (const k of Object.keys(env)) {
    if (
      k.startsWith("BACKFILL_") ||
      [
        "LD_PRELOAD",
        "DATABASE_URL",
        "DATA_DIR",
        "PORT",
        "HOST",
        "RELAY_ADMIN_PASSWORD",
        "LEXICON_LIST_URL",
        "RELAY_URL",
        "LOG_LEVEL",
        "DATABASE_WAIT_MS",
        "LIVE_STREAM_URL",
        "LIVE_IDLE_TIMEOUT_MS",
        "LIVE_AUTO_CATCH_UP",
      ].includes(k)
    ) delete env[k];
  }
  return env;
}

const cleanups: (() => Promise<void>)[] = [];

async function runMode(
  label: string,
  relay: SimRelay,
  modeEnv: Record<string, string>,
  launch: Launch,
): Promise<RunResult> {
  const db = await freshDatabase(`bench_${label}`);
  const dataDir = await Deno.makeTempDir({ prefix: `bench-${label}-` });
  cleanups.push(async () => {
    await db.drop().catch(() => {});
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  });
  const env: Record<string, string> = {
    BACKFILL_SOURCE: relay.url,
    LEXICON_LIST_URL: `${relay.url}/llms.txt`,
    LOG_LEVEL: "warn",
    ...modeEnv,
    DATABASE_URL: db.url,
    DATA_DIR: dataDir,
  };
  const config = parseConfig(env);
  log(
    `[${label}] concurrency ${config.concurrency}, page limit ${config.pageLimit}, pause ${config.pagePauseMs} ms, max ${config.maxRps} rps`,
  );
  relay.resetStats();
  const served: [number, number][] = [];
  const cpu0 = machineCpu(), own0 = ownCpuS();
  const t0 = performance.now();
  const listed = () => Object.values(relay.stats.byCollection).reduce((a, b) => a + b, 0);
  const poll = setInterval(() => {
    served.push([Math.round((performance.now() - t0) / 100) / 10, listed()]);
  }, 1000);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `--v8-flags=${launch.v8Flags}`, CHILD],
    cwd: ROOT,
    env: { ...inheritedEnv(), ...env, ...(launch.preload ? { LD_PRELOAD: launch.preload } : {}) },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  clearInterval(poll);
  const processS = (performance.now() - t0) / 1000;
  const cpu1 = machineCpu(), relayCpu = ownCpuS() - own0;
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  const line = stdout.split("\n").find((l) => l.startsWith(REPORT_PREFIX));
  if (!out.success || !line) {
    throw new Error(
      `[${label}] child failed (exit ${out.code}):\n${stdout.slice(-2000)}\n${stderr.slice(-4000)}`,
    );
  }
  const report = JSON.parse(line.slice(REPORT_PREFIX.length)) as ChildReport;
  const machine = cpu1.busy - cpu0.busy;
  const cpu = {
    machine,
    cores: navigator.hardwareConcurrency,
    wall: processS,
    relay: relayCpu,
    other: Math.max(0, machine - relayCpu - report.cpuS),
  };
  const relayStats = structuredClone(relay.stats);
  const warnings = stderr.split("\n").filter((l) => l.trim() !== "");
  const problems = await verify(relay.world, dataDir, db.url, report, relayStats);
  if (warnings.length) problems.push(`${warnings.length} log lines at warn or above`);
  const r: RunResult = {
    label,
    config,
    report,
    processS,
    listRequests: listed(),
    relay: relayStats,
    served,
    problems,
    dataDir,
    dbUrl: db.url,
    cpu,
  };
  log(
    `[${label}] ${fmtS(report.wallMs / 1000)}, ${fmtInt(report.imported)} DIDs, ${
      fmtInt(r.listRequests)
    } requests, ${fmtInt(report.imported / (report.wallMs / 1000))} DIDs/s, peak RSS ${
      report.peakRssMb.toFixed(0)
    } MB (anonymous ${report.peakAnonMb.toFixed(0)} MB, mapped files ${
      report.peakFileMb.toFixed(0)
    } MB, V8 heap ${report.peakHeapMb.toFixed(0)} MB; RSS at start ${
      report.rssBeforeMb.toFixed(0)
    } MB), ${problems.length ? "WRONG: " + problems.join("; ") : "verified"}`,
  );
  return r;
}

/** Checks a finished run against the world: progress rows for every collection, index sets for a sample. */
async function verify(
  world: SimWorld,
  dataDir: string,
  dbUrl: string,
  report: ChildReport,
  stats: SimRelayStats,
): Promise<string[]> {
  const problems: string[] = [];
  for (const f of report.failed) problems.push(`failed ${f.collection}: ${f.error}`);
  const other = Object.entries(stats.byStatus).filter(([s]) => s !== "200");
  if (other.length) problems.push(`relay answered ${JSON.stringify(Object.fromEntries(other))}`);
  const expectedTotal = world.collections().reduce((a, c) => a + world.size(c), 0);
  if (report.imported !== expectedTotal) {
    problems.push(`run imported ${report.imported}, world has ${expectedTotal}`);
  }
  const sql = createSql(dbUrl, { max: 1 });
  try {
    const rows = await sql<{ collection: string; imported_count: string; done: boolean }[]>`
      SELECT collection, imported_count, completed_at IS NOT NULL AS done FROM backfill_progress`;
    const byName = new Map(rows.map((r) => [r.collection, r]));
    if (rows.length !== world.collections().length) {
      problems.push(`${rows.length} progress rows for ${world.collections().length} collections`);
    }
    let bad = 0;
    for (const c of world.collections()) {
      const r = byName.get(c);
      if (!r || !r.done || Number(r.imported_count) !== world.size(c)) {
        if (bad++ < 3) {
          problems.push(
            `row ${c}: ${r ? `imported ${r.imported_count}, done ${r.done}` : "missing"}, world ${
              world.size(c)
            }`,
          );
        }
      }
    }
    if (bad > 3) problems.push(`${bad} rows wrong in all`);
  } finally {
    await sql.end();
  }
  const bySize = world.collections().sort((a, b) => world.size(b) - world.size(a));
  const rand = seededRandom(99);
  const sample = new Set([...bySize.slice(0, 3), bySize[bySize.length - 1]]);
  for (let i = 0; i < 8; i++) sample.add(bySize[Math.floor(rand() * bySize.length)]);
  const index = await IndexStore.open({ path: `${dataDir}/index` });
  try {
    for (const c of sample) {
      const expected = [...world.dids(c)].sort();
      let i = 0, after: string | undefined, mismatch: string | undefined;
      for (;;) {
        const page = await index.listDids(c, 10_000, after);
        for (const d of page.dids) {
          if (mismatch === undefined && d !== expected[i]) {
            mismatch = `at ${i}: index ${d}, world ${expected[i]}`;
          }
          i++;
        }
        if (page.last === undefined) break;
        after = page.last;
      }
      if (mismatch || i !== expected.length) {
        problems.push(
          `index ${c}: ${i} DIDs, world ${expected.length}${mismatch ? `, ${mismatch}` : ""}`,
        );
      }
    }
  } finally {
    await index.close();
  }
  return problems;
}

/** Mean round trip of a `limit`-DID page from the relay at its current latency, measured from here. */
async function measureRtt(relay: SimRelay, limit: number, n = 20): Promise<number> {
  const world = relay.world;
  const c = largest(world);
  const rand = seededRandom(5);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const pos = Math.floor(rand() * Math.max(1, world.size(c) - limit));
    const url = `${relay.url}${XRPC}?collection=${c}&limit=${limit}&cursor=${
      relay.cursorFor(c, pos)
    }`;
    const t = performance.now();
    const res = await fetch(url);
    JSON.parse(await res.text());
    total += performance.now() - t;
  }
  return total / n;
}

function largest(world: SimWorld): string {
  return world.collections().reduce((a, b) => (world.size(b) > world.size(a) ? b : a));
}

/** The service's HTTP app over a finished index, for read latency: its Backfiller never runs. */
export function readOnlyApp(index: IndexStore, progress: ProgressStore): Hono {
  const backfiller = new Backfiller({
    index,
    progress,
    clientFor: () => {
      throw new Error("not used");
    },
    discover: () => Promise.resolve({ collections: [], fromList: 0, fromIndex: 0 }),
    concurrency: 1,
    pageLimit: 2000,
    pagePauseMs: 0,
    log: silentLogger,
  });
  return createApp({
    backfiller,
    index,
    progress,
    defaultSource: parseSource("bsky.network"),
    log: silentLogger,
  });
}

/** p50/p99 of this project's own listReposByCollection for 2000-DID pages at random cursors. */
async function xrpcLatency(
  run: RunResult,
  world: SimWorld,
  n = 400,
): Promise<
  {
    http: number[];
    direct: number[];
    store: number[];
    short: number;
    collection: string;
    size: number;
  }
> {
  const index = await IndexStore.open({ path: `${run.dataDir}/index` });
  const sql = createSql(run.dbUrl, { max: 1 });
  const progress = new ProgressStore({ sql });
  const app = readOnlyApp(index, progress);
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.fetch);
  const c = largest(world);
  const size = world.size(c);
  const rand = seededRandom(11);
  const http: number[] = [], direct: number[] = [], store: number[] = [];
  let short = 0;
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    for (let i = 0; i < n + 20; i++) {
      const did = world.didAt(c, Math.floor(rand() * size));
      const path = `${XRPC}?collection=${c}&limit=2000&cursor=${encodeCursor(did)}`;
      let t = performance.now();
      const text = await (await fetch(base + path)).text();
      const tHttp = performance.now() - t;
      t = performance.now();
      await (await app.request(path)).text();
      const tDirect = performance.now() - t;
      t = performance.now();
      await index.listDids(c, 2000, did);
      const tStore = performance.now() - t;
      if (i < 20) continue; // warm-up
      http.push(tHttp);
      direct.push(tDirect);
      store.push(tStore);
      if ((JSON.parse(text) as { repos: unknown[] }).repos.length !== 2000) short++;
    }
  } finally {
    await server.shutdown();
    await sql.end();
    await index.close();
  }
  const asc = (a: number, b: number) => a - b;
  return {
    http: http.sort(asc),
    direct: direct.sort(asc),
    store: store.sort(asc),
    short,
    collection: c,
    size,
  };
}

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function fmtS(s: number): string {
  return `${s.toFixed(1)} s`;
}

function worldSummary(world: SimWorld, pageLimit: number): string[] {
  const t = world.totals();
  const sizes = world.collections().map((c) => [c, world.size(c)] as const).sort((a, b) =>
    b[1] - a[1]
  );
  const tail = sizes.filter(([, n]) => n <= 60);
  const req = (limit: number) => sizes.reduce((a, [, n]) => a + requestsFor(n, limit), 0);
  return [
    `world: ${t.collections} collections, ${fmtInt(t.entries)} DIDs in collections, ${
      fmtInt(t.accounts)
    } accounts`,
    `  largest: ${sizes.slice(0, 6).map(([c, n]) => `${c} ${fmtInt(n)}`).join(", ")}`,
    `  tail: ${tail.length} collections of 0..60 DIDs (${
      tail.filter(([, n]) => n === 0).length
    } empty)`,
    `  requests to page everything: ${fmtInt(req(1000))} at limit 1000, ${
      fmtInt(req(pageLimit))
    } at limit ${pageLimit}`,
  ];
}

/** The page size a run ended up asking for: the configured one, or 2000 after a refusal. */
function usedPageLimit(run: RunResult): number {
  return run.report.pageLimit || run.config.pageLimit;
}

/** Why default mode took what it took: pacing, pipeline occupancy and the tail. */
function diagnose(run: RunResult, world: SimWorld): string[] {
  const floor = worldFloor(world, usedPageLimit(run), run.config.maxRps, 0);
  const r = run.report;
  const wall = r.wallMs / 1000;
  const big = largest(world);
  const lines = [
    `plan (discovery, sizes, rows): ${fmtS(r.planMs / 1000)}; paging: ${
      fmtS(wall - r.planMs / 1000)
    }`,
    `requests: ${fmtInt(run.listRequests)} listRepos (the world needs ${
      fmtInt(floor.totalRequests)
    }); ${
      (run.listRequests / wall).toFixed(1)
    }/s average, ${run.relay.peakOkRps}/s peak 1-s window`,
    `limiter: ${fmtInt(r.limiter.granted)} grants, mean wait ${
      (r.limiter.waitedMs / Math.max(1, r.limiter.granted)).toFixed(0)
    } ms, ${r.limiter.throttled} throttled`,
    `event-loop lag (20 ms timer): mean ${r.lagMs.mean.toFixed(1)} ms, p99 ${
      r.lagMs.p99.toFixed(0)
    } ms, max ${r.lagMs.max.toFixed(0)} ms`,
  ];
  const c = run.cpu;
  lines.push(
    `cpu: machine ${(c.machine / c.wall / c.cores * 100).toFixed(0)}% of ${c.cores} cores busy; ${
      run.report.cpuS.toFixed(1)
    } s backfill process, ${c.relay.toFixed(1)} s relay, ${
      c.other.toFixed(1)
    } s other (Postgres and anything else running)`,
  );
  if (r.finishedAt[big] !== undefined) {
    lines.push(
      `largest collection (${big}) finished at ${fmtS(r.finishedAt[big])} of ${fmtS(wall)}`,
    );
  }
  const fullUntil = [...r.timeline].reverse().find(([, , , active]) =>
    active >= run.config.concurrency
  );
  if (fullUntil) {
    const after = run.listRequests - (run.served.find(([t]) => t >= fullUntil[0])?.[1] ?? 0);
    lines.push(
      `all ${run.config.concurrency} workers busy until ${fmtS(fullUntil[0])}; ~${
        fmtInt(after)
      } requests after that`,
    );
  }
  const buckets: string[] = [];
  let prev: [number, number] = [0, 0];
  for (let i = 4; i < run.served.length; i += 5) {
    const cur = run.served[i];
    buckets.push(((cur[1] - prev[1]) / (cur[0] - prev[0])).toFixed(1));
    prev = cur;
  }
  if (buckets.length) lines.push(`served rps per 5 s: ${buckets.join(" ")}`);
  return lines;
}

interface Row {
  name: string;
  target: string;
  measured: string;
  ok: boolean | undefined;
}

async function main(args: string[]): Promise<number> {
  const flags = parseBenchFlags(args);
  if (flags === "help") {
    console.log(USAGE);
    return 0;
  }
  if (flags.liveOnly) {
    const figures = await runLiveBench({ log });
    for (const f of figures) {
      console.log(
        `${f.name.padEnd(40)} ${f.target.padEnd(16)} ${f.measured} ${f.ok ? "PASS" : "MISS"}`,
      );
    }
    return figures.every((f) => f.ok) ? 0 : 1;
  }
  const benchStart = performance.now();
  const launch = resolveLaunch(
    flags.allocator,
    shippedV8Flags(await Deno.readTextFile(`${ROOT}deno.json`)),
  );
  const world = benchWorld(flags);
  const relay = await startSimRelay({ world, latencyMs: flags.latency, jitterMs: flags.jitter });
  const relays: SimRelay[] = [relay];
  const seedEnv = {
    BACKFILL_CONCURRENCY: "1",
    BACKFILL_PAGE_LIMIT: "1000",
    BACKFILL_PAGE_PAUSE_MS: "100",
  };
  const defaultEnv: Record<string, string> = {};
  if (flags.concurrency !== undefined) defaultEnv.BACKFILL_CONCURRENCY = String(flags.concurrency);
  if (flags.maxRps !== undefined) defaultEnv.BACKFILL_MAX_RPS = String(flags.maxRps);
  const defaults = parseConfig(defaultEnv);
  for (const l of worldSummary(world, defaults.pageLimit)) log(l);
  log(`relay: ${relay.url}, latency ${flags.latency} ms + 0..${flags.jitter} ms jitter`);
  log(
    `backfill processes: --v8-flags=${launch.v8Flags}, ${launch.allocator} malloc${
      launch.preload ? ` (LD_PRELOAD=${launch.preload})` : ""
    }`,
  );

  const rows: Row[] = [];
  const out: Record<string, unknown> = { flags, world: world.totals() };
  const runs: RunResult[] = [];
  try {
    let seed: RunResult | undefined;
    if (!flags.skipSeed) {
      runs.push(seed = await runMode("seed", relay, seedEnv, launch));
      for (const l of diagnose(seed, world)) log(`[seed] ${l}`);
    }
    const dflt = await runMode("default", relay, defaultEnv, launch);
    runs.push(dflt);
    // At the page size the run used, which is 2000 if the source refused larger pages.
    const pageLimit = usedPageLimit(dflt);
    const rtt = await measureRtt(relay, pageLimit);
    const floor = worldFloor(world, pageLimit, defaults.maxRps, rtt);
    log(
      `floor: chain ${floor.chainRequests} requests × ${rtt.toFixed(1)} ms = ${
        fmtS(floor.chainS)
      }; rate ${floor.totalRequests} requests / ${defaults.maxRps} rps = ${fmtS(floor.rateS)}`,
    );
    const dfltS = dflt.report.wallMs / 1000;
    const diag = diagnose(dflt, world);
    for (const l of diag) log(`[default] ${l}`);

    let zero1: RunResult | undefined, zero10: RunResult | undefined;
    let glibc10: RunResult | undefined;
    const ingestEnv = { ...defaultEnv, BACKFILL_MAX_RPS: "10000" };
    relay.setFaults({ latencyMs: 0, jitterMs: 0 });
    runs.push(zero1 = await runMode("ingest", relay, ingestEnv, launch));
    for (const l of diagnose(zero1, world)) log(`[ingest] ${l}`);
    let bigRelay: SimRelay | undefined;
    if (flags.rssCheck) {
      const world10 = benchWorld(flags, 10);
      bigRelay = await startSimRelay({ world: world10 });
      relays.push(bigRelay);
      log(
        `10× world: largest ${fmtInt(world10.size(largest(world10)))}, ${
          fmtInt(world10.totals().entries)
        } DIDs`,
      );
      runs.push(zero10 = await runMode("ingest10x", bigRelay, ingestEnv, launch));
      for (const l of diagnose(zero10, world10)) log(`[ingest10x] ${l}`);
      if (launch.allocator === "jemalloc") {
        // The same run on glibc's malloc, which is what a bare `deno task backfill` gets.
        glibc10 = await runMode("ingest10x-glibc", bigRelay, ingestEnv, {
          v8Flags: launch.v8Flags,
          allocator: "glibc",
        });
        runs.push(glibc10);
      }
    }
    const probeRun = zero10 ?? zero1;
    const lat = await xrpcLatency(probeRun, probeRun === zero10 ? bigRelay!.world : world);

    const ratio = seed ? seed.report.wallMs / dflt.report.wallMs : undefined;
    // The best default mode could do in this world: seed's time over the floor.
    const ceiling = seed ? seed.report.wallMs / 1000 / floor.floorS : undefined;
    const rate = (r: RunResult) => r.report.imported / (r.report.wallMs / 1000);
    // The target is for the benchmark's world; the 10x world's figure is printed next to it.
    const ingestRate = rate(zero1);
    const fastRuns = [zero1, ...(zero10 ? [zero10] : [])];
    const fastRss = Math.max(...fastRuns.map((r) => r.report.peakRssMb));
    const growth = zero10 ? zero10.report.peakRssMb / zero1.report.peakRssMb : undefined;
    const p50 = percentile(lat.http, 50);
    const wrong = runs.filter((r) => r.problems.length > 0);

    rows.push(
      {
        name: "default vs seed wall time",
        target: `>= ${TARGETS.speedup}x faster`,
        measured: ratio === undefined
          ? "skipped"
          : `${ratio.toFixed(2)}x (${fmtS(seed!.report.wallMs / 1000)} vs ${fmtS(dfltS)}; ${
            ceiling!.toFixed(2)
          }x at the floor)`,
        ok: ratio === undefined ? undefined : ratio >= TARGETS.speedup,
      },
      {
        name: "default vs floor",
        target: `<= ${TARGETS.floorRatio}x floor`,
        measured: `${(dfltS / floor.floorS).toFixed(2)}x (${fmtS(dfltS)} vs ${fmtS(floor.floorS)})`,
        ok: dfltS / floor.floorS <= TARGETS.floorRatio,
      },
      {
        name: "ingest, zero latency",
        target: `>= ${fmtInt(TARGETS.ingestDidsPerSec)} DIDs/s`,
        measured: `${fmtInt(ingestRate)} DIDs/s (default world${
          zero10 ? `; ${fmtInt(rate(zero10))} with the largest 10x` : ""
        })`,
        ok: ingestRate >= TARGETS.ingestDidsPerSec,
      },
      {
        name: "peak RSS, default mode",
        target: `<= ${TARGETS.peakRssMb} MB`,
        measured: `${
          dflt.report.peakRssMb.toFixed(0)
        } MB (${flags.latency} ms latency, ${dflt.config.maxRps} rps)`,
        ok: dflt.report.peakRssMb <= TARGETS.peakRssMb,
      },
      {
        name: "peak RSS, zero latency, rate lifted",
        target: `<= ${TARGETS.peakRssMb} MB`,
        measured: fastRuns.map((r) => `${r.label} ${r.report.peakRssMb.toFixed(0)}`).join(", ") +
          ` MB (${launch.allocator}${
            glibc10 ? `; glibc ${glibc10.report.peakRssMb.toFixed(0)} MB on ingest10x` : ""
          })`,
        ok: fastRss <= TARGETS.peakRssMb,
      },
      {
        name: "peak RSS, largest 10x bigger",
        target: `<= ${TARGETS.rssGrowth}x (flat)`,
        measured: growth === undefined
          ? "skipped"
          : `${growth.toFixed(2)}x (${zero1.report.peakRssMb.toFixed(0)} -> ${
            zero10!.report.peakRssMb.toFixed(0)
          } MB)`,
        ok: growth === undefined ? undefined : growth <= TARGETS.rssGrowth,
      },
      {
        name: "own listReposByCollection, 2000 DIDs",
        target: `p50 <= ${TARGETS.xrpcP50Ms} ms`,
        measured: `p50 ${p50.toFixed(2)} ms, p99 ${percentile(lat.http, 99).toFixed(2)} ms (HTTP)`,
        ok: p50 <= TARGETS.xrpcP50Ms,
      },
      {
        name: "results match the world",
        target: "every run",
        measured: wrong.length ? `WRONG: ${wrong.map((r) => r.label).join(", ")}` : "all verified",
        ok: wrong.length === 0,
      },
    );
    if (!flags.skipLive) rows.push(...await runLiveBench({ log }));
    rows.push(...await runTimingBench({ log }));
    const totalS = (performance.now() - benchStart) / 1000;

    Object.assign(out, {
      floor: { ...floor, rttMs: rtt },
      runs: Object.fromEntries(runs.map((r) => [r.label, {
        wallS: r.report.wallMs / 1000,
        planS: r.report.planMs / 1000,
        processS: r.processS,
        dids: r.report.imported,
        didsPerSec: r.report.imported / (r.report.wallMs / 1000),
        requests: r.listRequests,
        requestsPerSec: r.listRequests / (r.report.wallMs / 1000),
        peakOkRps: r.relay.peakOkRps,
        peakRssMb: r.report.peakRssMb,
        limiter: r.report.limiter,
        lagMs: r.report.lagMs,
        cpu: { ...r.cpu, backfill: r.report.cpuS },
        finishedAt: r.report.finishedAt,
        concurrency: r.config.concurrency,
        pageLimit: usedPageLimit(r),
        pagePauseMs: r.config.pagePauseMs,
        maxRps: r.config.maxRps,
        problems: r.problems,
      }])),
      speedup: ratio,
      speedupAtFloor: ceiling,
      floorRatio: dfltS / floor.floorS,
      launch,
      ingestDidsPerSec: ingestRate,
      ingest10xDidsPerSec: zero10 ? rate(zero10) : undefined,
      rssGrowth: growth,
      xrpc: {
        collection: lat.collection,
        dids: probeRun.report.imported,
        httpP50Ms: p50,
        httpP99Ms: percentile(lat.http, 99),
        directP50Ms: percentile(lat.direct, 50),
        directP99Ms: percentile(lat.direct, 99),
        storeP50Ms: percentile(lat.store, 50),
        storeP99Ms: percentile(lat.store, 99),
        shortPages: lat.short,
      },
      diagnosis: diag,
      targets: rows,
      totalS,
    });

    if (flags.json) {
      console.log(JSON.stringify(out, null, 2));
    } else {
      const p = (l = "") => console.log(l);
      p();
      p("runs:");
      p(
        "  mode             wall     DIDs        DIDs/s     requests  req/s   peak rps  peak RSS  conc  limit  pause  max rps",
      );
      for (const r of runs) {
        const s = r.report.wallMs / 1000;
        p(
          `  ${r.label.padEnd(15)} ${s.toFixed(1).padStart(6)} s ${
            fmtInt(r.report.imported).padStart(10)
          } ${fmtInt(r.report.imported / s).padStart(10)} ${fmtInt(r.listRequests).padStart(9)} ${
            (r.listRequests / s).toFixed(1).padStart(7)
          } ${String(r.relay.peakOkRps).padStart(8)} ${
            r.report.peakRssMb.toFixed(0).padStart(6)
          } MB ${String(r.config.concurrency).padStart(5)} ${
            String(usedPageLimit(r)).padStart(6)
          } ${String(r.config.pagePauseMs).padStart(6)} ${String(r.config.maxRps).padStart(8)}`,
        );
      }
      p();
      p(
        `floor (limit ${pageLimit}, ${defaults.maxRps} rps): max(chain ${floor.chainRequests} × ${
          rtt.toFixed(1)
        } ms = ${fmtS(floor.chainS)}, ${floor.totalRequests} requests / ${defaults.maxRps} rps = ${
          fmtS(floor.rateS)
        }) = ${fmtS(floor.floorS)}; default mode is ${fmtS(dfltS - floor.floorS)} (${
          ((dfltS / floor.floorS - 1) * 100).toFixed(0)
        }%) above it`,
      );
      p(
        `own listReposByCollection (${lat.collection}, ${fmtInt(lat.size)} DIDs): HTTP p50 ${
          p50.toFixed(2)
        } / p99 ${percentile(lat.http, 99).toFixed(2)} ms; app.request p50 ${
          percentile(lat.direct, 50).toFixed(2)
        } / p99 ${percentile(lat.direct, 99).toFixed(2)} ms; index.listDids p50 ${
          percentile(lat.store, 50).toFixed(2)
        } / p99 ${percentile(lat.store, 99).toFixed(2)} ms (${lat.http.length} pages${
          lat.short ? `, ${lat.short} short` : ""
        })`,
      );
      p();
      p("default mode:");
      for (const l of diag) p(`  ${l}`);
      p();
      const w = [36, 20, 70];
      p(`${"target".padEnd(w[0])} ${"wanted".padEnd(w[1])} ${"measured".padEnd(w[2])} result`);
      for (const r of rows) {
        p(
          `${r.name.padEnd(w[0])} ${r.target.padEnd(w[1])} ${r.measured.padEnd(w[2])} ${
            r.ok === undefined ? "n/a" : r.ok ? "PASS" : "MISS"
          }`,
        );
      }
      p();
      p(`total bench time ${fmtS(totalS)}`);
      if (wrong.length) {
        p();
        p("!!! RESULTS ARE WRONG — the figures above do not count:");
        for (const r of wrong) for (const x of r.problems) p(`!!! ${r.label}: ${x}`);
      }
    }
    return wrong.length ? 1 : 0;
  } finally {
    for (const r of relays) await r.close().catch(() => {});
    if (!flags.keep) {
      for (const c of cleanups.reverse()) await c().catch(() => {});
    } else {
      for (const r of runs) log(`kept ${r.label}: ${r.dataDir} ${r.dbUrl}`);
    }
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));

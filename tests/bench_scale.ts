/**
 * `deno task bench:scale`: issue 9's scale benchmark. A world shaped like bsky.network scaled to
 * `--pairs` is served by the simulated relay in this process at zero latency; the service runs as a
 * user starts it (`deno task backfill`, or `deno task start` plus the admin API) against a fresh
 * Postgres database and index. Its memory is sampled from /proc, its progress from Postgres; at the
 * end every collection's count is checked against the world and the figures against the targets.
 */
import type { Sql } from "postgres";
import { type CommandLine, parseCommandLine } from "../lib/util/args.ts";
import { sleep } from "../lib/util/async.js";
import { encodeCursor } from "../lib/http/xrpc_cursor.ts";
import { IndexStore } from "../lib/index/store.ts";
import { createSql, ProgressStore } from "../lib/progress/store.ts";
import { type SimRelay, startSimRelay } from "../lib/sim/relay.ts";
import { makeNetworkWorld, NETWORK_LARGE, seededRandom, type SimWorld } from "../lib/sim/world.ts";
import { inheritedEnv, percentile, readOnlyApp } from "./bench.ts";
import { freePort, freshDatabase } from "./_child.ts";
import { processCpuS } from "./bench_child.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const XRPC = "/xrpc/com.atproto.sync.listReposByCollection";
const XRPC_LIMIT = 2000;
/** A run whose pair count has not moved for this long is stuck (a harness error, exit 2). */
const STALL_MS = 300_000;

/** Issue 9's targets, at 47M and at 150M pairs. */
export const SCALE_TARGETS = {
  avgPairsPerSec: 120_000,
  lastVsFirst: 0.8,
  anonPeakMb: 250,
  anonFlatness: 1.3,
  diskBytesPerPair: 40,
  xrpcP50Ms: 5,
  xrpcP99Ms: 25,
} as const;

/** Command-line flags of the scale bench. */
export interface ScaleFlags {
  readonly pairs: number;
  readonly mode: "backfill" | "start";
  readonly maxRps: number;
  readonly keep: boolean;
  readonly json: boolean;
  readonly seed: number;
  readonly sampleMs: number;
}

const USAGE = `usage: deno task bench:scale [flags]
  --pairs N          pairs in the world: 47M, 150M, 1.5M, 500k or an integer (47M)
  --mode M           backfill (deno task backfill) or start (deno task start + the admin API) (backfill)
  --max-rps N        BACKFILL_MAX_RPS for the run, as in the issue's measurement (1000)
  --sample-ms N      /proc and progress sampling period (1000)
  --seed N           world seed (1)
  --json             print a machine-readable summary on stdout instead of the report
  --keep             keep the work directory and the database`;

/** `47M`, `1.5M`, `500k`, `150000000` → a positive integer count of pairs. */
export function parsePairs(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(s.trim().replace(/_/g, ""));
  const n = m ? Number(m[1]) * ({ k: 1e3, m: 1e6 }[m[2].toLowerCase()] ?? 1) : NaN;
  if (!Number.isFinite(n) || Math.round(n) < 1 || n > 4e9) {
    throw new Error(
      `--pairs must be a count like 47M, 1.5M, 500k or 2000000, got ${JSON.stringify(s)}`,
    );
  }
  return Math.round(n);
}

/** A bench's numeric flag `--k`, checked against min..max; undefined when not given. */
export function numberFlag(
  values: CommandLine["values"],
  k: string,
  min: number,
  max: number,
  integer: boolean,
): number | undefined {
  const v = values[k] as string | undefined;
  if (v === undefined) return undefined;
  const n = Number(v);
  if (
    v.trim() === "" || !Number.isFinite(n) || n < min || n > max ||
    (integer && !Number.isInteger(n))
  ) {
    throw new Error(
      `--${k} must be ${integer ? "an integer" : "a number"} from ${min} to ${max}, got ${
        JSON.stringify(v)
      }`,
    );
  }
  return n;
}

/** Parses the flags; throws naming the flag and value at fault. */
export function parseScaleFlags(args: readonly string[]): ScaleFlags | "help" {
  const { values } = parseCommandLine(args, {
    pairs: { type: "string" },
    mode: { type: "string" },
    "max-rps": { type: "string" },
    "sample-ms": { type: "string" },
    seed: { type: "string" },
    json: { type: "boolean" },
    keep: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) return "help";
  const str = (k: string) => values[k] as string | undefined;
  const num = (k: string, dflt: number, min: number, max: number, integer: boolean): number =>
    numberFlag(values, k, min, max, integer) ?? dflt;
  const mode = str("mode") ?? "backfill";
  if (mode !== "backfill" && mode !== "start") {
    throw new Error(`--mode must be backfill or start, got ${JSON.stringify(mode)}`);
  }
  return {
    pairs: parsePairs(str("pairs") ?? "47M"),
    mode,
    maxRps: num("max-rps", 1000, 0.1, 10_000, false),
    sampleMs: num("sample-ms", 1000, 50, 60_000, true),
    seed: num("seed", 1, 0, 2 ** 32 - 1, true),
    json: values.json === true,
    keep: values.keep === true,
  };
}

/** One sample of the service: seconds since spawn, pairs written so far, memory in kB, the index. */
export interface Sample {
  readonly t: number;
  readonly pairs: number;
  readonly anonKb: number;
  readonly fileKb: number;
  readonly shmemKb: number;
  /** LevelDB table files (*.ldb) and bytes in the index directory. */
  readonly ldb?: number;
  readonly diskBytes?: number;
}

/** One tenth of the run by pairs: from its start to the first sample at or past its end. */
export interface Decile {
  readonly decile: number;
  readonly t0: number;
  readonly t1: number;
  readonly pairs0: number;
  readonly pairs1: number;
  /** Pairs per second within the decile; undefined when one sample spans it (no time passed). */
  readonly rate?: number;
  readonly anonKb: number;
  readonly fileKb: number;
  readonly shmemKb: number;
  readonly ldb?: number;
  readonly diskBytes?: number;
}

/**
 * The run's deciles by pairs. Ingest starts at the last sample that saw no pairs (startup, migrations
 * and discovery are not ingest); decile d ends at the first sample with ≥ d/10 of `total`. Deciles the
 * samples never reached are left out.
 */
export function deciles(samples: readonly Sample[], total: number): Decile[] {
  const out: Decile[] = [];
  if (samples.length === 0 || total <= 0) return out;
  let startIdx = 0;
  for (let i = 0; i < samples.length && samples[i].pairs === 0; i++) startIdx = i;
  let prev = samples[startIdx];
  let i = startIdx;
  for (let d = 1; d <= 10; d++) {
    const threshold = Math.ceil((d * total) / 10);
    while (i < samples.length && samples[i].pairs < threshold) i++;
    if (i === samples.length) break;
    const s = samples[i];
    const dt = s.t - prev.t;
    out.push({
      decile: d,
      t0: prev.t,
      t1: s.t,
      pairs0: prev.pairs,
      pairs1: s.pairs,
      rate: dt > 0 ? (s.pairs - prev.pairs) / dt : undefined,
      anonKb: s.anonKb,
      fileKb: s.fileKb,
      shmemKb: s.shmemKb,
      ldb: s.ldb,
      diskBytes: s.diskBytes,
    });
    prev = s;
  }
  return out;
}

/**
 * Pairs/s over deciles a..b (1-based, inclusive); undefined when missing. A span inside one sample
 * interval widens to that interval (the deciles sharing its end sample), so it always has a duration.
 */
function spanRate(ds: readonly Decile[], a: number, b: number): number | undefined {
  let i = ds.findIndex((d) => d.decile === a);
  const last = ds.find((d) => d.decile === b);
  if (i < 0 || !last) return undefined;
  while (i > 0 && ds[i].t1 === ds[i].t0) i--;
  const first = ds[i];
  if (last.t1 <= first.t0) return undefined;
  return (last.pairs1 - first.pairs0) / (last.t1 - first.t0);
}

/** Ingest over the last two deciles ÷ ingest over the first two (the target: ≥ 0.8). */
export function ingestRatio(ds: readonly Decile[]): number | undefined {
  const first = spanRate(ds, 1, 2), last = spanRate(ds, 9, 10);
  return first === undefined || last === undefined || first === 0 ? undefined : last / first;
}

/** Anonymous RSS at the end of the run ÷ at 20% of it (the target: ≤ 1.3). */
export function anonFlatness(ds: readonly Decile[]): number | undefined {
  const at20 = ds.find((d) => d.decile === 2), end = ds.find((d) => d.decile === 10);
  return at20 && end && at20.anonKb > 0 ? end.anonKb / at20.anonKb : undefined;
}

/** One target and whether the run met it (undefined: not measured). */
export interface TargetRow {
  readonly name: string;
  readonly target: string;
  readonly measured: string;
  readonly ok: boolean | undefined;
}

/** The figures the targets are checked on. */
export interface TargetFigures {
  readonly avgPairsPerSec: number;
  readonly ingestRatio?: number;
  readonly anonPeakMb: number;
  readonly anonFlatness?: number;
  readonly bytesPerPair: number;
  readonly xrpcP50Ms?: number;
  readonly xrpcP99Ms?: number;
  /** Where the XRPC figures come from, e.g. "while writing". */
  readonly xrpcWhen: string;
}

/** Pass/fail rows for issue 9's targets; an unmeasured figure fails (the run did not show it). */
export function targetRows(f: TargetFigures): TargetRow[] {
  const t = SCALE_TARGETS;
  const fx = (x: number | undefined, digits: number, unit = "") =>
    x === undefined || Number.isNaN(x) ? "not measured" : `${x.toFixed(digits)}${unit}`;
  const atMost = (x: number | undefined, max: number) =>
    x !== undefined && !Number.isNaN(x) && x <= max;
  const atLeast = (x: number | undefined, min: number) =>
    x !== undefined && !Number.isNaN(x) && x >= min;
  return [
    {
      name: "ingest, whole run",
      target: `>= ${fmtInt(t.avgPairsPerSec)} pairs/s`,
      measured: `${fmtInt(f.avgPairsPerSec)} pairs/s`,
      ok: atLeast(f.avgPairsPerSec, t.avgPairsPerSec),
    },
    {
      name: "ingest, last 2 deciles / first 2",
      target: `>= ${t.lastVsFirst}x`,
      measured: fx(f.ingestRatio, 2, "x"),
      ok: atLeast(f.ingestRatio, t.lastVsFirst),
    },
    {
      name: "anonymous RSS, peak",
      target: `<= ${t.anonPeakMb} MB`,
      measured: fx(f.anonPeakMb, 0, " MB"),
      ok: atMost(f.anonPeakMb, t.anonPeakMb),
    },
    {
      name: "anonymous RSS, end / at 20%",
      target: `<= ${t.anonFlatness}x`,
      measured: fx(f.anonFlatness, 2, "x"),
      ok: atMost(f.anonFlatness, t.anonFlatness),
    },
    {
      name: "disk per pair",
      target: `<= ${t.diskBytesPerPair} B`,
      measured: fx(f.bytesPerPair, 1, " B"),
      ok: atMost(f.bytesPerPair, t.diskBytesPerPair),
    },
    {
      name: `XRPC ${XRPC_LIMIT}-DID page p50 (${f.xrpcWhen})`,
      target: `<= ${t.xrpcP50Ms} ms`,
      measured: fx(f.xrpcP50Ms, 2, " ms"),
      ok: atMost(f.xrpcP50Ms, t.xrpcP50Ms),
    },
    {
      name: `XRPC ${XRPC_LIMIT}-DID page p99 (${f.xrpcWhen})`,
      target: `<= ${t.xrpcP99Ms} ms`,
      measured: fx(f.xrpcP99Ms, 2, " ms"),
      ok: atMost(f.xrpcP99Ms, t.xrpcP99Ms),
    },
  ];
}

function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : String(n);
}

function fmtMb(kb: number): string {
  return `${(kb / 1024).toFixed(0)} MB`;
}

const log = (line: string) => console.error(`[bench:scale] ${line}`);

/** The machine, for the figures' context. */
function machine(): { nproc: number; model: string; memTotalMb: number } {
  const cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
  const meminfo = Deno.readTextFileSync("/proc/meminfo");
  return {
    nproc: navigator.hardwareConcurrency,
    model: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1].trim() ?? "unknown",
    memTotalMb: Math.round(Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0) / 1024),
  };
}

function loadAverage(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

/** RssAnon, RssFile and RssShmem of a process in kB; undefined once it is gone or exiting. */
function readRss(pid: number): { anonKb: number; fileKb: number; shmemKb: number } | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    return undefined;
  }
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  const rss = { anonKb: kb("RssAnon"), fileKb: kb("RssFile"), shmemKb: kb("RssShmem") };
  // An exiting process (a zombie) still has a status file, without memory lines.
  return Number.isNaN(rss.anonKb) ? undefined : rss;
}

/** CPU seconds a process has used; undefined once it is gone. */
function cpuSeconds(pid: number): number | undefined {
  try {
    return processCpuS(pid);
  } catch {
    return undefined;
  }
}

/** Parent pid of every process, from /proc/<pid>/stat. */
function parentPids(): Map<number, number> {
  const out = new Map<number, number>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      out.set(Number(e.name), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch { /* gone meanwhile */ }
  }
  return out;
}

/** The `deno run … main.ts <command>` process under the `deno task` process `root`, if it is up yet. */
function findService(root: number, command: string): number | undefined {
  const parents = parentPids();
  const below = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (below.has(ppid) && !below.has(pid)) below.add(pid), grew = true;
    }
  }
  for (const pid of below) {
    if (pid === root) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
      if (
        argv.includes("run") && argv.some((a) => a.endsWith("main.ts")) && argv.includes(command)
      ) {
        return pid;
      }
    } catch { /* gone meanwhile */ }
  }
  return undefined;
}

/** Settings the repository's .env would add to the run (the tasks load it; they are not ours). */
function dotEnvSettings(): string[] {
  try {
    return Deno.readTextFileSync(`${ROOT}.env`).split("\n").map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
  } catch {
    return [];
  }
}

/** Files and bytes under `dir`, and how many are LevelDB tables (*.ldb). */
function dirUsage(dir: string): { bytes: number; files: number; ldb: number } {
  let bytes = 0, files = 0, ldb = 0;
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { bytes, files, ldb };
    throw err;
  }
  for (const e of entries) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) {
      const sub = dirUsage(path);
      bytes += sub.bytes, files += sub.files, ldb += sub.ldb;
    } else if (e.isFile) {
      try {
        bytes += Deno.statSync(path).size;
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) continue; // LevelDB removed it meanwhile
        throw err;
      }
      files++;
      if (e.name.endsWith(".ldb")) ldb++;
    }
  }
  return { bytes, files, ldb };
}

/** Progress so far from Postgres: pairs written and collections completed (zeros before migrations). */
async function readProgress(sql: Sql): Promise<{ pairs: number; rows: number; completed: number }> {
  try {
    const [r] = await sql`
      SELECT coalesce(sum(imported_count), 0)::bigint AS pairs, count(*)::int AS rows,
             count(completed_at)::int AS completed
      FROM backfill_progress`;
    return { pairs: Number(r.pairs), rows: r.rows, completed: r.completed };
  } catch (err) {
    if ((err as { code?: string }).code === "42P01") return { pairs: 0, rows: 0, completed: 0 };
    throw err;
  }
}

/** When the collections completed, in seconds since spawn (from backfill_progress.completed_at). */
interface Schedule {
  /** The last of the seven large collections. */
  readonly largeDoneS?: number;
  readonly lastDoneS?: number;
  /** Collections, and their pairs, that completed after the large ones. */
  readonly after: number;
  readonly afterPairs: number;
}

async function readSchedule(sql: Sql, world: SimWorld, t0Wall: number): Promise<Schedule> {
  const rows = await sql<{ collection: string; done: number | null }[]>`
    SELECT collection, extract(epoch FROM completed_at)::float8 AS done FROM backfill_progress`;
  const large = new Set(NETWORK_LARGE.map(([c]) => c));
  const at = (r: { done: number | null }) => r.done === null ? NaN : r.done - t0Wall / 1000;
  const largeDone = rows.filter((r) => large.has(r.collection)).map(at);
  const largeDoneS = largeDone.length === large.size ? Math.max(...largeDone) : undefined;
  const later = rows.filter((r) => largeDoneS !== undefined && at(r) > largeDoneS);
  const all = rows.map(at);
  return {
    largeDoneS,
    lastDoneS: rows.length ? Math.max(...all) : undefined,
    after: later.length,
    afterPairs: later.reduce((a, r) => a + world.size(r.collection), 0),
  };
}

/** One XRPC page's latency and whether it was a full page. */
interface Probe {
  readonly ms: number;
  readonly full: boolean;
}

/** The URL of one 2000-DID page of a random large collection at a random cursor on `base`. */
function probeUrl(base: string, world: SimWorld, rand: () => number): string {
  const [c] = NETWORK_LARGE[Math.floor(rand() * NETWORK_LARGE.length)];
  const size = world.size(c);
  const cursor = size > 0
    ? `&cursor=${encodeCursor(world.didAt(c, Math.floor(rand() * size)))}`
    : "";
  return `${base}${XRPC}?collection=${c}&limit=${XRPC_LIMIT}${cursor}`;
}

/** Fetches one 2000-DID page of a random large collection at a random cursor from `base`. */
async function probeXrpc(base: string, world: SimWorld, rand: () => number): Promise<Probe> {
  const t = performance.now();
  const res = await fetch(probeUrl(base, world, rand));
  const text = await res.text();
  const ms = performance.now() - t;
  if (!res.ok) throw new Error(`XRPC ${res.url} answered ${res.status}: ${text.slice(0, 300)}`);
  return { ms, full: (JSON.parse(text) as { repos: unknown[] }).repos.length === XRPC_LIMIT };
}

/** `n` sequential probes after a 20-page warm-up. */
async function probeMany(base: string, world: SimWorld, n: number, seed: number): Promise<Probe[]> {
  const rand = seededRandom(seed);
  const out: Probe[] = [];
  for (let i = 0; i < n + 20; i++) {
    const p = await probeXrpc(base, world, rand);
    if (i >= 20) out.push(p);
  }
  return out;
}

/** p50/p99 and counts of a set of probes. */
interface Latency {
  readonly n: number;
  readonly short: number;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
}

function latency(probes: readonly Probe[]): Latency {
  const ms = probes.map((p) => p.ms).sort((a, b) => a - b);
  return {
    n: ms.length,
    short: probes.filter((p) => !p.full).length,
    p50Ms: ms.length ? percentile(ms, 50) : undefined,
    p99Ms: ms.length ? percentile(ms, 99) : undefined,
  };
}

/** Counts every collection's DIDs in the finished index (its owner has exited) against the world. */
async function checkCounts(
  indexPath: string,
  world: SimWorld,
): Promise<{ problems: string[]; counted: number; seconds: number }> {
  const t = performance.now();
  const index = await IndexStore.open({
    path: indexPath,
    cacheSize: 1 << 20,
    writeBufferSize: 1 << 20,
  });
  const problems: string[] = [];
  let counted = 0, lastLog = performance.now();
  const total = world.collections().reduce((a, c) => a + world.size(c), 0);
  try {
    for (const c of world.collections()) {
      let n = 0, after: string | undefined;
      for (;;) {
        const page = await index.listDids(c, 100_000, after);
        n += page.dids.length;
        if (performance.now() - lastLog > 10_000) {
          lastLog = performance.now();
          log(`counting: ${fmtInt(counted + n)} of ${fmtInt(total)} pairs`);
        }
        if (page.last === undefined) break;
        after = page.last;
      }
      counted += n;
      if (n !== world.size(c)) {
        problems.push(`${c}: index holds ${n} DIDs, the world ${world.size(c)}`);
      }
    }
    for (const c of await index.listCollections()) {
      if (!world.has(c)) problems.push(`index holds unknown collection ${c}`);
    }
  } finally {
    await index.close();
  }
  return { problems, counted, seconds: (performance.now() - t) / 1000 };
}

/** XRPC page latency from the app's HTTP handler on the finished index (its owner has exited). */
async function xrpcAfterRun(indexPath: string, dbUrl: string, world: SimWorld, seed: number) {
  const index = await IndexStore.open({ path: indexPath });
  const sql = createSql(dbUrl, { max: 1 });
  const app = readOnlyApp(index, new ProgressStore({ sql }));
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.fetch);
  try {
    return await probeMany(`http://127.0.0.1:${server.addr.port}`, world, 400, seed);
  } finally {
    await server.shutdown();
    await sql.end();
    await index.close();
  }
}

/** Waits for `cond`, checking every `everyMs`, failing after `timeoutMs` with what it waited for. */
async function waitFor(
  cond: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs: number,
  everyMs = 100,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(everyMs);
  }
}

/** A harness failure (exit 2), as opposed to a run that missed a target (exit 1). */
class HarnessError extends Error {}

/** The spawned `deno task`, its output files and the service process under it. */
interface Service {
  readonly taskPid: number;
  readonly status: Promise<Deno.CommandStatus>;
  exited?: Deno.CommandStatus;
  pid?: number;
  kill(signal: Deno.Signal): void;
}

function spawnService(
  flags: ScaleFlags,
  env: Record<string, string>,
  workDir: string,
): Service {
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["task", flags.mode],
    cwd: ROOT,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const sink = (stream: ReadableStream<Uint8Array>, name: string) =>
    Deno.open(`${workDir}/${name}`, { write: true, create: true, truncate: true })
      .then((f) => stream.pipeTo(f.writable))
      .catch(() => {});
  const piped = Promise.all([sink(proc.stdout, "stdout.log"), sink(proc.stderr, "stderr.log")]);
  const svc: Service = {
    taskPid: proc.pid,
    status: proc.status.then(async (s) => {
      await piped;
      return svc.exited = s;
    }),
    kill(signal) {
      for (const pid of [svc.pid, svc.taskPid]) {
        if (pid === undefined || svc.exited) continue;
        try {
          Deno.kill(pid, signal);
        } catch { /* already gone */ }
      }
    },
  };
  return svc;
}

function tail(path: string, lines = 15): string {
  try {
    return Deno.readTextFileSync(path).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(none)";
  }
}

/** Everything the report prints; also the --json summary. */
interface Summary {
  readonly machine: ReturnType<typeof machine>;
  readonly load: { start: string; end: string };
  readonly flags: ScaleFlags;
  readonly world: {
    pairs: number;
    collections: number;
    accounts: number;
    largest: [string, number][];
  };
  readonly run: {
    readonly exitCode: number | null;
    readonly wallS: number;
    /** The last sample that saw no pairs yet: deciles are timed from there. */
    readonly ingestFromS: number;
    readonly serviceCpuS: number;
    readonly relayCpuS: number;
    readonly avgPairsPerSec: number;
    readonly pairs: number;
  };
  readonly deciles: Decile[];
  readonly peak: { anonMb: number; fileMb: number; shmemMb: number };
  readonly ingestRatio?: number;
  readonly anonFlatness?: number;
  readonly disk: { indexBytes: number; files: number; ldbFiles: number; bytesPerPair: number };
  readonly counts: { problems: string[]; counted: number; seconds: number };
  readonly xrpc: { during?: Latency; after: Latency };
  readonly schedule: Schedule;
  readonly relay: {
    requests: number;
    pages: number;
    didsServed: number;
    meanPage: number;
    byStatus: Record<string, number>;
  };
  readonly targets: TargetRow[];
  readonly ok: boolean;
  readonly workDir?: string;
  readonly dbUrl?: string;
  /** Every sample: seconds, pairs, RssAnon kB, RssFile kB, *.ldb files, index bytes. */
  readonly samples: [number, number, number, number, number?, number?][];
}

async function run(flags: ScaleFlags): Promise<Summary> {
  const mach = machine();
  const loadStart = loadAverage();
  log(
    `machine: ${mach.nproc} cores, ${mach.model}, ${fmtInt(mach.memTotalMb)} MB; load ${loadStart}`,
  );
  const tWorld = performance.now();
  const world = makeNetworkWorld({ pairs: flags.pairs, seed: flags.seed });
  const totals = world.totals();
  const total = totals.entries;
  const largest = world.collections().map((c) => [c, world.size(c)] as [string, number])
    .sort((a, b) => b[1] - a[1]).slice(0, 8);
  log(
    `world (${((performance.now() - tWorld) / 1000).toFixed(1)} s): ${
      fmtInt(total)
    } pairs, ${totals.collections} collections, ${fmtInt(totals.accounts)} accounts; largest ${
      largest.slice(0, 3).map(([c, n]) => `${c} ${fmtInt(n)}`).join(", ")
    }, …`,
  );
  const extra = dotEnvSettings();
  if (extra.length) {
    log(`warning: ${ROOT}.env sets ${extra.join(", ")}; the run uses it as a user's would`);
  }

  // bsky.network serves up to 10,000 DIDs a page (issue 9); said here, not left to the default.
  const relay: SimRelay = await startSimRelay({ world, port: 0, maxLimit: 10_000 });
  const db = await freshDatabase("bench_scale");
  const workDir = await Deno.makeTempDir({ prefix: "bench-scale-" });
  const dataDir = `${workDir}/data`;
  const indexPath = `${dataDir}/index`;
  const sql = createSql(db.url, { max: 1 });
  let svc: Service | undefined;
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    cleaned ??= (async () => {
      svc?.kill("SIGKILL");
      if (svc) await Promise.race([svc.status, sleep(10_000)]);
      await sql.end({ timeout: 1 }).catch(() => {});
      await relay.close().catch(() => {});
      if (flags.keep) {
        log(`kept ${workDir} (logs: stdout.log, stderr.log) and ${db.url}`);
      } else {
        await db.drop().catch((err) => log(`could not drop ${db.url}: ${err}`));
        await Deno.remove(workDir, { recursive: true }).catch(() => {});
      }
    })();
  // Ctrl-C mid-run: no database or temp directory left behind (the terminal signals the service too).
  const interrupted = () => {
    log("interrupted: stopping the service and cleaning up");
    cleanup().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", interrupted);
  Deno.addSignalListener("SIGTERM", interrupted);
  try {
    const port = flags.mode === "start" ? freePort() : undefined;
    const password = crypto.randomUUID();
    const env: Record<string, string> = {
      ...inheritedEnv(),
      BACKFILL_SOURCE: relay.url,
      LEXICON_LIST_URL: `${relay.url}/llms.txt`,
      DATABASE_URL: db.url,
      DATA_DIR: dataDir,
      BACKFILL_MAX_RPS: String(flags.maxRps),
      ...(port === undefined
        ? {}
        : { PORT: String(port), HOST: "127.0.0.1", RELAY_ADMIN_PASSWORD: password }),
    };
    log(
      `relay ${relay.url}; deno task ${flags.mode}, BACKFILL_MAX_RPS=${flags.maxRps}, work dir ${workDir}`,
    );

    const samples: Sample[] = [];
    let peakAnon = 0, peakFile = 0, peakShmem = 0;
    let done = false;
    const t0 = performance.now(), t0Wall = Date.now();
    const service = svc = spawnService(flags, env, workDir);
    service.status.then(() => done = true);
    await waitFor(
      () =>
        service.exited !== undefined ||
        (service.pid = findService(service.taskPid, flags.mode)) !== undefined,
      `the deno run process under deno task ${flags.mode} (pid ${service.taskPid})`,
      60_000,
      20,
    );
    if (service.pid === undefined) {
      throw new HarnessError(
        `deno task ${flags.mode} exited (${service.exited?.code}) before its service process was seen:\n${
          tail(`${workDir}/stderr.log`)
        }`,
      );
    }
    log(`service pid ${service.pid} (deno task pid ${service.taskPid})`);
    let progress = { pairs: 0, rows: 0, completed: 0 };
    let lastLog = 0, serviceCpuS = 0, lastPairs = -1, lastChange = performance.now();
    let samplerError: Error | undefined;
    const benchCpu0 = processCpuS();
    const sampling = (async () => {
      while (!done) {
        const rss = readRss(service.pid!);
        const t = (performance.now() - t0) / 1000;
        const cpu = cpuSeconds(service.pid!);
        if (cpu !== undefined) serviceCpuS = cpu;
        progress = await readProgress(sql);
        const disk = dirUsage(indexPath);
        if (rss) {
          samples.push({ t, pairs: progress.pairs, ...rss, ldb: disk.ldb, diskBytes: disk.bytes });
          peakAnon = Math.max(peakAnon, rss.anonKb);
          peakFile = Math.max(peakFile, rss.fileKb);
          peakShmem = Math.max(peakShmem, rss.shmemKb);
          if (t - lastLog >= 10) {
            lastLog = t;
            log(
              `${t.toFixed(0)} s: ${fmtInt(progress.pairs)} pairs (${
                (progress.pairs / total * 100).toFixed(1)
              }%), anon ${fmtMb(rss.anonKb)}, file ${fmtMb(rss.fileKb)}, ${disk.ldb} tables`,
            );
          }
        }
        if (flags.mode === "start" && progress.completed >= totals.collections) done = true;
        if (progress.pairs !== lastPairs) {
          lastPairs = progress.pairs, lastChange = performance.now();
        }
        // A server whose backfill stopped short (a collection failed for good) would idle forever.
        if (!done && performance.now() - lastChange > STALL_MS) {
          throw new HarnessError(
            `no progress for ${
              STALL_MS / 1000
            } s at ${progress.pairs} pairs, ${progress.completed} of ${totals.collections} collections completed`,
          );
        }
        // Finer until the first pairs land, so startup is not counted as the first decile's ingest.
        if (!done) {
          await sleep(progress.pairs === 0 ? Math.min(flags.sampleMs, 100) : flags.sampleMs);
        }
      }
    })().catch((err) => {
      samplerError = err;
      done = true;
    });
    /** Throws what stopped the sampler, if anything did. */
    const samplerOk = () => {
      if (samplerError) throw samplerError;
    };

    let during: Probe[] | undefined;
    let after: Probe[];
    let endT: number;
    if (flags.mode === "start") {
      const base = `http://127.0.0.1:${port}`;
      await waitFor(
        async () => {
          if (service.exited) {
            throw new HarnessError(
              `deno task start exited (${service.exited.code}):\n${tail(`${workDir}/stderr.log`)}`,
            );
          }
          return (await fetch(`${base}/readyz`).then(
            (r) => r.text().then(() => r.ok),
            () => false,
          ));
        },
        `${base}/readyz`,
        120_000,
      );
      const res = await fetch(`${base}/admin/backfill-collections`, {
        method: "POST",
        headers: { authorization: `Bearer ${password}` },
      });
      const body = await res.text();
      if (!res.ok) {
        throw new HarnessError(`POST /admin/backfill-collections: ${res.status} ${body}`);
      }
      log(`backfill started: ${body.slice(0, 200)}`);
      // About 10 pages a second while the backfill writes, from a worker (see bench_scale_probe.ts).
      const rand = seededRandom(flags.seed ^ 0x5ca1e);
      const urls = Array.from({ length: 20_000 }, () => probeUrl(base, world, rand));
      while (!done && progress.pairs === 0) await sleep(20);
      const prober = new Worker(new URL("./bench_scale_probe.ts", import.meta.url), {
        type: "module",
      });
      try {
        const probes = new Promise<Probe[]>((resolve, reject) => {
          prober.onmessage = (e: MessageEvent<{ ms: number; repos: number }[]>) =>
            resolve(e.data.map((p) => ({ ms: p.ms, full: p.repos === XRPC_LIMIT })));
          prober.onerror = (e) => {
            e.preventDefault();
            reject(new HarnessError(`XRPC prober: ${e.message}`));
          };
        });
        // Awaited below; a prober error before then (a service stopped by Ctrl-C) must not end this
        // process as an unhandled rejection before the cleanup.
        probes.catch(() => {});
        prober.postMessage({ urls });
        while (!done) await sleep(20);
        prober.postMessage({ stop: true });
        during = await probes;
      } finally {
        prober.terminate();
      }
      await sampling;
      samplerOk();
      endT = (performance.now() - t0) / 1000;
      if (service.exited) {
        throw new HarnessError(
          `deno task start exited (${service.exited.code}) during the run:\n${
            tail(`${workDir}/stderr.log`)
          }`,
        );
      }
      after = await probeMany(base, world, 400, flags.seed);
      // To the service itself, as a supervisor would; deno task exits once it has.
      Deno.kill(service.pid, "SIGTERM");
      const stopped = await Promise.race([service.status, sleep(60_000).then(() => undefined)]);
      if (!stopped) {
        service.kill("SIGKILL");
        throw new HarnessError("deno task start did not stop within 60 s of SIGTERM");
      }
    } else {
      await Promise.race([service.status, sampling]);
      samplerOk();
      await service.status;
      endT = (performance.now() - t0) / 1000;
      await sampling;
      samplerOk();
      progress = await readProgress(sql);
      after = [];
    }
    const last = samples[samples.length - 1];
    if (!last || last.pairs < progress.pairs) {
      // The last pages landed after the last /proc sample: count them with the last memory seen.
      samples.push({
        t: endT,
        pairs: progress.pairs,
        anonKb: last?.anonKb ?? NaN,
        fileKb: last?.fileKb ?? NaN,
        shmemKb: last?.shmemKb ?? NaN,
        ldb: last?.ldb,
        diskBytes: last?.diskBytes,
      });
    }
    // The index's LevelDB lock is free only once the service process itself is gone.
    await waitFor(
      () => readRss(service.pid!) === undefined,
      `service pid ${service.pid} to exit`,
      60_000,
    );
    const exitCode = service.exited?.code ?? null;
    // The bench process is the relay (and the sampler); its CPU next to the service's.
    const relayCpuS = processCpuS() - benchCpu0;
    log(`run ended after ${endT.toFixed(1)} s (exit ${exitCode}): ${fmtInt(progress.pairs)} pairs`);
    if (flags.mode === "backfill" && exitCode !== 0) {
      log(`deno task backfill exited ${exitCode}; stderr:\n${tail(`${workDir}/stderr.log`)}`);
    }

    const usage = dirUsage(indexPath);
    const schedule = await readSchedule(sql, world, t0Wall);
    log("counting every collection in the index…");
    const counts = await checkCounts(indexPath, world);
    log(
      `counted ${fmtInt(counts.counted)} pairs in ${counts.seconds.toFixed(1)} s: ${
        counts.problems.length ? "WRONG" : "all match"
      }`,
    );
    if (flags.mode === "backfill") after = await xrpcAfterRun(indexPath, db.url, world, flags.seed);

    const ds = deciles(samples, total);
    const firstPairs = samples.find((s) => s.pairs > 0);
    const startIdx = Math.max(0, samples.indexOf(firstPairs!) - 1);
    const avg = progress.pairs / endT;
    const xrpcDuring = during ? latency(during) : undefined;
    const xrpcAfter = latency(after);
    const xrpcShown = xrpcDuring && xrpcDuring.n > 0 ? xrpcDuring : xrpcAfter;
    const figures: TargetFigures = {
      avgPairsPerSec: avg,
      ingestRatio: ingestRatio(ds),
      anonPeakMb: peakAnon / 1024,
      anonFlatness: anonFlatness(ds),
      bytesPerPair: usage.bytes / Math.max(1, progress.pairs),
      xrpcP50Ms: xrpcShown.p50Ms,
      xrpcP99Ms: xrpcShown.p99Ms,
      xrpcWhen: xrpcShown === xrpcDuring ? "while writing" : "after the run",
    };
    const targets: TargetRow[] = [
      {
        name: "run exited cleanly",
        target: flags.mode === "start" ? "exit 0 on SIGTERM" : "exit 0",
        measured: `exit ${exitCode}`,
        ok: exitCode === 0,
      },
      {
        name: "exact counts, every collection",
        target: `${totals.collections} match`,
        measured: counts.problems.length ? `${counts.problems.length} wrong` : "all match",
        ok: counts.problems.length === 0,
      },
      ...targetRows(figures),
    ];
    const s = relay.stats;
    return {
      schedule,
      machine: mach,
      load: { start: loadStart, end: loadAverage() },
      flags,
      world: { pairs: total, collections: totals.collections, accounts: totals.accounts, largest },
      run: {
        exitCode,
        wallS: endT,
        ingestFromS: firstPairs ? samples[startIdx].t : NaN,
        serviceCpuS,
        relayCpuS,
        avgPairsPerSec: avg,
        pairs: progress.pairs,
      },
      deciles: ds,
      peak: { anonMb: peakAnon / 1024, fileMb: peakFile / 1024, shmemMb: peakShmem / 1024 },
      ingestRatio: figures.ingestRatio,
      anonFlatness: figures.anonFlatness,
      disk: {
        indexBytes: usage.bytes,
        files: usage.files,
        ldbFiles: usage.ldb,
        bytesPerPair: figures.bytesPerPair,
      },
      counts,
      xrpc: { during: xrpcDuring, after: xrpcAfter },
      relay: {
        requests: s.requests,
        pages: s.pages,
        didsServed: s.didsServed,
        meanPage: s.didsServed / Math.max(1, s.pages),
        byStatus: { ...s.byStatus },
      },
      targets,
      ok: targets.every((r) => r.ok === true),
      samples: samples.map((x) => [
        Math.round(x.t * 1000) / 1000,
        x.pairs,
        x.anonKb,
        x.fileKb,
        x.ldb,
        x.diskBytes,
      ]),
      ...(flags.keep ? { workDir, dbUrl: db.url } : {}),
    };
  } finally {
    Deno.removeSignalListener("SIGINT", interrupted);
    Deno.removeSignalListener("SIGTERM", interrupted);
    await cleanup();
  }
}

function report(s: Summary): string[] {
  const lines: string[] = [];
  const p = (l = "") => lines.push(l);
  const m = s.machine;
  p(`machine: ${m.nproc} cores, ${m.model}, ${
    fmtInt(m.memTotalMb)
  } MB RAM; load average ${s.load.start} at start, ${s.load.end} at end`);
  p(
    `world: ${fmtInt(s.world.pairs)} pairs, ${s.world.collections} collections, ${
      fmtInt(s.world.accounts)
    } accounts; mode ${s.flags.mode}, BACKFILL_MAX_RPS=${s.flags.maxRps}, seed ${s.flags.seed}`,
  );
  p(
    `relay: ${fmtInt(s.relay.requests)} requests, ${fmtInt(s.relay.pages)} pages, ${
      fmtInt(s.relay.meanPage)
    } DIDs per page on average, statuses ${JSON.stringify(s.relay.byStatus)}`,
  );
  p();
  p(
    "decile  elapsed     pairs         ingest pairs/s   RssAnon   RssFile   RssShmem  tables  B/pair",
  );
  for (const d of s.deciles) {
    const perPair = d.diskBytes === undefined ? "-" : (d.diskBytes / d.pairs1).toFixed(1);
    p(
      `${String(d.decile * 10).padStart(5)}%  ${d.t1.toFixed(1).padStart(7)} s ${
        fmtInt(d.pairs1).padStart(13)
      } ${(d.rate === undefined ? "-" : fmtInt(d.rate)).padStart(16)} ${
        fmtMb(d.anonKb).padStart(9)
      } ${fmtMb(d.fileKb).padStart(9)} ${fmtMb(d.shmemKb).padStart(10)} ${
        String(d.ldb ?? "-").padStart(7)
      } ${perPair.padStart(7)}`,
    );
  }
  p();
  p(`peak: anonymous ${s.peak.anonMb.toFixed(0)} MB, file-backed ${
    s.peak.fileMb.toFixed(0)
  } MB, shmem ${s.peak.shmemMb.toFixed(0)} MB`);
  p(
    `run: ${s.run.wallS.toFixed(1)} s wall from spawn (deciles timed from ${
      s.run.ingestFromS.toFixed(1)
    } s, the last sample without pairs), ${fmtInt(s.run.pairs)} pairs, ${
      fmtInt(s.run.avgPairsPerSec)
    } pairs/s on average (${
      fmtInt(s.run.pairs / (s.run.wallS - s.run.ingestFromS))
    } pairs/s from the first pairs on)`,
  );
  p(
    `cpu: ${s.run.serviceCpuS.toFixed(1)} s the service, ${
      s.run.relayCpuS.toFixed(1)
    } s this process (the relay and the sampler), over ${
      s.run.wallS.toFixed(1)
    } s on ${s.machine.nproc} cores`,
  );
  p(
    `ingest last 2 deciles / first 2: ${
      s.ingestRatio?.toFixed(2) ?? "n/a"
    }x; anonymous RSS end / at 20%: ${s.anonFlatness?.toFixed(2) ?? "n/a"}x`,
  );
  p(
    `disk: ${
      (s.disk.indexBytes / 1e6).toFixed(1)
    } MB in ${s.disk.files} files (${s.disk.ldbFiles} LevelDB tables, *.ldb), ${
      s.disk.bytesPerPair.toFixed(1)
    } bytes per pair`,
  );
  if (s.schedule.largeDoneS !== undefined && s.schedule.lastDoneS !== undefined) {
    p(
      `schedule: the ${NETWORK_LARGE.length} large collections were complete at ${
        s.schedule.largeDoneS.toFixed(1)
      } s; ${s.schedule.after} collections (${
        fmtInt(s.schedule.afterPairs)
      } pairs) completed after them, the last at ${s.schedule.lastDoneS.toFixed(1)} s`,
    );
  }
  p(`counts: ${fmtInt(s.counts.counted)} pairs counted in ${s.counts.seconds.toFixed(1)} s, ${
    s.counts.problems.length
      ? `${s.counts.problems.length} collections WRONG`
      : "every collection matches the world"
  }`);
  for (const x of s.counts.problems.slice(0, 10)) p(`  ${x}`);
  const lat = (name: string, l?: Latency) => {
    if (!l) return;
    p(
      `XRPC ${XRPC_LIMIT}-DID pages ${name}: ${l.n} pages, p50 ${
        l.p50Ms?.toFixed(2) ?? "-"
      } ms, p99 ${l.p99Ms?.toFixed(2) ?? "-"} ms${l.short ? ` (${l.short} short pages)` : ""}`,
    );
  };
  lat("while the backfill writes", s.xrpc.during);
  lat("after the run", s.xrpc.after);
  p();
  const w = [42, 20, 24];
  p(`${"target".padEnd(w[0])} ${"wanted".padEnd(w[1])} ${"measured".padEnd(w[2])} result`);
  for (const r of s.targets) {
    p(`${r.name.padEnd(w[0])} ${r.target.padEnd(w[1])} ${r.measured.padEnd(w[2])} ${
      r.ok === undefined ? "n/a" : r.ok ? "PASS" : "FAIL"
    }`);
  }
  return lines;
}

async function main(args: string[]): Promise<number> {
  let flags: ScaleFlags | "help";
  try {
    flags = parseScaleFlags(args);
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (flags === "help") {
    console.log(USAGE);
    return 0;
  }
  let summary: Summary;
  try {
    summary = await run(flags);
  } catch (err) {
    console.error(
      `bench:scale: harness error: ${
        err instanceof HarnessError ? err.message : (err as Error).stack ?? err
      }`,
    );
    return 2;
  }
  if (flags.json) console.log(JSON.stringify(summary, null, 2));
  else for (const l of report(summary)) console.log(l);
  return summary.ok ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));

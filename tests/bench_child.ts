/** One benchmark run in its own process: production wiring (openRuntime) from the environment, one full backfill, a JSON report on stdout. */
import { parseConfig } from "../lib/app/config.ts";
import { createLogger } from "../lib/util/log.ts";
import { openRuntime } from "../lib/app/runtime.ts";

/** Marks the report line on stdout. */
export const REPORT_PREFIX = "BENCH_REPORT ";

/** What a child run reports to the parent. */
export interface ChildReport {
  readonly wallMs: number;
  readonly planMs: number;
  readonly completed: number;
  readonly failed: { collection: string; error: string }[];
  readonly imported: number;
  readonly pages: number;
  /** The `limit` the run's pages were asked for with in the end (2000 after a source refused more). */
  readonly pageLimit: number;
  readonly peakRssMb: number;
  /** Peaks of RSS's two parts (sampled every 100 ms): anonymous memory, and file pages LevelDB maps. */
  readonly peakAnonMb: number;
  readonly peakFileMb: number;
  /** Largest V8 heap seen (sampled every 20 ms), to tell JS memory from native. */
  readonly peakHeapMb: number;
  readonly rssBeforeMb: number;
  readonly limiter: { granted: number; throttled: number; waitedMs: number };
  /** Once a second: seconds since start, DIDs imported, pages, collections active and finished. */
  readonly timeline: [number, number, number, number, number][];
  /** Seconds from start at which each collection finished (those seen active on a 20 ms tick). */
  readonly finishedAt: Record<string, number>;
  /** Event-loop lag of a 20 ms timer during the run, ms. */
  readonly lagMs: { mean: number; p99: number; max: number };
  /** CPU seconds this process used (user + system, all threads), whole process life. */
  readonly cpuS: number;
}

/** Reads a `Vm*` line of /proc/self/status in MB. */
export function procStatusMb(field: string, pid: number | "self" = "self"): number {
  const text = Deno.readTextFileSync(`/proc/${pid}/status`);
  const m = text.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** CPU seconds (user + system, all threads) a process has used, from /proc/<pid>/stat. */
export function processCpuS(pid: number | "self" = "self"): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function main(): Promise<void> {
  const config = parseConfig(Deno.env.toObject());
  const log = createLogger({ level: config.logLevel, write: (l) => console.error(l) });
  const rt = await openRuntime({ config, log });
  const rssBeforeMb = procStatusMb("VmRSS");
  const timeline: ChildReport["timeline"] = [];
  const finishedAt: Record<string, number> = {};
  const t0 = performance.now();
  const seen = new Set<string>();
  let tracked = false;
  const lags: number[] = [];
  let peakHeapMb = 0, peakAnonMb = 0, peakFileMb = 0, ticks = 0;
  let lastTick = performance.now();
  const sample = () => {
    const s = rt.backfiller.state;
    if (!s) return;
    const t = (performance.now() - t0) / 1000;
    timeline.push([Math.round(t * 10) / 10, s.imported, s.pages, s.active.size, s.finished]);
  };
  // Tracks when collections leave the active set (cheap: the active map is at most `concurrency`).
  const watch = setInterval(() => {
    const now = performance.now();
    lags.push(Math.max(0, now - lastTick - 20));
    peakHeapMb = Math.max(peakHeapMb, Deno.memoryUsage().heapTotal / 1e6);
    if (ticks++ % 5 === 0) {
      peakAnonMb = Math.max(peakAnonMb, procStatusMb("RssAnon"));
      peakFileMb = Math.max(peakFileMb, procStatusMb("RssFile"));
    }
    lastTick = now;
    const s = rt.backfiller.state;
    if (!s) return;
    tracked = true;
    const t = (performance.now() - t0) / 1000;
    for (const c of seen) {
      if (s.active.has(c)) continue;
      finishedAt[c] ??= t;
      seen.delete(c);
    }
    for (const c of s.active.keys()) seen.add(c);
  }, 20);
  const ticker = setInterval(sample, 1000);
  const started = await rt.backfiller.start({ source: config.source });
  const planMs = performance.now() - t0;
  const summary = await started.done;
  const wallMs = performance.now() - t0;
  clearInterval(ticker);
  clearInterval(watch);
  sample();
  if (tracked) { for (const c of seen) finishedAt[c] ??= wallMs / 1000; }
  const limiter = { granted: 0, throttled: 0, waitedMs: 0 };
  for (const l of rt.limiters.values()) {
    limiter.granted += l.stats.granted;
    limiter.throttled += l.stats.throttled;
    limiter.waitedMs += l.stats.waitedMs;
  }
  const pages = rt.backfiller.state?.pages ?? 0;
  lags.sort((a, b) => a - b);
  const lagMs = {
    mean: lags.reduce((a, b) => a + b, 0) / Math.max(1, lags.length),
    p99: lags[Math.floor(lags.length * 0.99)] ?? 0,
    max: lags[lags.length - 1] ?? 0,
  };
  await rt.close();
  const report: ChildReport = {
    wallMs,
    planMs,
    completed: summary.completed,
    failed: [...summary.failed],
    imported: summary.imported,
    pages,
    pageLimit: summary.pageLimit,
    peakRssMb: procStatusMb("VmHWM"),
    peakAnonMb,
    peakFileMb,
    peakHeapMb,
    rssBeforeMb,
    limiter,
    timeline,
    finishedAt,
    lagMs,
    cpuS: processCpuS(),
  };
  console.log(REPORT_PREFIX + JSON.stringify(report));
}

if (import.meta.main) await main();

/**
 * Chaos run: `main.ts backfill` killed (SIGKILL) and stopped (SIGTERM) at random moments against a
 * faulty sim relay, then run to the end; the index and the progress rows must be exact.
 * `deno task chaos [--kills N] [--terms N] [--seed N] [--scale X] [--embedded-kills N]`
 */
import { parseArgs } from "node:util";
import { createSql } from "../lib/progress/store.ts";
import { startSimRelay } from "../lib/sim/relay.ts";
import { makeWorld, seededRandom, type SimWorld } from "../lib/sim/world.ts";
import {
  checkConsistent,
  checkExact,
  exists,
  freshDatabase,
  type IndexSnapshot,
  readIndex,
  readRows,
  readRowsAt,
  spawnMain,
} from "./_child.ts";
import { until } from "./_helpers.ts";
import { sleep } from "../lib/util/async.js";

/** How a chaos run is set up. */
export interface ChaosOptions {
  /** SIGKILLs to deliver to a live child. */
  readonly kills: number;
  /** SIGTERMs to deliver (each must exit 0 within `termTimeoutMs`). */
  readonly terms?: number;
  readonly seed?: number;
  /** Large collections are scale × 20000/12000/8000/5000/2000 DIDs. */
  readonly scale?: number;
  readonly world?: SimWorld;
  /** Use the embedded Postgres (no DATABASE_URL). */
  readonly embedded?: boolean;
  readonly pageLimit?: number;
  readonly concurrency?: number;
  readonly latencyMs?: number;
  readonly jitterMs?: number;
  readonly rate429?: number;
  readonly rate5xx?: number;
  readonly rateReset?: number;
  /** Source request-rate cap the child uses (BACKFILL_MAX_RPS). */
  readonly maxRps?: number;
  /** Share of interruptions aimed at start-up (before the first page request). */
  readonly startupShare?: number;
  /** First guess of the start-up time; later ones are measured. */
  readonly startupMs?: number;
  /** Embedded only: the first N kills land while PGlite creates its cluster (`DATA_DIR/pg`). */
  readonly pgInitKills?: number;
  /** Interruptions land uniformly within this long after the first page request. */
  readonly windowMs?: number;
  readonly termTimeoutMs?: number;
  readonly finalTimeoutMs?: number;
  readonly log?: (line: string) => void;
}

/** One interruption. */
export interface Interruption {
  readonly signal: "SIGKILL" | "SIGTERM";
  /** Where the child was when it was interrupted: before any page request, or paging. */
  readonly phase: "pg-init" | "startup" | "paging";
  readonly afterMs: number;
  /** Pages the relay served to this child. */
  readonly pages: number;
  readonly code: number;
  readonly exitMs: number;
}

/** What a chaos run did and found. */
export interface ChaosReport {
  readonly interruptions: Interruption[];
  readonly kills: number;
  readonly terms: number;
  /** Children that exited by themselves before their interruption (the work was done). */
  readonly finishedEarly: number;
  /** Children refused by the run lock because Postgres had not yet noticed the previous one died. */
  readonly lockRefusals: number;
  readonly pagesServed: number;
  /** Pages one uninterrupted run would need. */
  readonly minimalPages: number;
  readonly relayStatus: Record<string, number>;
  readonly finalRunMs: number;
  readonly totalMs: number;
  readonly collections: number;
  readonly dids: number;
  /** Empty when every check held. */
  readonly problems: string[];
}

/** Runs the chaos schedule and the final run, checking invariants after every interruption. */
export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const t0 = performance.now();
  const log = opts.log ?? (() => {});
  const seed = opts.seed ?? 1;
  const rand = seededRandom(seed ^ 0xc4a05);
  const scale = opts.scale ?? 1;
  const world = opts.world ??
    makeWorld({
      seed,
      largeSizes: [20000, 12000, 8000, 5000, 2000].map((n) => Math.round(n * scale)),
    });
  const pageLimit = opts.pageLimit ?? 50;
  const relay = await startSimRelay({
    world,
    seed,
    latencyMs: opts.latencyMs ?? 20,
    jitterMs: opts.jitterMs ?? 20,
    rate429: opts.rate429 ?? 0.01,
    rate5xx: opts.rate5xx ?? 0.03,
    rateReset: opts.rateReset ?? 0.02,
  });
  const db = opts.embedded ? undefined : await freshDatabase("chaos");
  const dataDir = await Deno.makeTempDir({ prefix: "backfill-chaos-" });
  const env: Record<string, string> = {
    DATA_DIR: dataDir,
    BACKFILL_SOURCE: relay.url,
    LEXICON_LIST_URL: `${relay.url}/llms.txt`,
    BACKFILL_PAGE_LIMIT: String(pageLimit),
    BACKFILL_CONCURRENCY: String(opts.concurrency ?? 2),
    BACKFILL_MAX_RPS: String(opts.maxRps ?? 1000),
    LOG_LEVEL: "warn",
  };
  if (db) env.DATABASE_URL = db.url;
  const sql = db ? createSql(db.url, { max: 1 }) : undefined;
  const rows = () => sql ? readRows(sql) : readRowsAt(undefined, dataDir);
  const problems: string[] = [];
  const interruptions: Interruption[] = [];
  let finishedEarly = 0, lockRefusals = 0;
  const listRequests = () => Object.values(relay.stats.byCollection).reduce((a, b) => a + b, 0);
  const pgInitKills = opts.embedded ? Math.min(opts.pgInitKills ?? 0, opts.kills) : 0;
  const rest: ("SIGKILL" | "SIGTERM")[] = [
    ...Array(opts.kills - pgInitKills).fill("SIGKILL"),
    ...Array(opts.terms ?? 0).fill("SIGTERM"),
  ];
  // Seeded shuffle, so SIGTERMs land among the kills.
  for (let i = rest.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [rest[i], rest[j]] = [rest[j], rest[i]];
  }
  const signals = [...Array(pgInitKills).fill("SIGKILL"), ...rest];
  let startupMs = opts.startupMs ?? 300;
  let prevSnap: IndexSnapshot = { dids: new Map(), checkpoints: new Map() };
  let finalRunMs = 0;
  try {
    for (let i = 0; i < signals.length;) {
      const signal = signals[i];
      // SIGTERM is only promised once the run is paging (see the planning-window test).
      const early = rand() < (opts.startupShare ?? 0.25);
      const aim = i < pgInitKills
        ? "pg-init"
        : early && signal === "SIGKILL"
        ? "startup"
        : "paging";
      const pagesBefore = relay.stats.pages;
      const requestsBefore = listRequests();
      const child = spawnMain(["backfill"], env);
      let afterMs: number;
      if (aim === "pg-init") {
        // The cluster takes seconds to create; its directory appears as creation begins.
        await until(() => exists(`${dataDir}/pg`) || child.exited !== undefined, {
          timeoutMs: 60_000,
          what: "pg dir",
        });
        await child.waitFor(rand() * 2000);
      } else if (aim === "startup") {
        await child.waitFor(rand() * startupMs);
      } else {
        await until(() => child.exited || listRequests() !== requestsBefore, {
          timeoutMs: 60_000,
          what: "the child's first page request",
          everyMs: 2,
        });
        startupMs = Math.max(100, performance.now() - child.startedAt);
        await child.waitFor(rand() * (opts.windowMs ?? 1000));
      }
      afterMs = performance.now() - child.startedAt;
      if (child.exited) {
        const out = await child.stdout + await child.stderr;
        if (child.exited.code === 1 && out.includes("another process")) {
          lockRefusals++;
          log(`  child refused by the run lock (previous one not yet gone): retrying`);
          await sleep(100); // a pause before the retry, not a wait for anything
          continue;
        }
        if (child.exited.code === 0) {
          finishedEarly++;
          log(`  child finished by itself after ${Math.round(afterMs)} ms: the work is done`);
          break;
        }
        problems.push(`child exited ${child.exited.code} before its ${signal}:\n${out}`);
        break;
      }
      const killedAt = performance.now();
      child.kill(signal);
      const paging = listRequests() > requestsBefore;
      const phase = paging ? "paging" : aim === "pg-init" ? "pg-init" : "startup";
      const limit = signal === "SIGTERM" ? opts.termTimeoutMs ?? 10_000 : 10_000;
      const status = await child.waitFor(limit);
      const exitMs = performance.now() - killedAt;
      afterMs = killedAt - child.startedAt;
      const pages = relay.stats.pages - pagesBefore;
      if (!status) {
        problems.push(`${signal}: child still running after ${limit} ms`);
        child.kill("SIGKILL");
        await child.status;
      }
      const code = (await child.status).code;
      interruptions.push({ signal, phase, afterMs, pages, code, exitMs });
      i++;
      log(
        `${String(i).padStart(3)} ${signal} ${phase.padEnd(7)} at ${
          String(Math.round(afterMs)).padStart(5)
        } ms, ${String(pages).padStart(4)} pages, exit ${code} in ${Math.round(exitMs)} ms`,
      );
      if (signal === "SIGTERM" && code !== 0) {
        problems.push(`SIGTERM → exit ${code}: ${await child.stderr}`);
      }
      const snap = await readIndex(dataDir, world);
      // Opening a half-created PGlite cluster here would finish creating it: leave it to the child.
      const r = phase === "pg-init" ? new Map() : await rows();
      const bad = checkConsistent(world, snap, r);
      if (signal === "SIGTERM" && status) {
        // A graceful stop leaves Postgres level with the index for every collection it paged.
        for (const [c, row] of r) {
          const cp = snap.checkpoints.get(c);
          const before = prevSnap.checkpoints.get(c);
          const paged = cp && (cp.pages !== before?.pages || cp.done !== before?.done);
          if (cp && paged && row.imported !== cp.imported) {
            bad.push(`${c}: after SIGTERM Postgres says ${row.imported}, the index ${cp.imported}`);
          }
        }
      }
      for (const p of bad) problems.push(`after ${signal} #${i}: ${p}`);
      if (bad.length) break;
      prevSnap = snap;
    }
    const tFinal = performance.now();
    const final = spawnMain(["backfill"], env);
    const status = await final.waitFor(opts.finalTimeoutMs ?? 300_000);
    finalRunMs = performance.now() - tFinal;
    const out = await final.stdout;
    if (!status) {
      final.kill("SIGKILL");
      await final.status;
      problems.push("final run did not finish in time");
    } else if (status.code !== 0 || !out.includes(" 0 failed")) {
      problems.push(`final run exit ${status.code}:\n${out}\n${await final.stderr}`);
    }
    log(`final run: ${Math.round(finalRunMs)} ms, ${out.trim().split("\n").at(-1)}`);
    const snap = await readIndex(dataDir, world);
    problems.push(...checkExact(world, snap, await rows()));
    // Once complete, another run pages nothing and changes no count.
    const again = spawnMain(["backfill"], env);
    const s2 = await again.waitFor(60_000);
    if (!s2) again.kill("SIGKILL");
    const out2 = await again.stdout;
    if (s2?.code !== 0 || !out2.includes(" 0 to page")) {
      problems.push(`re-run after completion: exit ${s2?.code}:\n${out2}${await again.stderr}`);
    }
    problems.push(...checkExact(world, await readIndex(dataDir, world), await rows()));
  } finally {
    await sql?.end({ timeout: 1 });
    await relay.close();
    await db?.drop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
  const dids = world.collections().reduce((n, c) => n + world.size(c), 0);
  return {
    interruptions,
    kills: interruptions.filter((x) => x.signal === "SIGKILL").length,
    terms: interruptions.filter((x) => x.signal === "SIGTERM").length,
    finishedEarly,
    lockRefusals,
    pagesServed: relay.stats.pages,
    minimalPages: world.collections().reduce(
      (n, c) => n + Math.floor(world.size(c) / pageLimit) + 1,
      0,
    ),
    relayStatus: { ...relay.stats.byStatus },
    finalRunMs,
    totalMs: performance.now() - t0,
    collections: world.collections().length,
    dids,
    problems,
  };
}

/** One-paragraph summary of a report. */
export function describeReport(name: string, r: ChaosReport): string {
  const count = (phase: Interruption["phase"]) =>
    r.interruptions.filter((x) => x.phase === phase).length;
  const maxTermExit = Math.max(
    0,
    ...r.interruptions.filter((x) => x.signal === "SIGTERM").map((x) => x.exitMs),
  );
  return [
    `${name}: ${r.kills} SIGKILL + ${r.terms} SIGTERM (${count("paging")} while paging, ` +
    `${count("startup")} during start-up, ${count("pg-init")} while PGlite created its cluster), ` +
    `${r.finishedEarly} finished early, ${r.lockRefusals} lock refusals`,
    `  world: ${r.collections} collections, ${r.dids} DIDs; pages served ${r.pagesServed} ` +
    `(an uninterrupted run needs ${r.minimalPages}); relay statuses ${
      JSON.stringify(r.relayStatus)
    }`,
    `  slowest SIGTERM exit ${Math.round(maxTermExit)} ms; final run ${
      Math.round(r.finalRunMs)
    } ms; ` +
    `total ${(r.totalMs / 1000).toFixed(1)} s`,
    r.problems.length
      ? `  PROBLEMS:\n    ${r.problems.join("\n    ")}`
      : "  exact: every check held",
  ].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      kills: { type: "string", default: "25" },
      terms: { type: "string", default: "5" },
      seed: { type: "string", default: String(Date.now() % 100000) },
      scale: { type: "string", default: "1" },
      "embedded-kills": { type: "string", default: "5" },
      quiet: { type: "boolean", default: false },
    },
  });
  const seed = Number(values.seed);
  const log = values.quiet ? undefined : (l: string) => console.log(l);
  console.log(`chaos: seed ${seed} (rerun with --seed ${seed})`);
  const report = await runChaos({
    kills: Number(values.kills),
    terms: Number(values.terms),
    seed,
    scale: Number(values.scale),
    log,
  });
  console.log(describeReport("external Postgres", report));
  let failed = report.problems.length > 0 || report.kills < Number(values.kills);
  const ek = Number(values["embedded-kills"]);
  if (ek > 0) {
    const emb = await runChaos({
      kills: ek,
      terms: 1,
      seed: seed + 1,
      embedded: true,
      pgInitKills: 2,
      world: makeWorld({ seed: seed + 1, largeSizes: [8000, 4000, 2000], collections: 30 }),
      windowMs: 1500,
      log,
    });
    console.log(describeReport("embedded Postgres (PGlite)", emb));
    failed ||= emb.problems.length > 0;
  }
  Deno.exit(failed ? 1 : 0);
}

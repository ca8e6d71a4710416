/** Helpers for fault-injection tests: main.ts as a child process, fresh databases, exactness checks. */
import type { Sql } from "postgres";
import { startEmbeddedPostgres } from "../lib/progress/embedded_pg.ts";
import type { Checkpoint } from "../lib/index/page.ts";
import { IndexStore } from "../lib/index/store.ts";
import { createSql } from "../lib/progress/store.ts";
import { deadline } from "../lib/util/async.js";
import { makeWorld, type SimWorld } from "../lib/sim/world.ts";
import { startSimRelay } from "../lib/sim/relay.ts";
import { indexDids, TEST_DATABASE_URL, until } from "./_helpers.ts";
import { startPgProxy } from "./_pg_proxy.ts";

/** Path of the service's entry point. */
export const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** A running `main.ts`, with its output collected in the background. */
export interface Child {
  readonly pid: number;
  readonly startedAt: number;
  readonly status: Promise<Deno.CommandStatus>;
  readonly stdout: Promise<string>;
  readonly stderr: Promise<string>;
  /** Set once the process has exited. */
  exited: Deno.CommandStatus | undefined;
  kill(signal: Deno.Signal): void;
  /** The exit status, or undefined when it has not exited within `ms`. */
  waitFor(ms: number): Promise<Deno.CommandStatus | undefined>;
}

/** Spawns `main.ts args` with exactly `env` (plus PATH and HOME). */
export function spawnMain(args: string[], env: Record<string, string>): Child {
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "", ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const child: Child = {
    pid: proc.pid,
    startedAt: performance.now(),
    status: proc.status.then((s) => (child.exited = s)),
    stdout: new Response(proc.stdout).text(),
    stderr: new Response(proc.stderr).text(),
    exited: undefined,
    kill(signal) {
      if (child.exited) return;
      try {
        proc.kill(signal);
      } catch { /* already gone */ }
    },
    waitFor(ms) {
      return deadline(child.status, ms).catch((err) => {
        if (err instanceof DOMException && err.name === "TimeoutError") return undefined;
        throw err;
      });
    },
  };
  return child;
}

/** Whether `path` exists. */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A new database on the test server (a child process takes a URL, not a schema). */
export async function freshDatabase(
  label: string,
): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `backfill_${label.replace(/[^A-Za-z0-9_]/g, "_")}_${
    crypto.randomUUID().slice(0, 8)
  }`;
  const admin = createSql(TEST_DATABASE_URL, { max: 1 });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  return {
    url: url.href,
    async drop() {
      const a = createSql(TEST_DATABASE_URL, { max: 1 });
      try {
        await a.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await a.end();
      }
    },
  };
}

/** A port that was free a moment ago. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A progress row as the checks need it. */
export interface Row {
  readonly collection: string;
  readonly imported: number;
  readonly new: number;
  readonly done: boolean;
}

/** Reads `backfill_progress` (no rows when the table does not exist yet). */
export async function readRows(sql: Sql): Promise<Map<string, Row>> {
  const [t] = await sql`SELECT to_regclass('backfill_progress') IS NOT NULL AS ok`;
  if (!t.ok) return new Map();
  const rows = await sql`
    SELECT collection, imported_count, new_count, completed_at FROM backfill_progress`;
  return new Map(rows.map((r) => [r.collection as string, {
    collection: r.collection as string,
    imported: Number(r.imported_count),
    new: Number(r.new_count),
    done: r.completed_at !== null,
  }]));
}

/** Reads the progress rows from a URL, or from the embedded Postgres in `dataDir/pg`. */
export async function readRowsAt(dbUrl: string | undefined, dataDir: string) {
  const embedded = dbUrl === undefined ? await startEmbeddedPostgres(`${dataDir}/pg`) : undefined;
  const sql = createSql(dbUrl ?? embedded!.url, { max: 1 });
  try {
    return await readRows(sql);
  } finally {
    await sql.end({ timeout: 1 });
    await embedded?.close();
  }
}

/** What the index holds, per collection, with its checkpoint. */
export interface IndexSnapshot {
  readonly dids: Map<string, string[]>;
  readonly checkpoints: Map<string, Checkpoint>;
}

/** Opens the index (its owner must have exited), reads everything the checks need, closes it. */
export async function readIndex(dataDir: string, world: SimWorld): Promise<IndexSnapshot> {
  const index = await IndexStore.open({
    path: `${dataDir}/index`,
    cacheSize: 1 << 20,
    writeBufferSize: 1 << 20,
  });
  try {
    const dids = new Map<string, string[]>();
    const checkpoints = new Map<string, Checkpoint>();
    const names = new Set([...world.collections(), ...await index.listCollections()]);
    for (const c of names) {
      const list = await indexDids(index, c);
      if (list.length) dids.set(c, list);
      const cp = await index.getCheckpoint(c);
      if (cp) checkpoints.set(c, cp);
    }
    return { dids, checkpoints };
  } finally {
    await index.close();
  }
}

/**
 * Invariants that must hold at any moment a process may die, for a fresh index and one source:
 * the index holds exactly the first `imported` DIDs of each collection in the source's order
 * (counted once), Postgres never runs ahead of the index, and a completed row is exact.
 */
export function checkConsistent(
  world: SimWorld,
  snap: IndexSnapshot,
  rows: Map<string, Row>,
): string[] {
  const problems: string[] = [];
  for (const c of snap.dids.keys()) {
    if (!world.has(c)) problems.push(`index holds unknown collection ${c}`);
  }
  for (const c of world.collections()) {
    const have = snap.dids.get(c) ?? [];
    const cp = snap.checkpoints.get(c);
    const n = cp?.imported ?? 0;
    const expected = world.dids(c).slice(0, n).sort();
    if (!sameList(have, expected)) {
      problems.push(`${c}: index holds ${have.length} DIDs, checkpoint says the first ${n}`);
    }
    if (cp && cp.new !== cp.imported) problems.push(`${c}: checkpoint new ${cp.new} ≠ ${n}`);
    const row = rows.get(c);
    if (!row) continue;
    if (row.imported > n || row.new > n) {
      problems.push(`${c}: Postgres counts ${row.imported}/${row.new} ahead of the index's ${n}`);
    }
    if (row.done && (!cp?.done || row.imported !== n || row.new !== n)) {
      problems.push(`${c}: completed row ${row.imported}/${row.new}, index ${n} done=${cp?.done}`);
    }
  }
  return problems;
}

/** Exactness after a finished run: sets equal the world's, counts equal the distinct DIDs, rows exactly `expected`. */
export function checkExact(
  world: SimWorld,
  snap: IndexSnapshot,
  rows: Map<string, Row>,
  expectedRows: readonly string[] = world.collections(),
): string[] {
  const problems: string[] = [];
  const names = [...rows.keys()].sort();
  const want = [...new Set(expectedRows)].sort();
  if (!sameList(names, want)) {
    problems.push(
      `progress rows ${names.length} ≠ discovered ${want.length}: ` +
        `extra ${names.filter((c) => !want.includes(c)).join(",") || "-"}, ` +
        `missing ${want.filter((c) => !names.includes(c)).join(",") || "-"}`,
    );
  }
  for (const c of snap.dids.keys()) {
    if (!world.has(c)) problems.push(`index holds unknown collection ${c}`);
  }
  for (const c of world.collections()) {
    const expected = [...new Set(world.dids(c))].sort();
    const have = snap.dids.get(c) ?? [];
    if (!sameList(have, expected)) {
      problems.push(`${c}: index holds ${have.length} DIDs, the source ${expected.length}`);
    }
    const row = rows.get(c);
    if (!row) continue;
    if (!row.done) problems.push(`${c}: not completed`);
    if (row.imported !== expected.length) {
      problems.push(`${c}: imported_count ${row.imported} ≠ ${expected.length}`);
    }
    if (row.new !== expected.length) {
      problems.push(`${c}: new_count ${row.new} ≠ ${expected.length}`);
    }
  }
  return problems;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The `--v8-flags` value of deno.json's `backfill` task, so the bench runs what users run. */
export function shippedV8Flags(denoJson: string, name: "backfill" | "start" = "backfill"): string {
  const task: unknown = JSON.parse(denoJson)?.tasks?.[name];
  const m = typeof task === "string" ? task.match(/--v8-flags=(\S+)/) : null;
  if (!m) throw new Error(`deno.json: the ${name} task has no --v8-flags (task: ${task})`);
  return m[1];
}

/** A finished {@link backfillThroughPgRestart}; disposing it removes its relay, database and files. */
export interface PgRestartRun extends AsyncDisposable {
  readonly world: SimWorld;
  readonly dbUrl: string;
  readonly dataDir: string;
  /** Undefined when the child did not exit within a minute (it is killed). */
  readonly status: Deno.CommandStatus | undefined;
  readonly stdout: string;
  readonly stderr: string;
  /** From the relay's last page served to the child's exit. */
  readonly msAfterLastPage: number;
}

/** `main.ts backfill` of a small world whose Postgres (behind a proxy) restarts for 1 s mid-run. */
export async function backfillThroughPgRestart(): Promise<PgRestartRun> {
  const world = makeWorld({ seed: 3, largeSizes: [3000, 2000], collections: 10 });
  const relay = await startSimRelay({ world, latencyMs: 20 });
  const db = await freshDatabase("pgrestart");
  const proxy = startPgProxy();
  const dataDir = await Deno.makeTempDir({ prefix: "backfill-pgrestart-" });
  const close = async () => {
    await proxy.close();
    await relay.close();
    await db.drop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  };
  try {
    const child = spawnMain(["backfill"], {
      DATABASE_URL: proxy.url(db.url),
      DATA_DIR: dataDir,
      BACKFILL_SOURCE: relay.url,
      LEXICON_LIST_URL: `${relay.url}/llms.txt`,
      BACKFILL_PAGE_LIMIT: "50",
      BACKFILL_MAX_RPS: "1000",
      LOG_LEVEL: "warn",
    });
    await until(() => relay.stats.pages > 20, { timeoutMs: 30_000, what: "pages" });
    await proxy.restart(1000);
    let last = relay.stats.pages, lastAt = performance.now();
    const watch = setInterval(() => {
      if (relay.stats.pages !== last) [last, lastAt] = [relay.stats.pages, performance.now()];
    }, 10);
    const status = await child.waitFor(60_000);
    clearInterval(watch);
    const msAfterLastPage = performance.now() - lastAt;
    if (!status) child.kill("SIGKILL");
    return {
      world,
      dbUrl: db.url,
      dataDir,
      status,
      stdout: await child.stdout,
      stderr: await child.stderr,
      msAfterLastPage,
      [Symbol.asyncDispose]: close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

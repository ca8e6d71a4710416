/** Shared test fixtures: a Postgres schema per suite, LevelDB in a temp directory, quiet loggers. */
import type { Sql } from "postgres";
import { type SimRelay, type SimRelayOptions, startSimRelay } from "../lib/sim/relay.ts";
import { parseSource, type Source } from "../lib/source/source.ts";
import { sleep } from "../lib/util/async.js";
import { Backfiller } from "../lib/run/backfill.ts";
import { discoverCollections } from "../lib/source/discovery.ts";
import { IndexStore } from "../lib/index/store.ts";
import { createLogger, type Logger, silentLogger } from "../lib/util/log.ts";
import { HostLimiter } from "../lib/source/rate_limiter.ts";
import { takeRunLock } from "../lib/progress/run_lock.ts";
import { SourceClient } from "../lib/source/client.ts";
import { loadMigrations, migrate, MIGRATIONS_DIR } from "../lib/progress/migrate.ts";
import { createSql, ProgressStore } from "../lib/progress/store.ts";
import { makeWorld } from "../lib/sim/world.ts";
import type { StreamEndpoint } from "../lib/stream/url.ts";
import { startPgProxy } from "./_pg_proxy.ts";
import { decodeFirehoseFrame } from "../lib/stream/firehose.ts";
import { decodeJetstreamMessage } from "../lib/stream/jetstream.ts";
import type { LiveEvent } from "../lib/stream/event.ts";

/** The real Postgres the tests use. */
export const TEST_DATABASE_URL = Deno.env.get("TEST_DATABASE_URL") ??
  "postgres://postgres@127.0.0.1:5432/test";

/** A fresh schema (migrated) and a client bound to it; `drop()` removes both. */
export interface TestDb extends AsyncDisposable {
  readonly sql: Sql;
  readonly schema: string;
  readonly progress: ProgressStore;
  drop(): Promise<void>;
}

/** Creates a migrated schema with a unique name. */
export async function testDb(label = "t", opts: { migrate?: boolean } = {}): Promise<TestDb> {
  const schema = `test_${label.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${
    crypto.randomUUID().slice(0, 8)
  }`;
  const admin = createSql(TEST_DATABASE_URL, { max: 1 });
  await admin.unsafe(`CREATE SCHEMA ${schema}`);
  await admin.end();
  const sql = createSql(TEST_DATABASE_URL, { max: 4, schema });
  if (opts.migrate ?? true) await migrate(sql, await loadMigrations(MIGRATIONS_DIR));
  const drop = async () => {
    await sql.end({ timeout: 1 });
    const a = createSql(TEST_DATABASE_URL, { max: 1 });
    await a.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await a.end();
  };
  return { sql, schema, progress: new ProgressStore({ sql }), drop, [Symbol.asyncDispose]: drop };
}

/** A LevelDB index in a new temp directory; `cleanup()` (or disposing it) closes and removes it. */
export async function testIndex(): Promise<
  { index: IndexStore; dir: string; cleanup(): Promise<void> } & AsyncDisposable
> {
  const dir = await Deno.makeTempDir({ prefix: "backfill-index-" });
  // With the fresh filter on, as a one-shot run opens it, so the index's tests go through it.
  const index = await IndexStore.open({
    path: dir,
    cacheSize: 1 << 20,
    writeBufferSize: 1 << 20,
    freshFilterBytes: 1 << 20,
  });
  const cleanup = async () => {
    await index.close();
    await Deno.remove(dir, { recursive: true });
  };
  return { index, dir, cleanup, [Symbol.asyncDispose]: cleanup };
}

/** A Backfiller wired to a sim relay, a test schema and a temp index, for end-to-end tests. */
export function testBackfiller(opts: {
  index: IndexStore;
  db: TestDb;
  listUrl: string;
  concurrency?: number;
  pageLimit?: number;
  maxRps?: number;
  maxAttempts?: number;
  timeoutMs?: number;
  log?: Logger;
  /** Where the run lock connects (default TEST_DATABASE_URL). */
  lockUrl?: string;
  sourceHosts?: readonly string[];
}): Backfiller {
  const log = opts.log ?? silentLogger;
  const clients = new Map<string, SourceClient>();
  return new Backfiller({
    index: opts.index,
    progress: opts.db.progress,
    clientFor: (source) => {
      let c = clients.get(source.name);
      if (!c) {
        c = new SourceClient({
          source,
          limiter: new HostLimiter({ maxRps: opts.maxRps ?? 5000 }),
          maxAttempts: opts.maxAttempts ?? 6,
          maxBackoffMs: 50,
          timeoutMs: opts.timeoutMs ?? 5_000,
          log,
        });
        clients.set(source.name, c);
      }
      return c;
    },
    discover: (signal) =>
      discoverCollections({
        listUrl: opts.listUrl,
        indexCollections: () => opts.index.listCollections(),
        log,
        signal,
      }),
    sourceSizes: (client, signal) => client.collectionSizes(signal),
    lock: (onLost) =>
      takeRunLock({ url: opts.lockUrl ?? TEST_DATABASE_URL, schema: opts.db.schema, onLost }),
    sourceHosts: opts.sourceHosts,
    concurrency: opts.concurrency ?? 4,
    pageLimit: opts.pageLimit ?? 100,
    pagePauseMs: 0,
    log,
    retryDelayMs: () => 0,
  });
}

/** Every DID the index holds for `collection`, read through listDids. */
export async function indexDids(index: IndexStore, collection: string): Promise<string[]> {
  const out: string[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await index.listDids(collection, 1000, after);
    out.push(...page.dids);
    if (page.last === undefined) return out;
    after = page.last;
  }
}

/**
 * Resolves once `cond()` holds (it may be async), checking every `everyMs` (default 10); rejects
 * after `timeoutMs` (default 30 s) with an error saying what it waited for. Every wait in a test
 * goes through here, so none can hang.
 */
export async function until(
  cond: () => unknown,
  opts: { timeoutMs?: number; what: string; everyMs?: number },
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const deadline = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what}`);
    }
    await sleep(opts.everyMs ?? 10);
  }
}

/** Options for {@link backfillFixture}. */
export interface BackfillFixtureOptions {
  /** Names the Postgres schema (default "t"). */
  readonly label?: string;
  readonly relay?: SimRelayOptions;
  /** For the fixture's backfiller; `makeBackfiller` takes its own. */
  readonly backfiller?: Partial<Parameters<typeof testBackfiller>[0]>;
}

/** A sim relay, a test schema, a temp index and a backfiller on them; disposing closes them all. */
export interface BackfillFixture extends AsyncDisposable {
  readonly relay: SimRelay;
  readonly db: TestDb;
  readonly index: IndexStore;
  readonly source: Source;
  readonly listUrl: string;
  readonly backfiller: Backfiller;
  /** Another backfiller on the same relay, schema and index; stopped on dispose. */
  makeBackfiller(opts?: Partial<Parameters<typeof testBackfiller>[0]>): Backfiller;
  /** Runs `close` on dispose, before the fixture's own parts close (last added, first run). */
  defer(close: () => unknown): void;
}

/** The one fixture for end-to-end tests: `await using f = await backfillFixture({ … })`. */
export async function backfillFixture(opts: BackfillFixtureOptions = {}): Promise<BackfillFixture> {
  const relay = await startSimRelay(opts.relay);
  const db = await testDb(opts.label);
  const idx = await testIndex();
  const listUrl = `${relay.url}/llms.txt`;
  const made: Backfiller[] = [];
  const deferred: (() => unknown)[] = [];
  const makeBackfiller = (o: Partial<Parameters<typeof testBackfiller>[0]> = {}) => {
    const b = testBackfiller({
      index: idx.index,
      db,
      listUrl,
      ...defined(opts.backfiller),
      ...defined(o),
    });
    made.push(b);
    return b;
  };
  const backfiller = makeBackfiller();
  return {
    relay,
    db,
    index: idx.index,
    source: parseSource(relay.url),
    listUrl,
    backfiller,
    makeBackfiller,
    defer: (close) => void deferred.push(close),
    async [Symbol.asyncDispose]() {
      for (const close of deferred.reverse()) await close();
      for (const b of made) await b.stop();
      await relay.close();
      await idx.cleanup();
      await db.drop();
    },
  };
}

/** `o` without its undefined fields, so spreading it keeps the defaults they would hide. */
function defined<T extends object>(o: T | undefined): Partial<T> {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined)) as Partial<
    T
  >;
}

/**
 * A backfiller whose progress database (and, with `lockThroughProxy`, its run lock) sits behind a
 * restartable Postgres proxy; `warnings` collects its warn-level log lines.
 */
export async function proxiedBackfillFixture(
  seed: number,
  opts: { lockThroughProxy?: boolean } = {},
) {
  const world = makeWorld({ seed, largeSizes: [4000, 2500, 1500], collections: 16, tailMax: 40 });
  const relay = await startSimRelay({ world, latencyMs: 15, jitterMs: 10 });
  const db = await testDb("pgrestart");
  const idx = await testIndex();
  const proxy = startPgProxy();
  const warnings: string[] = [];
  const log = createLogger({ level: "warn", write: (l) => warnings.push(l) });
  const sql = createSql(proxy.url(TEST_DATABASE_URL), { max: 4, schema: db.schema });
  const progress = new ProgressStore({ sql, log, maxRetryDelayMs: 250 });
  const proxied: TestDb = { ...db, sql, progress };
  const backfiller = testBackfiller({
    index: idx.index,
    db: proxied,
    listUrl: `${relay.url}/llms.txt`,
    pageLimit: 50,
    concurrency: 2,
    log,
    lockUrl: opts.lockThroughProxy ? proxy.url(TEST_DATABASE_URL) : undefined,
  });
  const close = async () => {
    await backfiller.stop();
    await sql.end({ timeout: 1 });
    await proxy.close();
    await relay.close();
    await idx.cleanup();
    await db.drop();
  };
  return {
    world,
    relay,
    db,
    sql,
    index: idx.index,
    proxy,
    warnings,
    backfiller,
    source: parseSource(relay.url),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Waits until `b` has fetched `n` pages; fails at once if its run ends first. */
export async function pagesReach(b: Backfiller, n: number, ms = 60_000): Promise<void> {
  await until(() => {
    const pages = b.state?.pages ?? 0;
    if (pages < n && !b.running) throw new Error(`run ended before ${n} pages`);
    return pages >= n;
  }, { timeoutMs: ms, what: `${n} pages`, everyMs: 5 });
}

/** Saves `cursor` as `endpoint`'s durable live cursor (no catch-up needed), as a consumer would. */
export async function saveLiveCursor(
  index: IndexStore,
  endpoint: StreamEndpoint,
  cursor: number,
): Promise<void> {
  await index.applyLive([], {
    stream: endpoint.url,
    value: {
      kind: endpoint.kind,
      cursor,
      eventTime: null,
      accountsDeleted: 0,
      outdatedCursors: 0,
      catchUpSince: null,
      catchUpReason: null,
    },
  });
}

/** Reads messages until `stop` says so; fails after `ms` (a deadline against hangs, not a timing). */
export function collect(
  url: string,
  stop: (events: LiveEvent[], raw: (string | Uint8Array)[]) => boolean,
  ms = 30_000,
): Promise<{ events: LiveEvent[]; raw: (string | Uint8Array)[]; closed?: number }> {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const events: LiveEvent[] = [], raw: (string | Uint8Array)[] = [];
  let settled = false;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      settled = true;
      ws.close();
      reject(new Error(`timed out collecting from ${url} (${events.length} events)`));
    }, ms);
    const done = (closed?: number) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.close();
      resolve({ events, raw, closed });
    };
    ws.onmessage = (e) => {
      // Frames already queued still arrive after close; the result is fixed once settled.
      if (settled) return;
      const m = typeof e.data === "string" ? e.data : new Uint8Array(e.data as ArrayBuffer);
      raw.push(m);
      events.push(typeof m === "string" ? decodeJetstreamMessage(m) : decodeFirehoseFrame(m));
      if (stop(events, raw)) done();
    };
    ws.onclose = (e) => done(e.code);
  });
}

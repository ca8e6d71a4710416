/** Opening and closing the service's stateful parts in the right order, from a Config. */
import type { Sql } from "postgres";
import { Backfiller, checkIndexIdentity, type IndexCheck } from "../run/mod.ts";
import { type Config, DEFAULTS } from "./config.ts";
import { discoverCollections } from "../source/mod.ts";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "../progress/mod.ts";
import { IndexStore } from "../index/mod.ts";
import type { Logger } from "../util/mod.ts";
import { loadMigrations, migrate, MIGRATIONS_DIR } from "../progress/mod.ts";
import { type LiveFigure, Metrics } from "../http/mod.ts";
import type { LiveStatus } from "../stream/mod.ts";
import { createSql, ProgressStore } from "../progress/mod.ts";
import { errorMessage, StoreError } from "../util/mod.ts";
import { HostLimiter } from "../source/mod.ts";
import { buildStatus, COLLECTION_STATES, collectionState } from "../status/mod.ts";
import { takeRunLock } from "../progress/mod.ts";
import { SourceClient } from "../source/mod.ts";
import type { Source } from "../source/mod.ts";

/** The opened parts of a running service. */
export interface Runtime {
  readonly index: IndexStore;
  readonly sql: Sql;
  readonly progress: ProgressStore;
  readonly embedded?: EmbeddedPostgres;
  readonly metrics: Metrics;
  readonly backfiller: Backfiller;
  readonly limiters: Map<string, HostLimiter>;
  /** What the startup check found about the index's identity. */
  readonly indexCheck: IndexCheck;
  close(): Promise<void>;
}

/** Options for openRuntime. */
export interface RuntimeOptions {
  readonly config: Config;
  readonly log: Logger;
  /** Aborts waits on an unreachable database. */
  readonly signal?: AbortSignal;
  /** Compare the index's identity with the one Postgres recorded (default true; not for migrate). */
  readonly checkIndex?: boolean;
  /** Overrides the Postgres schema (tests). */
  readonly schema?: string;
  /** A one-shot run (`backfill`) rather than the server: picks the defaults that differ by mode. */
  readonly oneShot?: boolean;
}

/**
 * Opens the index first: its LevelDB lock guards the whole data directory, including the embedded
 * Postgres, so a second process fails there with a clear message before touching anything.
 */
export async function openRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const { config, log } = opts;
  const index = await IndexStore.open({
    path: `${config.dataDir}/index`,
    maxOpenFiles: config.indexMaxOpenFiles,
    freshFilterBytes: (config.indexFreshFilterMb ??
      DEFAULTS.indexFreshFilterMb[opts.oneShot ? "oneShot" : "server"]) * 1024 * 1024,
    log,
  });
  let embedded: EmbeddedPostgres | undefined;
  let sql: Sql | undefined;
  try {
    let url = config.databaseUrl;
    if (url === undefined) {
      embedded = await startEmbeddedPostgres(`${config.dataDir}/pg`);
      url = embedded.url;
      log.info("using embedded Postgres", { dir: `${config.dataDir}/pg` });
    }
    // PGlite serves one connection at a time.
    const lockUrl = url;
    sql = createSql(url, { max: embedded ? 1 : 4, schema: opts.schema });
    const progress = new ProgressStore({ sql, log, signal: opts.signal });
    const migrations = await loadMigrations(MIGRATIONS_DIR);
    const applied = await firstContact(
      progress,
      embedded ? `embedded Postgres in ${config.dataDir}/pg` : describeDatabase(url),
      config.databaseWaitMs,
      opts.signal,
      () => migrate(sql!, migrations),
    );
    if (applied.length) log.info("migrations applied", { migrations: applied });
    // `migrate` only migrates: run elsewhere, with another DATA_DIR, it must not mark anything.
    const indexCheck = opts.checkIndex === false
      ? { identity: index.identity, replaced: false, marked: [] }
      : await checkIndexIdentity({ index, progress, log });
    const metrics = new Metrics();
    const limiters = new Map<string, HostLimiter>();
    const clients = new Map<string, SourceClient>();
    const clientFor = (source: Source) => {
      let client = clients.get(source.name);
      if (!client) {
        let limiter = limiters.get(source.host);
        if (!limiter) {
          limiters.set(source.host, limiter = new HostLimiter({ maxRps: config.maxRps }));
        }
        client = new SourceClient({
          source,
          limiter,
          timeoutMs: config.requestTimeoutMs,
          log,
          observer: {
            response(name, status, ms) {
              metrics.responses.inc({ source: name, status: String(status) });
              metrics.latency.observe({ source: name }, ms / 1000);
            },
          },
        });
        clients.set(source.name, client);
      }
      return client;
    };
    const backfiller = new Backfiller({
      index,
      progress,
      clientFor,
      discover: (signal) =>
        discoverCollections({
          listUrl: config.lexiconListUrl,
          indexCollections: () => index.listCollections(),
          log,
          signal,
        }),
      sourceSizes: (client, signal) => client.collectionSizes(signal),
      lock: embedded
        ? undefined
        : (onLost) => takeRunLock({ url: lockUrl, schema: opts.schema, onLost }),
      sourceHosts: config.sourceHosts,
      concurrency: config.concurrency,
      pageLimit: config.pageLimit,
      pagePauseMs: config.pagePauseMs,
      log,
      observer: {
        page(source, _dids, imported, newCount, invalid) {
          metrics.pages.inc({ source });
          metrics.dids.inc({ source }, imported);
          metrics.new.inc({ source }, newCount);
          if (invalid) metrics.invalidDids.inc({ source }, invalid);
        },
      },
    });
    const openSql = sql;
    return {
      index,
      sql: openSql,
      progress,
      embedded,
      metrics,
      backfiller,
      limiters,
      indexCheck,
      async close() {
        await backfiller.stop({ resumable: true });
        await openSql.end({ timeout: 1 }).catch(() => {});
        await embedded?.close().catch(() => {});
        await index.close();
      },
    };
  } catch (err) {
    await sql?.end({ timeout: 1 }).catch(() => {});
    await embedded?.close().catch(() => {});
    await index.close();
    throw err;
  }
}

/**
 * Runs the first database step, waiting at most `waitMs` for Postgres to answer (a Job must fail,
 * not wait forever). Failures become one line naming the database, without the password.
 */
async function firstContact<T>(
  progress: ProgressStore,
  where: string,
  waitMs: number,
  signal: AbortSignal | undefined,
  fn: () => Promise<T>,
): Promise<T> {
  const deadline = AbortSignal.timeout(waitMs);
  let last: unknown;
  try {
    return await progress.retrying("migrate", async () => {
      try {
        return await fn();
      } catch (err) {
        last = err;
        throw err;
      }
    }, deadline);
  } catch (err) {
    if (signal?.aborted) throw err;
    const cause = last ?? err;
    if (deadline.aborted) {
      const why = last === undefined ? "" : `: ${errorMessage(last)}`;
      throw new StoreError(
        `Postgres at ${where} did not answer within ${waitMs / 1000} s (DATABASE_WAIT_MS)${why}`,
        "progress",
        { cause },
      );
    }
    throw new StoreError(`cannot use Postgres at ${where}: ${errorMessage(cause)}`, "progress", {
      cause,
    });
  }
}

/** A database URL as host:port/database and user, never the password. */
export function describeDatabase(url: string): string {
  try {
    const u = new URL(url);
    const user = u.username ? ` as ${decodeURIComponent(u.username)}` : "";
    return `${u.hostname}:${u.port || "5432"}${u.pathname}${user}`;
  } catch {
    return "DATABASE_URL";
  }
}

/** Refreshes the gauges that are read at scrape time, then renders the metrics text. */
export async function renderMetrics(rt: Runtime, live?: LiveStatus | null): Promise<string> {
  const rows = await rt.progress.list();
  const b = rt.backfiller;
  const status = buildStatus(rows, b.state, b.running, Date.now());
  const counts = new Map(COLLECTION_STATES.map((state) => [state, 0]));
  for (const c of status.collections) {
    const state = collectionState(c);
    counts.set(state, counts.get(state)! + 1);
  }
  rt.metrics.collections.setAll(COLLECTION_STATES.map((state) => [{ state }, counts.get(state)!]));
  rt.metrics.indexBytes.setAll([[{}, await rt.index.approximateSize()]]);
  const keys = rt.index.pageKeys;
  rt.metrics.pageKeys.setAll([[{ how: "read" }, keys.read], [{ how: "skipped" }, keys.skipped]]);
  rt.metrics.running.setAll([[{}, rt.backfiller.running ? 1 : 0]]);
  rt.metrics.collectionInvalid.setAll(
    rows.filter((r) => r.invalid > 0).map((r) => [{ collection: r.collection }, r.invalid]),
  );
  rt.metrics.reimport.setAll([[{}, rows.filter((r) => r.reimport).length]]);
  rt.metrics.limiterWait.setAll(
    [...rt.limiters].map(([host, l]) => [{ host }, l.stats.waitedMs / 1000]),
  );
  rt.metrics.throttles.setAll([...rt.limiters].map(([host, l]) => [{ host }, l.stats.throttled]));
  for (const [key, gauge] of Object.entries(rt.metrics.live)) {
    const v = live?.[key as LiveFigure];
    gauge.setAll(live && v !== null ? [[{}, typeof v === "boolean" ? Number(v) : Number(v)]] : []);
  }
  rt.metrics.liveSkipped.setAll(
    live ? Object.entries(live.skipped).map(([kind, n]) => [{ kind }, n]) : [],
  );
  rt.metrics.liveCollection.setAll(
    live
      ? Object.entries(live.collections).flatMap(([collection, c]) => [
        [{ collection, change: "added" }, c.added],
        [{ collection, change: "removed" }, c.removed],
        [{ collection, change: "added_by_first_record" }, c.added_by_first_record],
        [{ collection, change: "removed_by_proof" }, c.removed_by_proof],
      ])
      : [],
  );
  rt.metrics.liveKept.setAll(
    live
      ? Object.entries(live.collections).flatMap(([collection, c]) =>
        Object.entries(c.deletes_kept).map(([reason, n]): [Record<string, string>, number] => [
          { collection, reason },
          n,
        ])
      )
      : [],
  );
  return rt.metrics.render();
}

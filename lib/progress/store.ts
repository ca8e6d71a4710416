/** Resumable progress in Postgres: one `backfill_progress` row per collection. */
import postgres, { type Sql } from "postgres";
import { errorMessage, type Logger, retry, silentLogger } from "../util/mod.ts";

/** A progress row, with counts as numbers. */
export interface ProgressRow {
  readonly collection: string;
  readonly source: string;
  readonly cursor: string;
  readonly imported: number;
  readonly new: number;
  readonly completedAt: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly lastError: string | null;
  readonly attempts: number;
  readonly nextRetryAt: Date | null;
  readonly estimatedTotal: number | null;
  /** Entries the source listed that were not valid DIDs (skipped, never written). */
  readonly invalid: number;
  /** Marked to import again because the index that held it was lost or replaced. */
  readonly reimport: boolean;
}

/** The index progress was recorded against (see IndexStore.identity). */
export interface IndexRecord {
  readonly identity: string;
  /** When a server last found a different index and marked rows for re-import. */
  readonly replacedAt: Date | null;
}

/** Where a collection stands after a page, for `saveCheckpoint`. */
export interface RowCheckpoint {
  readonly source: string;
  readonly cursor: string;
  readonly imported: number;
  readonly new: number;
  /** Entries that were not valid DIDs (default 0). */
  readonly invalid?: number;
}

/** How a run pages: `full` from each collection's checkpoint, `catch-up` also re-reading completed
 * collections from their final cursor for what the source added since. */
export type RunMode = "full" | "catch-up";

/** Whether `s` names a {@link RunMode}. */
export function isRunMode(s: string): s is RunMode {
  return s === "full" || s === "catch-up";
}

/** What a run was asked to do, kept so that a restarted server can resume it. */
export interface RunIntent {
  readonly source: string;
  readonly mode: RunMode;
  /** Named collections, or undefined for a discovered run. */
  readonly collections?: readonly string[];
}

/** Options for a ProgressStore. */
export interface ProgressStoreOptions {
  readonly sql: Sql;
  readonly log?: Logger;
  /** Stops waiting for an unreachable database. */
  readonly signal?: AbortSignal;
  /** Longest pause between reconnect attempts. */
  readonly maxRetryDelayMs?: number;
}

// Errors that mean "the database went away", after which waiting and retrying can succeed.
const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "57P01",
  "57P02",
  "57P03",
  "08000",
  "08001",
  "08003",
  "08006",
]);

/** True when `err` is a lost or refused database connection. */
export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" && CONNECTION_CODES.has(code);
}

/** Creates a postgres.js client with the service's settings (bigint counts come back as strings). */
export function createSql(url: string, opts: { max?: number; schema?: string } = {}): Sql {
  return postgres(url, {
    max: opts.max ?? 4,
    onnotice: () => {},
    connect_timeout: 10,
    idle_timeout: 60,
    // Reconnect quickly after a restart; the default back-off grows to many seconds.
    backoff: () => 0.25,
    connection: opts.schema ? { search_path: opts.schema } : undefined,
  });
}

/** The progress table, with retries across database restarts. */
export class ProgressStore {
  readonly sql: Sql;
  readonly #log: Logger;
  readonly #signal?: AbortSignal;
  readonly #maxDelay: number;

  constructor(opts: ProgressStoreOptions) {
    this.sql = opts.sql;
    this.#log = opts.log ?? silentLogger;
    this.#signal = opts.signal;
    this.#maxDelay = opts.maxRetryDelayMs ?? 5_000;
  }

  /** Runs `fn`, waiting and retrying while the database is unreachable. */
  async retrying<T>(what: string, fn: () => Promise<T>, stop?: AbortSignal): Promise<T> {
    const signal = stop && this.#signal
      ? AbortSignal.any([stop, this.#signal])
      : stop ?? this.#signal;
    // A connection attempt can hang (connect_timeout); the signal ends the wait at once.
    return await retry(() => signal ? untilAborted(fn(), signal) : fn(), {
      signal,
      maxAttempts: Infinity,
      isRetriable: isConnectionError,
      minTimeout: 100,
      maxTimeout: this.#maxDelay,
      jitter: 0,
      onRetry: (err, attempt) => {
        if (attempt === 1 || attempt % 10 === 0) {
          this.#log.warn("postgres unreachable, retrying", {
            op: what,
            attempt,
            error: errorMessage(err),
          });
        }
      },
    });
  }

  /** Inserts a row for each collection not yet present; returns how many were new. */
  async seed(collections: readonly string[], source: string): Promise<number> {
    if (collections.length === 0) return 0;
    return await this.retrying("seed", async () => {
      const rows = collections.map((collection) => ({ collection, source }));
      let inserted = 0;
      for (let i = 0; i < rows.length; i += 1000) {
        const r = await this.sql`
          INSERT INTO backfill_progress ${this.sql(rows.slice(i, i + 1000), "collection", "source")}
          ON CONFLICT DO NOTHING`;
        inserted += r.count;
      }
      return inserted;
    });
  }

  /** All rows, ordered by collection. */
  async list(): Promise<ProgressRow[]> {
    return await this.retrying("list", async () => {
      const rows = await this.sql`SELECT * FROM backfill_progress ORDER BY collection`;
      return rows.map(toRow);
    });
  }

  /** One row, if present. */
  async get(collection: string): Promise<ProgressRow | undefined> {
    return await this.retrying("get", async () => {
      const rows = await this.sql`SELECT * FROM backfill_progress WHERE collection = ${collection}`;
      return rows.length ? toRow(rows[0]) : undefined;
    });
  }

  /**
   * Saves cursor and counts after a page (or reconciles them from the index's checkpoint). `stop`
   * ends the wait for an unreachable database: the index's checkpoint already holds the truth.
   */
  async saveCheckpoint(collection: string, cp: RowCheckpoint, stop?: AbortSignal): Promise<void> {
    await this.retrying("checkpoint", async () => {
      await this.sql`
        UPDATE backfill_progress
        SET source = ${cp.source}, cursor = ${cp.cursor}, imported_count = ${cp.imported},
            new_count = ${cp.new}, invalid_count = ${cp.invalid ?? 0}, updated_at = now()
        WHERE collection = ${collection}`;
    }, stop);
  }

  /** Marks a collection complete, keeping its final cursor for catch-up. */
  async complete(collection: string, cp: RowCheckpoint): Promise<void> {
    await this.retrying("complete", async () => {
      await this.sql`
        UPDATE backfill_progress
        SET source = ${cp.source}, cursor = ${cp.cursor}, imported_count = ${cp.imported},
            new_count = ${cp.new}, invalid_count = ${cp.invalid ?? 0}, completed_at = now(),
            updated_at = now(), last_error = NULL,
            next_retry_at = NULL, reimport = false
        WHERE collection = ${collection}`;
    });
  }

  /** Counts an attempt at a collection. */
  async startAttempt(collection: string): Promise<void> {
    await this.retrying("attempt", async () => {
      await this.sql`
        UPDATE backfill_progress SET attempts = attempts + 1, updated_at = now()
        WHERE collection = ${collection}`;
    });
  }

  /** Records a failure; the collection is retried on the next trigger (after `nextRetryAt`). */
  async fail(collection: string, error: string, nextRetryAt: Date): Promise<void> {
    await this.retrying("fail", async () => {
      await this.sql`
        UPDATE backfill_progress
        SET last_error = ${error.slice(0, 2000)}, next_retry_at = ${nextRetryAt}, updated_at = now()
        WHERE collection = ${collection}`;
    });
  }

  /** Starts a collection over from the beginning against `source`. */
  async restart(collection: string, source: string): Promise<void> {
    await this.retrying("restart", async () => {
      await this.sql`
        UPDATE backfill_progress
        SET source = ${source}, cursor = '', imported_count = 0, new_count = 0, invalid_count = 0,
            completed_at = NULL,
            last_error = NULL, next_retry_at = NULL, attempts = 0, updated_at = now()
        WHERE collection = ${collection}`;
    });
  }

  /** Records the source's own size for a collection, for ordering and ETAs. */
  async setEstimates(estimates: ReadonlyMap<string, number>): Promise<void> {
    if (estimates.size === 0) return;
    const rows = [...estimates].map(([collection, n]) => ({ collection, n: String(n) }));
    await this.retrying("estimates", async () => {
      for (let i = 0; i < rows.length; i += 1000) {
        const chunk = rows.slice(i, i + 1000);
        await this.sql`
          UPDATE backfill_progress p SET estimated_total = v.n::bigint
          FROM (VALUES ${this.sql(chunk.map((r) => [r.collection, r.n]))}) AS v(collection, n)
          WHERE p.collection = v.collection`;
      }
    });
  }

  /** Records the run now starting; it stays open until endRun(). */
  async beginRun(intent: RunIntent): Promise<void> {
    const collections = intent.collections?.length ? [...intent.collections] : null;
    await this.retrying("begin run", async () => {
      await this.sql`
        INSERT INTO backfill_run (id, source, mode, collections, started_at, ended_at)
        VALUES (1, ${intent.source}, ${intent.mode}, ${collections}, now(), NULL)
        ON CONFLICT (id) DO UPDATE SET source = EXCLUDED.source, mode = EXCLUDED.mode,
          collections = EXCLUDED.collections, started_at = now(), ended_at = NULL`;
    });
  }

  /** Marks the run finished (or deliberately stopped): nothing to resume. */
  async endRun(stop?: AbortSignal): Promise<void> {
    await this.retrying("end run", async () => {
      await this.sql`UPDATE backfill_run SET ended_at = now() WHERE ended_at IS NULL`;
    }, stop);
  }

  /** The run a previous process left open, if any. */
  async interruptedRun(): Promise<RunIntent | undefined> {
    return await this.retrying("interrupted run", async () => {
      const [r] = await this.sql`SELECT * FROM backfill_run WHERE ended_at IS NULL`;
      if (!r) return undefined;
      return {
        source: r.source as string,
        mode: isRunMode(r.mode) ? r.mode : "full",
        collections: (r.collections as string[] | null) ?? undefined,
      };
    });
  }

  /** The index progress was recorded against, if one was recorded. */
  async indexRecord(): Promise<IndexRecord | undefined> {
    return await this.retrying("index record", async () => {
      const [r] = await this.sql`SELECT identity, replaced_at FROM backfill_index`;
      return r
        ? { identity: r.identity as string, replacedAt: r.replaced_at as Date | null }
        : undefined;
    });
  }

  /**
   * Records `identity` as the index progress belongs to. With `replaced`, every row with progress
   * starts over (cursor, counts, completion) and is marked for re-import, in the same transaction,
   * so a crash cannot record the new index without marking the rows. Returns the marked rows.
   */
  async recordIndex(identity: string, replaced: boolean): Promise<string[]> {
    return await this.retrying("record index", async () =>
      await this.sql.begin(async (tx) => {
        let marked: string[] = [];
        if (replaced) {
          const rows = await tx`
            UPDATE backfill_progress
            SET cursor = '', imported_count = 0, new_count = 0, invalid_count = 0, completed_at = NULL,
                last_error = NULL, next_retry_at = NULL, attempts = 0, reimport = true,
                updated_at = now()
            WHERE completed_at IS NOT NULL OR imported_count > 0 OR cursor <> '' OR reimport
            RETURNING collection`;
          marked = rows.map((r) => r.collection as string).sort();
        }
        await tx`
          INSERT INTO backfill_index (id, identity, replaced_at, updated_at)
          VALUES (1, ${identity}, ${replaced ? new Date() : null}, now())
          ON CONFLICT (id) DO UPDATE SET identity = EXCLUDED.identity, updated_at = now(),
            replaced_at = COALESCE(EXCLUDED.replaced_at, backfill_index.replaced_at)`;
        return marked;
      }));
  }

  /** How many rows wait for a re-import after the index was lost or replaced. */
  async reimportPending(): Promise<number> {
    const [r] = await this.sql`SELECT count(*)::int AS n FROM backfill_progress WHERE reimport`;
    return r.n as number;
  }

  /** Cheap reachability check for readiness. */
  async ping(): Promise<void> {
    await this.sql`SELECT 1`;
  }
}

/** `p`, or a rejection with the signal's reason as soon as it aborts (`p` is left to settle). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    p.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      p.catch(() => {});
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function toRow(r: Record<string, unknown>): ProgressRow {
  return {
    collection: r.collection as string,
    source: r.source as string,
    cursor: r.cursor as string,
    imported: Number(r.imported_count),
    new: Number(r.new_count ?? 0),
    completedAt: (r.completed_at as Date | null) ?? null,
    createdAt: r.created_at as Date,
    updatedAt: (r.updated_at as Date | undefined) ?? (r.created_at as Date),
    lastError: (r.last_error as string | null) ?? null,
    attempts: Number(r.attempts ?? 0),
    nextRetryAt: (r.next_retry_at as Date | null) ?? null,
    estimatedTotal: r.estimated_total == null ? null : Number(r.estimated_total),
    reimport: r.reimport === true,
    invalid: Number(r.invalid_count ?? 0),
  };
}

/** The cross-process run lock: a Postgres session advisory lock on a connection of its own. */
import postgres from "postgres";
import { type Backoff, retry } from "../util/mod.ts";

/** Process-wide exclusivity on the progress database, e.g. a Postgres advisory lock. */
export interface RunLock {
  release(): Promise<void>;
}

/** Options for takeRunLock. */
export interface RunLockOptions {
  readonly url: string;
  /** Locks are per schema, so test suites (and tenants) sharing a database do not collide. */
  readonly schema?: string;
  /** Called when the lock was lost (its session ended) and another process took it meanwhile. */
  readonly onLost: (err: Error) => void;
  /** How often the session is checked (default 2 s). */
  readonly checkEveryMs?: number;
}

const KEY = "hashtext('backfill:run:' || current_schema())";
/** While Postgres is unreachable the session is checked again every 100 ms. */
const RECHECK: Backoff = { minTimeout: 100, multiplier: 1, jitter: 0 };

/**
 * Takes the lock, or returns undefined when another process holds it. The lock lives as long as its
 * session; after a Postgres restart the session is new, so the holder takes the lock again, and
 * calls `onLost` only if someone else got it first. Releasing ends the session, which drops the
 * lock without a query on a connection that may be dead.
 */
export async function takeRunLock(opts: RunLockOptions): Promise<RunLock | undefined> {
  let recheck = () => {};
  const sql = postgres(opts.url, {
    max: 1,
    idle_timeout: 0,
    max_lifetime: null,
    connect_timeout: 10,
    onnotice: () => {},
    backoff: () => 0.2,
    // A closed session has dropped the lock: take it back as soon as Postgres answers again.
    onclose: () => recheck(),
    connection: opts.schema ? { search_path: opts.schema } : undefined,
  });
  let pid: number;
  try {
    const [r] = await sql.unsafe(
      `SELECT pg_try_advisory_lock(${KEY}) AS ok, pg_backend_pid() AS pid`,
    );
    if (!r.ok) {
      await sql.end({ timeout: 1 });
      return undefined;
    }
    pid = r.pid;
  } catch (err) {
    await sql.end({ timeout: 1 }).catch(() => {});
    throw err;
  }
  const released = new AbortController();
  let checking = false;
  let soon: ReturnType<typeof setTimeout> | undefined;
  recheck = () => {
    if (!released.signal.aborted && soon === undefined) {
      soon = setTimeout(() => (soon = undefined, check()), 100);
    }
  };
  const checkOnce = async () => {
    const [r] = await sql.unsafe(`SELECT pg_backend_pid() AS pid`);
    if (released.signal.aborted || r.pid === pid) return;
    const [again] = await sql.unsafe(
      `SELECT pg_try_advisory_lock(${KEY}) AS ok, pg_backend_pid() AS pid`,
    );
    if (again.ok) pid = again.pid;
    else if (!released.signal.aborted) {
      opts.onLost(new Error("lost the run lock: another process took it after Postgres restarted"));
    }
  };
  const check = async () => {
    if (released.signal.aborted || checking) return;
    checking = true;
    try {
      // Unreachable from here: keep trying briskly so the lock is back the moment Postgres is.
      await retry(checkOnce, { signal: released.signal, maxAttempts: Infinity, ...RECHECK });
    } catch {
      // Released meanwhile.
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(check, opts.checkEveryMs ?? 2_000);
  return {
    async release() {
      released.abort();
      clearInterval(timer);
      clearTimeout(soon);
      await sql.end({ timeout: 2 }).catch(() => {});
    },
  };
}

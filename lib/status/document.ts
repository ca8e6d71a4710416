/** The status document served at `GET /admin/backfill-collections`, built from rows and live run state. */
import type { IndexRecord, ProgressRow } from "../progress/mod.ts";
import type { RunState } from "../run/mod.ts";
import type { LiveStatus } from "../stream/mod.ts";
import { asNumber, asString, isRecord } from "../util/mod.ts";
import { collectionState } from "./state.js";

/** One collection in the status document. */
export interface CollectionStatus {
  collection: string;
  source: string;
  imported: number;
  new: number;
  completed: boolean;
  active: boolean;
  attempts: number;
  /** Entries the source listed that were not valid DIDs: skipped, never written. */
  invalid: number;
  updated_at: string;
  /** Present when `invalid` > 0 (the collection is flagged): what was lost and how to redo it. */
  warning?: string;
  cursor?: string;
  error?: string;
  next_retry_at?: string;
  estimated_total?: number;
  /** Present (true) while the collection waits to be imported again after the index was lost. */
  reimport?: true;
}

/** The running backfill, in the status document. */
export interface RunStatus {
  /** The run's id, as the start request answered it. */
  id: string;
  /** "planning" while collections are discovered and seeded (counts are 0 until then). */
  phase: "planning" | "running";
  source: string;
  mode: string;
  started_at: string;
  collections: number;
  queued: number;
  finished: number;
  pages: number;
  imported: number;
  new: number;
  invalid_dids: number;
  dids_per_sec: number;
  pages_per_sec: number;
  /** The `limit` pages are asked for with: lower than configured once the source refused more. */
  page_limit: number;
  eta_seconds: number | null;
}

/** The index's identity, and what a startup that found it lost or replaced left to do. */
export interface IndexStatus {
  identity: string;
  /** When a server last found the index missing or replaced and marked rows for re-import. */
  replaced_at: string | null;
  /** Collections still waiting for that re-import. */
  reimport: number;
}

/** The whole status document; every count is a JSON number. */
export interface StatusDocument {
  running: boolean;
  run: RunStatus | null;
  total: number;
  completed: number;
  in_progress: number;
  failed: number;
  total_imported: number;
  total_new: number;
  /** Entries skipped as invalid, over all collections. */
  total_invalid: number;
  /** Collections with invalid entries (each has a `warning`). */
  flagged: number;
  /** The index progress belongs to, or null when the caller does not know it. */
  index: IndexStatus | null;
  collections: CollectionStatus[];
  /** The live stream (see lib/stream/consumer.ts), or null when none is configured or known. */
  live: LiveStatus | null;
}

/** Builds the status document. */
export function buildStatus(
  rows: readonly ProgressRow[],
  run: RunState | undefined,
  running: boolean,
  now: number,
  live: LiveStatus | null = null,
  index: IndexRecord | null = null,
): StatusDocument {
  const active = running && run ? run.active : new Map();
  // The ETA counts collections whose size the source reported; the rest are the tiny tail.
  let completed = 0, failed = 0, imported = 0, totalNew = 0, remaining = 0, known = false;
  let reimport = 0, invalid = 0, flagged = 0;
  const collections = rows.map((r) => {
    const done = r.completedAt !== null;
    const c: CollectionStatus = {
      collection: r.collection,
      source: r.source,
      imported: r.imported,
      new: r.new,
      completed: done,
      active: active.has(r.collection),
      attempts: r.attempts,
      invalid: r.invalid,
      updated_at: r.updatedAt.toISOString(),
    };
    if (r.invalid > 0) {
      invalid += r.invalid;
      flagged++;
      c.warning = invalidWarning(r.invalid);
    }
    if (!done) c.cursor = r.cursor;
    if (r.lastError !== null && !done) c.error = r.lastError;
    if (r.nextRetryAt !== null && !done) c.next_retry_at = r.nextRetryAt.toISOString();
    if (r.estimatedTotal !== null) c.estimated_total = r.estimatedTotal;
    if (r.reimport) {
      c.reimport = true;
      reimport++;
    }
    if (done) completed++;
    if (collectionState(c) === "failed") failed++;
    imported += r.imported;
    totalNew += r.new;
    if (!done && r.estimatedTotal !== null) {
      known = true;
      remaining += Math.max(0, r.estimatedTotal - r.imported);
    }
    return c;
  });
  let runDoc: RunStatus | null = null;
  if (running && run) {
    const { didsPerSec, pagesPerSec } = run.rates(now);
    runDoc = {
      id: run.id,
      phase: run.phase,
      source: run.source,
      mode: run.mode,
      started_at: new Date(run.startedAt).toISOString(),
      collections: run.collections,
      queued: run.queued,
      finished: run.finished,
      pages: run.pages,
      imported: run.imported,
      new: run.new,
      invalid_dids: run.invalid,
      dids_per_sec: round(didsPerSec),
      pages_per_sec: round(pagesPerSec),
      page_limit: run.pageLimit,
      eta_seconds: known && didsPerSec > 0 ? Math.round(remaining / didsPerSec) : null,
    };
  }
  return {
    running,
    run: runDoc,
    total: rows.length,
    completed,
    in_progress: rows.length - completed,
    failed,
    total_imported: imported,
    total_new: totalNew,
    total_invalid: invalid,
    flagged,
    index: index
      ? { identity: index.identity, replaced_at: index.replacedAt?.toISOString() ?? null, reimport }
      : null,
    collections,
    live,
  };
}

/**
 * Reads a status document from a server's JSON, tolerating what an older or newer server may omit:
 * a missing count is 0, a missing rate NaN (shown as "?"), a missing ETA null. Undefined when the
 * body is not a status document at all.
 */
export function parseStatusDocument(body: unknown): StatusDocument | undefined {
  if (!isRecord(body) || !Array.isArray(body.collections)) return undefined;
  return {
    running: body.running === true,
    run: isRecord(body.run) ? parseRun(body.run) : null,
    total: count(body.total),
    completed: count(body.completed),
    in_progress: count(body.in_progress),
    failed: count(body.failed),
    total_imported: count(body.total_imported),
    total_new: count(body.total_new),
    total_invalid: count(body.total_invalid),
    flagged: count(body.flagged),
    index: isRecord(body.index)
      ? {
        identity: asString(body.index.identity) ?? "",
        replaced_at: asString(body.index.replaced_at) ?? null,
        reimport: count(body.index.reimport),
      }
      : null,
    collections: body.collections.filter(isRecord).map(parseCollection),
    live: isRecord(body.live) ? parseLive(body.live) : null,
  };
}

function parseLive(l: Record<string, unknown>): LiveStatus {
  const counts = (v: unknown): Record<string, number> =>
    Object.fromEntries(
      Object.entries(isRecord(v) ? v : {}).filter((e): e is [string, number] =>
        asNumber(e[1]) !== undefined
      ),
    );
  const perCollection: LiveStatus["collections"] = {};
  for (const [c, v] of Object.entries(isRecord(l.collections) ? l.collections : {})) {
    if (!isRecord(v)) continue;
    perCollection[c] = {
      added: count(v.added),
      removed: count(v.removed),
      removed_by_proof: count(v.removed_by_proof),
      added_by_first_record: count(v.added_by_first_record),
      deletes_kept: counts(v.deletes_kept),
    };
  }
  return {
    url: asString(l.url) ?? "?",
    kind: l.kind === "jetstream" ? "jetstream" : "firehose",
    connected: l.connected === true,
    cursor: asNumber(l.cursor) ?? null,
    event_time: asString(l.event_time) ?? null,
    lag_seconds: asNumber(l.lag_seconds) ?? null,
    lag_p50_seconds: asNumber(l.lag_p50_seconds) ?? null,
    lag_p99_seconds: asNumber(l.lag_p99_seconds) ?? null,
    events_per_sec: count(l.events_per_sec),
    ops_per_sec: count(l.ops_per_sec),
    pairs_added: count(l.pairs_added),
    pairs_removed: count(l.pairs_removed),
    pairs_removed_by_proof: count(l.pairs_removed_by_proof),
    pairs_added_by_first_record: count(l.pairs_added_by_first_record),
    deletes_kept_by_reason: counts(l.deletes_kept_by_reason),
    accounts_deleted: count(l.accounts_deleted),
    reconnects: count(l.reconnects),
    queue_overflows: count(l.queue_overflows),
    last_error: asString(l.last_error) ?? null,
    outdated_cursor: count(l.outdated_cursor),
    catch_up_needed: l.catch_up_needed === true,
    catch_up_reason: asString(l.catch_up_reason) ?? null,
    events: count(l.events),
    ops: count(l.ops),
    skipped: counts(l.skipped) as LiveStatus["skipped"],
    invalid_ops: count(l.invalid_ops),
    deletes_kept: count(l.deletes_kept),
    deletes_removed: count(l.deletes_removed),
    accounts: counts(l.accounts),
    stream_errors: count(l.stream_errors),
    collections: perCollection,
  };
}

function parseRun(run: Record<string, unknown>): RunStatus {
  return {
    id: asString(run.id) ?? "",
    phase: run.phase === "planning" ? "planning" : "running",
    source: asString(run.source) ?? "?",
    mode: asString(run.mode) ?? "?",
    started_at: asString(run.started_at) ?? "",
    collections: count(run.collections),
    queued: count(run.queued),
    finished: count(run.finished),
    pages: count(run.pages),
    imported: count(run.imported),
    new: count(run.new),
    invalid_dids: count(run.invalid_dids),
    dids_per_sec: asNumber(run.dids_per_sec) ?? NaN,
    pages_per_sec: asNumber(run.pages_per_sec) ?? NaN,
    page_limit: count(run.page_limit),
    eta_seconds: asNumber(run.eta_seconds) ?? null,
  };
}

function parseCollection(c: Record<string, unknown>): CollectionStatus {
  const out: CollectionStatus = {
    collection: asString(c.collection) ?? "?",
    source: asString(c.source) ?? "",
    imported: count(c.imported),
    new: count(c.new),
    completed: c.completed === true,
    active: c.active === true,
    attempts: count(c.attempts),
    invalid: count(c.invalid),
    updated_at: asString(c.updated_at) ?? "",
  };
  const cursor = asString(c.cursor),
    error = asString(c.error),
    nextRetry = asString(c.next_retry_at);
  const estimate = asNumber(c.estimated_total);
  if (cursor !== undefined) out.cursor = cursor;
  if (error !== undefined) out.error = error;
  if (nextRetry !== undefined) out.next_retry_at = nextRetry;
  if (estimate !== undefined) out.estimated_total = estimate;
  const warning = asString(c.warning);
  if (warning !== undefined) out.warning = warning;
  if (c.reimport === true) out.reimport = true;
  return out;
}

/** What a flagged collection says: the loss, and the documented way to fetch it again. */
export function invalidWarning(invalid: number): string {
  return `${invalid} ${invalid === 1 ? "entry" : "entries"} from the source ${
    invalid === 1 ? "was not a valid DID and was" : "were not valid DIDs and were"
  } skipped; reset the collection to fetch it again`;
}

function count(v: unknown): number {
  return asNumber(v) ?? 0;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

/** The status document served at `GET /admin/backfill-collections`, built from rows and live run state. */
import type { ProgressRow } from "../progress/mod.ts";
import type { RunState } from "../run/mod.ts";
import type { LiveStatus } from "../stream/mod.ts";

/** One collection in the status document. */
export interface CollectionStatus {
  collection: string;
  source: string;
  imported: number;
  new: number;
  completed: boolean;
  active: boolean;
  attempts: number;
  updated_at: string;
  cursor?: string;
  error?: string;
  next_retry_at?: string;
  estimated_total?: number;
}

/** The whole status document; every count is a JSON number. */
export interface StatusDocument {
  running: boolean;
  run: {
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
    eta_seconds: number | null;
  } | null;
  total: number;
  completed: number;
  in_progress: number;
  failed: number;
  total_imported: number;
  total_new: number;
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
): StatusDocument {
  const active = running && run ? run.active : new Map();
  // The ETA counts collections whose size the source reported; the rest are the tiny tail.
  let completed = 0, failed = 0, imported = 0, fresh = 0, remaining = 0, known = false;
  const collections = rows.map((r) => {
    const done = r.completedAt !== null;
    if (done) completed++;
    const isFailed = !done && r.lastError !== null && !active.has(r.collection);
    if (isFailed) failed++;
    imported += r.imported;
    fresh += r.new;
    if (!done) {
      if (r.estimatedTotal !== null) {
        known = true;
        remaining += Math.max(0, r.estimatedTotal - r.imported);
      }
    }
    const c: CollectionStatus = {
      collection: r.collection,
      source: r.source,
      imported: r.imported,
      new: r.new,
      completed: done,
      active: active.has(r.collection),
      attempts: r.attempts,
      updated_at: r.updatedAt.toISOString(),
    };
    if (!done) c.cursor = r.cursor;
    if (r.lastError !== null && !done) c.error = r.lastError;
    if (r.nextRetryAt !== null && !done) c.next_retry_at = r.nextRetryAt.toISOString();
    if (r.estimatedTotal !== null) c.estimated_total = r.estimatedTotal;
    return c;
  });
  let runDoc: StatusDocument["run"] = null;
  if (running && run) {
    const { didsPerSec, pagesPerSec } = run.rates(now);
    runDoc = {
      source: run.source,
      mode: run.mode,
      started_at: new Date(run.startedAt).toISOString(),
      collections: run.collections,
      queued: run.queued,
      finished: run.finished,
      pages: run.pages,
      imported: run.imported,
      new: run.fresh,
      invalid_dids: run.invalid,
      dids_per_sec: round(didsPerSec),
      pages_per_sec: round(pagesPerSec),
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
    total_new: fresh,
    collections,
    live,
  };
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

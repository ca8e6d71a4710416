/** Live, in-memory state of the running backfill: what is in flight, rates and totals. */
import type { RunMode } from "../progress/mod.ts";

/** A collection being paged right now. */
export interface ActiveCollection {
  readonly collection: string;
  readonly startedAt: number;
  imported: number;
  pages: number;
}

/** A collection that failed in this run. */
export interface FailedCollection {
  readonly collection: string;
  readonly error: string;
}

/** Where a run is: deciding what to page, or paging. */
export type RunPhase = "planning" | "running";

/** A collection that completed in this run with entries that were not valid DIDs. */
export interface FlaggedCollection {
  readonly collection: string;
  readonly invalid: number;
  readonly imported: number;
}

/** The running (or last) backfill. */
export class RunState {
  /** Names this run in answers and status (random, so it stays unique across restarts). */
  readonly id: string;
  readonly source: string;
  readonly mode: RunMode;
  readonly startedAt: number;
  phase: RunPhase = "planning";
  /** Collections discovered or named; 0 until planning is done. */
  collections = 0;
  /** Of those, how many this run pages; 0 until planning is done. */
  queued = 0;
  readonly active = new Map<string, ActiveCollection>();
  readonly failed: FailedCollection[] = [];
  readonly flagged: FlaggedCollection[] = [];
  finished = 0;
  pages = 0;
  imported = 0;
  /** Of the imported DIDs, those the index did not hold before. */
  new = 0;
  invalid = 0;
  /** The `limit` pages are asked for with (lower once the source refused larger pages); 0 until paging. */
  pageLimit = 0;
  endedAt?: number;
  /** Why the run could not start (planning failed), when it could not. */
  error?: string;
  // Samples of (time, imported, pages) for a rate over the last minute; bounded.
  readonly #samples: [number, number, number][] = [];

  constructor(init: { id: string; source: string; mode: RunMode; startedAt: number }) {
    this.id = init.id;
    this.source = init.source;
    this.mode = init.mode;
    this.startedAt = init.startedAt;
  }

  /** Planning is done: the run pages `queued` of `collections`. */
  planned(collections: number, queued: number): void {
    this.collections = collections;
    this.queued = queued;
    this.phase = "running";
  }

  /** Records a durable page. */
  page(now: number, collection: string, imported: number, newCount: number, invalid: number): void {
    this.pages++;
    this.imported += imported;
    this.new += newCount;
    this.invalid += invalid;
    const a = this.active.get(collection);
    if (a) {
      a.imported += imported;
      a.pages++;
    }
    const last = this.#samples[this.#samples.length - 1];
    if (!last || now - last[0] >= 1000) {
      this.#samples.push([now, this.imported, this.pages]);
      if (this.#samples.length > 61) this.#samples.shift();
    }
  }

  /** DIDs and pages per second over the last minute (or since the start). */
  rates(now: number): { didsPerSec: number; pagesPerSec: number } {
    const first = this.#samples[0] ?? [this.startedAt, 0, 0];
    const secs = Math.max(0.001, (now - first[0]) / 1000);
    return {
      didsPerSec: (this.imported - first[1]) / secs,
      pagesPerSec: (this.pages - first[2]) / secs,
    };
  }
}

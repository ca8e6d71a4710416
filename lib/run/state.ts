/** Live, in-memory state of the running backfill: what is in flight, rates and totals. */

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

/** The running (or last) backfill. */
export class RunState {
  readonly id: number;
  readonly source: string;
  readonly mode: "full" | "catch-up";
  readonly startedAt: number;
  readonly collections: number;
  readonly queued: number;
  readonly active = new Map<string, ActiveCollection>();
  readonly failed: FailedCollection[] = [];
  finished = 0;
  pages = 0;
  imported = 0;
  fresh = 0;
  invalid = 0;
  endedAt?: number;
  // Samples of (time, imported, pages) for a rate over the last minute; bounded.
  readonly #samples: [number, number, number][] = [];

  constructor(init: {
    id: number;
    source: string;
    mode: "full" | "catch-up";
    startedAt: number;
    collections: number;
    queued: number;
  }) {
    this.id = init.id;
    this.source = init.source;
    this.mode = init.mode;
    this.startedAt = init.startedAt;
    this.collections = init.collections;
    this.queued = init.queued;
  }

  /** Records a durable page. */
  page(now: number, collection: string, imported: number, fresh: number, invalid: number): void {
    this.pages++;
    this.imported += imported;
    this.fresh += fresh;
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

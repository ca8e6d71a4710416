/** The simulated relay's counters. */

/** Live counters; `reset` and `hang` count requests that got no answer. */
export interface SimRelayStats {
  requests: number;
  byStatus: Record<string, number>;
  /** listReposByCollection requests per collection. */
  byCollection: Record<string, number>;
  /** Requests per URL path. */
  byPath: Record<string, number>;
  inFlight: number;
  maxConcurrent: number;
  rateLimited: number;
  pages: number;
  didsServed: number;
  /** Most requests seen within any one-second window. */
  peakRps: number;
  /** Same, counting only requests answered 200. */
  peakOkRps: number;
}

/** All counters at zero. */
export function newStats(): SimRelayStats {
  return {
    requests: 0,
    byStatus: {},
    byCollection: {},
    byPath: {},
    inFlight: 0,
    maxConcurrent: 0,
    rateLimited: 0,
    pages: 0,
    didsServed: 0,
    peakRps: 0,
    peakOkRps: 0,
  };
}

/** Most events within any trailing one-second window. */
export class PeakWindow {
  #times: number[] = [];
  #head = 0;
  add(now: number): number {
    this.#times.push(now);
    while (this.#times[this.#head] <= now - 1000) this.#head++;
    if (this.#head > 4096) {
      this.#times = this.#times.slice(this.#head);
      this.#head = 0;
    }
    return this.#times.length - this.#head;
  }
}

/** A polite per-host request pacer: a rate cap, host-wide back-off on 429, and gradual recovery. */
import { type Clock, systemClock } from "../util/mod.ts";

/** Options for a HostLimiter. */
export interface HostLimiterOptions {
  /** Ceiling in requests per second. */
  readonly maxRps: number;
  readonly clock?: Clock;
  /** Seconds to climb from the floor back to `maxRps` after a 429. */
  readonly recoverySeconds?: number;
}

interface Waiter {
  readonly priority: number;
  readonly seq: number;
  resolve(): void;
}

/** Counters a HostLimiter keeps, for metrics and the benchmark. */
export interface LimiterStats {
  granted: number;
  throttled: number;
  waitedMs: number;
}

/**
 * Grants requests one at a time at the current rate. Waiters with a higher priority go first, so the
 * largest collections, whose chains of pages set the wall time, are never starved by the small ones.
 */
export class HostLimiter {
  readonly maxRps: number;
  readonly stats: LimiterStats = { granted: 0, throttled: 0, waitedMs: 0 };
  readonly #clock: Clock;
  readonly #recovery: number;
  #rate: number;
  #nextFree = 0;
  #pausedUntil = 0;
  #headerCap?: { rps: number; until: number };
  #lastAdjust = 0;
  #waiters: Waiter[] = [];
  #seq = 0;
  #pumping = false;

  constructor(opts: HostLimiterOptions) {
    this.maxRps = opts.maxRps;
    this.#rate = opts.maxRps;
    this.#clock = opts.clock ?? systemClock;
    this.#recovery = opts.recoverySeconds ?? 20;
  }

  /** The rate currently granted, after back-off and the source's own hints. */
  get currentRps(): number {
    const now = this.#clock.now();
    const cap = this.#headerCap && this.#headerCap.until > now ? this.#headerCap.rps : Infinity;
    return Math.min(this.#rate, cap);
  }

  /** Waits for a turn to send one request. */
  acquire(priority = 0, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const start = this.#clock.now();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        priority,
        seq: this.#seq++,
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          this.stats.granted++;
          this.stats.waitedMs += this.#clock.now() - start;
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#insert(waiter);
      this.#pump();
    });
  }

  /** Feeds a response back: 429 (or 503 with a wait) pauses the whole host; RateLimit-* headers slow it first. */
  observe(status: number, headers: Headers): void {
    const now = this.#clock.now();
    // A 503 that says when to come back is throttling too (proxies send it instead of a 429).
    if (status === 429 || (status === 503 && retryDelayMs(headers, now) !== undefined)) {
      this.stats.throttled++;
      const wait = retryDelayMs(headers, now) ?? 2_000;
      this.#pausedUntil = Math.max(this.#pausedUntil, now + wait);
      this.#rate = Math.max(this.maxRps / 16, this.#rate / 2);
      this.#lastAdjust = now + wait;
      return;
    }
    if (this.#rate < this.maxRps && now > this.#lastAdjust) {
      const step = (this.maxRps / this.#recovery) * ((now - this.#lastAdjust) / 1000);
      this.#rate = Math.min(this.maxRps, this.#rate + step);
      this.#lastAdjust = now;
    }
    const remaining = headerNumber(headers, "ratelimit-remaining");
    const resetMs = resetDelayMs(headers, now);
    if (remaining === undefined || resetMs === undefined || resetMs <= 0) return;
    const limit = headerNumber(headers, "ratelimit-limit");
    // Requests kept in hand for our own requests still in flight and other clients on the address.
    const usable = remaining - RESERVE;
    if (usable <= 0) {
      // Nothing to spread: wait for the window instead of stretching one interval past it.
      this.#headerCap = undefined;
      this.#pausedUntil = Math.max(this.#pausedUntil, now + resetMs);
      return;
    }
    const affordable = usable / (resetMs / 1000);
    const low = limit !== undefined ? remaining < limit * 0.2 : affordable < this.#rate;
    // The newest response is the best news: a refilled quota lifts an earlier cap.
    this.#headerCap = low ? { rps: affordable, until: now + resetMs } : undefined;
  }

  #insert(w: Waiter): void {
    // Highest priority first, then first come, first served.
    let i = this.#waiters.length;
    while (i > 0 && this.#waiters[i - 1].priority < w.priority) i--;
    this.#waiters.splice(i, 0, w);
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#waiters.length > 0) {
        const now = this.#clock.now();
        const at = Math.max(now, this.#nextFree, this.#pausedUntil);
        if (at > now) {
          await this.#clock.sleep(at - now);
          continue;
        }
        const w = this.#waiters.shift()!;
        // Timers fire late on a busy loop; carry the lateness (at most one slot) instead of losing it.
        const interval = 1000 / this.currentRps;
        const base = now - this.#nextFree <= interval ? this.#nextFree : now;
        this.#nextFree = base + interval;
        w.resolve();
      }
    } finally {
      this.#pumping = false;
    }
  }
}

/** RateLimit-Remaining below this pauses until the reset; above it, the rest is spread over the window. */
const RESERVE = 2;

// No single wait longer than this, whatever a header says.
const MAX_WAIT_MS = 15 * 60_000;

function headerNumber(headers: Headers, name: string): number | undefined {
  const v = headers.get(name)?.trim();
  if (!v) return undefined;
  // Draft headers may carry parameters ("100;w=60"); the number comes first.
  const n = Number(v.split(/[;,]/)[0].trim());
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** Milliseconds until RateLimit-Reset (delta seconds, or an epoch time when it is that large). */
export function resetDelayMs(headers: Headers, now: number): number | undefined {
  const n = headerNumber(headers, "ratelimit-reset");
  if (n === undefined) return undefined;
  const ms = n > 1_000_000_000 ? Math.max(0, n * 1000 - now) : n * 1000;
  return Math.min(MAX_WAIT_MS, ms);
}

/** How long a 429 (or 503) asks us to wait: Retry-After in seconds or as an HTTP date, else RateLimit-Reset. */
export function retryDelayMs(headers: Headers, now: number): number | undefined {
  const MAX = MAX_WAIT_MS;
  const ra = headers.get("retry-after")?.trim();
  if (ra) {
    if (/^[0-9]+(\.[0-9]+)?$/.test(ra)) return Math.min(MAX, Number(ra) * 1000);
    const t = Date.parse(ra);
    if (!Number.isNaN(t)) return Math.min(MAX, Math.max(0, t - now));
  }
  const reset = resetDelayMs(headers, now);
  return reset === undefined ? undefined : Math.min(MAX, reset);
}

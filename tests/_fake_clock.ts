/** A fake clock for tests: only time is faked, never I/O. */
import type { Clock } from "../lib/util/clock.ts";

/**
 * Virtual time: `sleep` never waits for real. Sleepers wake in order of their wake-up time, one per
 * macrotask, so every promise callback of the previous wake-up has run before time moves again.
 */
export class FakeClock implements Clock {
  t: number;
  #pending: { at: number; seq: number; wake: () => void }[] = [];
  #seq = 0;
  #scheduled = false;

  constructor(start = 1_000_000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const entry = {
        at: this.t + Math.max(0, ms),
        seq: this.#seq++,
        wake: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.#pending = this.#pending.filter((e) => e !== entry);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#pending.push(entry);
      this.#pending.sort((a, b) => a.at - b.at || a.seq - b.seq);
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setTimeout(() => {
      this.#scheduled = false;
      const e = this.#pending.shift();
      if (!e) return;
      this.t = Math.max(this.t, e.at);
      e.wake();
      if (this.#pending.length > 0) this.#schedule();
    }, 0);
  }
}

/** The simulated relay's edge rate limit: a token bucket that also writes RateLimit-* headers. */

/** Token bucket of `rate` per second holding up to `burst`. */
export class TokenBucket {
  #tokens: number;
  #last = performance.now();
  constructor(readonly rate: number, readonly burst: number) {
    this.#tokens = burst;
  }
  take(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
  /** Draft RateLimit-* headers; Reset is whole seconds until a token (when empty) or a full bucket. */
  headers(): Record<string, string> {
    const remaining = Math.floor(this.#tokens);
    const gap = remaining < 1 ? 1 - this.#tokens : this.burst - this.#tokens;
    return {
      "ratelimit-limit": String(Math.round(this.rate)),
      "ratelimit-remaining": String(remaining),
      "ratelimit-reset": String(Math.ceil(gap / this.rate)),
    };
  }
}

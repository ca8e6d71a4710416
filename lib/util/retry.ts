/** The service's one back-off policy: capped exponential with full jitter. */

/** The delay before retry number `attempt` (1 = the first retry): uniform in [0, min(cap, base·2^(attempt−1))). */
export function backoffDelay(
  attempt: number,
  opts: { baseMs: number; maxMs: number; random?: () => number },
): number {
  const ceiling = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.max(0, attempt - 1));
  return (opts.random ?? Math.random)() * ceiling;
}

// @ts-check
/**
 * One sleep, one deadline and one retry policy for the whole project. Plain JavaScript with JSDoc
 * types, because the status page runs the same code: the server inlines this module into the page.
 * Option names follow @std/async's `retry`.
 */

/**
 * Resolves after `ms`, or rejects with the signal's reason as soon as it aborts.
 * @param {number} ms
 * @param {AbortSignal} [signal]
 * @returns {Promise<void>}
 */
export function sleep(ms, signal) {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Settles as `promise` does, or rejects with a TimeoutError after `ms`; leaves no timer behind.
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 * @returns {Promise<T>}
 */
export async function deadline(promise, ms) {
  const done = new AbortController();
  const expired = sleep(ms, done.signal).then(() => {
    throw new DOMException(`timed out after ${ms} ms`, "TimeoutError");
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    done.abort();
    expired.catch(() => {});
  }
}

/**
 * An exponential backoff: the first retry waits `minTimeout`, each next one `multiplier` times
 * longer, never more than `maxTimeout`. `jitter` is the part of each delay that is random: 1 draws
 * it uniformly between 0 and the full delay, 0 waits exactly the full delay.
 * @typedef {object} Backoff
 * @property {number} [minTimeout] first delay in ms (default 1000)
 * @property {number} [maxTimeout] longest delay in ms (default 60000)
 * @property {number} [multiplier] growth per retry (default 2)
 * @property {number} [jitter] random part of each delay, 0..1 (default 1)
 */

/**
 * The delay before retry number `attempt` (1 for the first); `random() = 1` gives the full delay.
 * @param {number} attempt
 * @param {Backoff} [backoff]
 * @param {() => number} [random]
 * @returns {number}
 */
export function backoffDelay(attempt, backoff = {}, random = Math.random) {
  const { minTimeout = 1000, maxTimeout = 60_000, multiplier = 2, jitter = 1 } = backoff;
  const full = Math.min(maxTimeout, minTimeout * multiplier ** Math.max(0, attempt - 1));
  return full * (1 - jitter + jitter * random());
}

/**
 * What `fn` gets on each attempt. `reset()` says the attempt made progress (a stream delivered
 * data): its next failure starts the backoff over, as if it were the first.
 * @typedef {object} RetryAttempt
 * @property {() => void} reset
 */

/**
 * Options for {@link retry}: a {@link Backoff} and when to stop.
 * @typedef {Backoff & {
 *   maxAttempts?: number,
 *   isRetriable?: (err: unknown) => boolean,
 *   signal?: AbortSignal,
 *   delay?: (attempt: number, err: unknown) => number,
 *   onRetry?: (err: unknown, attempt: number, delayMs: number) => void,
 *   sleep?: (ms: number, signal?: AbortSignal) => Promise<void>,
 *   random?: () => number,
 * }} RetryOptions
 * - `maxAttempts`: calls in all, the first included (default 5; `Infinity` for no limit);
 * - `isRetriable`: whether a failure is worth another call (default: all are);
 * - `signal`: aborting it ends the waiting, and a failure after it aborted throws its reason;
 * - `delay`: replaces the backoff for one failure (by its count since the start or the last reset);
 * - `onRetry`: told of each failure that will be retried, and how long until then;
 * - `sleep`, `random`: injectable for fake time in tests.
 */

/**
 * Calls `fn` until it resolves, waiting between failures as the backoff says. Throws the last
 * failure itself (not a wrapper) when it is not retriable or the attempts are used up.
 * @template T
 * @param {(attempt: RetryAttempt) => Promise<T>} fn
 * @param {RetryOptions} [options]
 * @returns {Promise<T>}
 */
export async function retry(fn, options = {}) {
  const { maxAttempts = 5, isRetriable = () => true, signal, onRetry } = options;
  const wait = options.sleep ?? sleep;
  let failures = 0;
  const attempt = { reset: () => void (failures = 0) };
  for (;;) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      failures++;
      if (failures >= maxAttempts || !isRetriable(err)) throw err;
      const ms = options.delay?.(failures, err) ?? backoffDelay(failures, options, options.random);
      onRetry?.(err, failures, ms);
      await wait(ms, signal);
    }
  }
}

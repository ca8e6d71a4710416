/** Tests for lib/util/async.js: the one sleep, deadline and retry policy. */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { type Backoff, backoffDelay, deadline, retry, sleep } from "../lib/util/async.js";

Deno.test("backoffDelay: exponential, capped, jittered by the random part only", () => {
  const table: [attempt: number, backoff: Backoff, random: number, expected: number][] = [
    [1, {}, 1, 1000],
    [2, {}, 1, 2000],
    [7, {}, 1, 60_000],
    [1, {}, 0, 0],
    [3, { minTimeout: 500, maxTimeout: 30_000 }, 0.5, 1000],
    [1, { minTimeout: 100, jitter: 0 }, 0.123, 100],
    [4, { minTimeout: 100, maxTimeout: 5000, jitter: 0 }, 0.9, 800],
    [10, { minTimeout: 100, maxTimeout: 5000, jitter: 0 }, 0.9, 5000],
    [5, { minTimeout: 100, multiplier: 1, jitter: 0 }, 0.9, 100],
    // ±25 % around 1 s doubling to 30 s, as the status page reconnects.
    [1, { minTimeout: 1250, maxTimeout: 37_500, jitter: 0.4 }, 0, 750],
    [1, { minTimeout: 1250, maxTimeout: 37_500, jitter: 0.4 }, 1, 1250],
    [9, { minTimeout: 1250, maxTimeout: 37_500, jitter: 0.4 }, 0, 22_500],
    [0, {}, 1, 1000],
  ];
  for (const [attempt, backoff, random, expected] of table) {
    const got = backoffDelay(attempt, backoff, () => random);
    assert(Math.abs(got - expected) < 1e-9, `${attempt} ${JSON.stringify(backoff)}: ${got}`);
  }
});

/** A sleep that records what it was asked for and returns at once. */
function recordingSleep(): { waits: number[]; sleep: (ms: number) => Promise<void> } {
  const waits: number[] = [];
  return { waits, sleep: (ms) => (waits.push(ms), Promise.resolve()) };
}

Deno.test("retry: calls until success, waiting the backoff between failures", async () => {
  const { waits, sleep } = recordingSleep();
  let calls = 0;
  const got = await retry(() => {
    calls++;
    return calls < 4 ? Promise.reject(new Error(`fail ${calls}`)) : Promise.resolve("ok");
  }, { minTimeout: 10, jitter: 0, sleep });
  assertEquals([got, calls, waits], ["ok", 4, [10, 20, 40]]);
});

Deno.test("retry: throws the last failure itself after maxAttempts calls", async () => {
  const { waits, sleep } = recordingSleep();
  let calls = 0;
  const err = await assertRejects(
    () => retry(() => Promise.reject(new Error(`fail ${++calls}`)), { maxAttempts: 3, sleep }),
    Error,
    "fail 3",
  );
  assertEquals([err.message, calls, waits.length], ["fail 3", 3, 2]);
});

Deno.test("retry: a failure isRetriable refuses is thrown at once", async () => {
  const { waits, sleep } = recordingSleep();
  let calls = 0;
  await assertRejects(
    () =>
      retry(() => Promise.reject(new RangeError(`no ${++calls}`)), {
        isRetriable: (e) => !(e instanceof RangeError),
        sleep,
      }),
    RangeError,
  );
  assertEquals([calls, waits], [1, []]);
});

Deno.test("retry: delay overrides the backoff; onRetry hears each retried failure", async () => {
  const { waits, sleep } = recordingSleep();
  const heard: [string, number, number][] = [];
  let calls = 0;
  await retry(() => (++calls < 3 ? Promise.reject(new Error(`e${calls}`)) : Promise.resolve()), {
    delay: (attempt) => attempt * 7,
    onRetry: (e, attempt, ms) => heard.push([(e as Error).message, attempt, ms]),
    sleep,
  });
  assertEquals(waits, [7, 14]);
  assertEquals(heard, [["e1", 1, 7], ["e2", 2, 14]]);
});

Deno.test("retry: reset() starts the backoff and the attempt budget over", async () => {
  const { waits, sleep } = recordingSleep();
  let calls = 0;
  await retry(({ reset }) => {
    calls++;
    if (calls === 3) reset(); // this attempt made progress before it failed
    return calls < 5 ? Promise.reject(new Error("lost")) : Promise.resolve();
  }, { minTimeout: 10, jitter: 0, maxAttempts: 3, sleep });
  assertEquals([calls, waits], [5, [10, 20, 10, 20]]);
});

Deno.test("retry: an abort ends the wait and throws the signal's reason", async () => {
  const ac = new AbortController();
  let calls = 0;
  const run = retry(() => {
    calls++;
    return Promise.reject(new Error("down"));
  }, { signal: ac.signal, maxAttempts: Infinity, minTimeout: 60_000 });
  const reason = new Error("stop");
  setTimeout(() => ac.abort(reason), 0);
  const err = await assertRejects(() => run, Error, "stop");
  assertEquals([err, calls], [reason, 1]);
  const after = new AbortController();
  after.abort(reason);
  await assertRejects(() => retry(() => Promise.reject(new Error("x")), { signal: after.signal }));
});

Deno.test("sleep: waits, or rejects with the reason as soon as the signal aborts", async () => {
  const t0 = performance.now();
  await sleep(20);
  assert(performance.now() - t0 >= 15);
  const ac = new AbortController();
  const slept = sleep(60_000, ac.signal);
  ac.abort(new Error("cut short"));
  await assertRejects(() => slept, Error, "cut short");
  await assertRejects(() => sleep(1, ac.signal), Error, "cut short");
});

Deno.test("deadline: the promise's own result, or a TimeoutError naming the limit", async () => {
  assertEquals(await deadline(Promise.resolve(7), 1000), 7);
  await assertRejects(() => deadline(Promise.reject(new Error("own")), 1000), Error, "own");
  const never = new Promise<never>(() => {});
  const err = await assertRejects(() => deadline(never, 10), DOMException, "timed out after 10 ms");
  assertEquals(err.name, "TimeoutError");
});

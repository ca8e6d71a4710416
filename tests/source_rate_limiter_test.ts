/** Tests for lib/source/rate_limiter.ts on a fake clock: pacing, priority, 429 back-off, recovery, headers. */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { HostLimiter, resetDelayMs, retryDelayMs } from "../lib/source/rate_limiter.ts";
import type { Clock } from "../lib/util/clock.ts";
import { FakeClock } from "./_fake_clock.ts";

const T0 = 1_000_000;

/** Acquires for each label (in order, same tick) and records the virtual time each was granted. */
async function grants(
  limiter: HostLimiter,
  clock: FakeClock,
  reqs: [label: string, priority: number][],
): Promise<[string, number][]> {
  const out: [string, number][] = [];
  await Promise.all(
    reqs.map(([label, prio]) => limiter.acquire(prio).then(() => out.push([label, clock.now()]))),
  );
  return out;
}

Deno.test("HostLimiter: paces grants at maxRps on virtual time", async () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 10, clock });
  const got = await grants(limiter, clock, [["a", 0], ["b", 0], ["c", 0], ["d", 0], ["e", 0]]);
  assertEquals(got, [
    ["a", T0],
    ["b", T0 + 100],
    ["c", T0 + 200],
    ["d", T0 + 300],
    ["e", T0 + 400],
  ]);
  assertEquals(limiter.stats.granted, 5);
  assertEquals(limiter.stats.waitedMs, 0 + 100 + 200 + 300 + 400);
  assertEquals(limiter.stats.throttled, 0);
  // A request after a quiet spell is granted at once.
  clock.t += 10_000;
  const before = clock.now();
  await limiter.acquire();
  assertEquals(clock.now(), before);
});

Deno.test("HostLimiter: higher priority first, then first come first served", async () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 4, clock });
  const got = await grants(limiter, clock, [
    ["first", 0],
    ["low1", 0],
    ["low2", 0],
    ["high", 5],
    ["mid", 2],
    ["high2", 5],
  ]);
  assertEquals(got.map(([l]) => l), ["first", "high", "high2", "mid", "low1", "low2"]);
  assertEquals(got.map(([, t]) => t - T0), [0, 250, 500, 750, 1000, 1250]);
});

Deno.test("HostLimiter: a 429 with Retry-After pauses the whole host and halves the rate", async () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 10, clock });
  await limiter.acquire();
  limiter.observe(429, new Headers({ "retry-after": "3" }));
  assertEquals(limiter.stats.throttled, 1);
  assertEquals(limiter.currentRps, 5);
  const got = await grants(limiter, clock, [["a", 0], ["b", 0]]);
  assertEquals(got, [["a", T0 + 3000], ["b", T0 + 3200]]);
});

Deno.test("HostLimiter: a 429 without hints pauses for two seconds", async () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 10, clock });
  limiter.observe(429, new Headers());
  await limiter.acquire();
  assertEquals(clock.now() - T0, 2000);
});

Deno.test("HostLimiter: a 429 with an HTTP-date Retry-After waits until that date", async () => {
  const start = Date.parse("2026-03-01T12:00:00Z");
  const clock = new FakeClock(start);
  const limiter = new HostLimiter({ maxRps: 10, clock });
  limiter.observe(429, new Headers({ "retry-after": new Date(start + 45_000).toUTCString() }));
  await limiter.acquire();
  assertEquals(clock.now() - start, 45_000);
});

Deno.test("HostLimiter: a later, shorter 429 does not shorten an existing pause", async () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 10, clock });
  limiter.observe(429, new Headers({ "retry-after": "10" }));
  limiter.observe(429, new Headers({ "retry-after": "1" }));
  await limiter.acquire();
  assertEquals(clock.now() - T0, 10_000);
});

Deno.test("HostLimiter: repeated 429s halve the rate down to a floor of maxRps/16", () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 16, clock });
  const rates: number[] = [];
  for (let i = 0; i < 6; i++) {
    limiter.observe(429, new Headers({ "retry-after": "0" }));
    rates.push(limiter.currentRps);
  }
  assertEquals(rates, [8, 4, 2, 1, 1, 1]);
  assertEquals(limiter.stats.throttled, 6);
});

Deno.test("HostLimiter: the rate climbs back linearly over recoverySeconds after a 429", () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 10, clock, recoverySeconds: 20 });
  limiter.observe(429, new Headers({ "retry-after": "1" }));
  assertEquals(limiter.currentRps, 5);
  // During the pause nothing recovers.
  clock.t = T0 + 500;
  limiter.observe(200, new Headers());
  assertEquals(limiter.currentRps, 5);
  // 4 s after the pause ended: +10/20 rps per second * 4 s = +2.
  clock.t = T0 + 1000 + 4000;
  limiter.observe(200, new Headers());
  assertEquals(limiter.currentRps, 7);
  // Much later: capped at maxRps.
  clock.t = T0 + 1_000_000;
  limiter.observe(200, new Headers());
  assertEquals(limiter.currentRps, 10);
});

Deno.test("HostLimiter: low RateLimit-Remaining caps the rate until the reset", () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 10, clock });
  limiter.observe(
    200,
    new Headers({
      "ratelimit-limit": "100",
      "ratelimit-remaining": "5",
      "ratelimit-reset": "10",
    }),
  );
  // (5 - 2 in reserve) requests over 10 s.
  assert(Math.abs(limiter.currentRps - 0.3) < 1e-9, String(limiter.currentRps));
  clock.t = T0 + 9_999;
  assert(limiter.currentRps < 1);
  clock.t = T0 + 10_001;
  assertEquals(limiter.currentRps, 10);
});

Deno.test("HostLimiter: plenty of RateLimit-Remaining leaves the rate alone", () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 10, clock });
  limiter.observe(
    200,
    new Headers({
      "ratelimit-limit": "3000",
      "ratelimit-remaining": "2900",
      "ratelimit-reset": "60",
    }),
  );
  assertEquals(limiter.currentRps, 10);
});

Deno.test("HostLimiter: draft headers with parameters are understood", () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 10, clock });
  limiter.observe(
    200,
    new Headers({
      "ratelimit-limit": "100;w=60",
      "ratelimit-remaining": "3;w=60",
      "ratelimit-reset": "20;w=60",
    }),
  );
  // (3 - 2) / 20 s.
  assertEquals(limiter.currentRps, 0.05);
});

Deno.test("HostLimiter: Remaining at the reserve pauses until the reset, then full speed", async () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 10, clock });
  limiter.observe(
    200,
    new Headers({ "ratelimit-limit": "10", "ratelimit-remaining": "1", "ratelimit-reset": "1" }),
  );
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    await limiter.acquire();
    times.push(clock.now() - T0);
  }
  // Not one long interval of 1 / (tiny rate): the wait ends at the reset.
  assertEquals(times, [1000, 1100, 1200]);
});

Deno.test("HostLimiter: a later response with a refilled quota lifts the cap", () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 10, clock });
  const h = (remaining: number) =>
    new Headers({
      "ratelimit-limit": "100",
      "ratelimit-remaining": String(remaining),
      "ratelimit-reset": "10",
    });
  limiter.observe(200, h(12));
  assert(Math.abs(limiter.currentRps - 1) < 1e-9, String(limiter.currentRps));
  clock.t = T0 + 500;
  limiter.observe(200, h(90));
  assertEquals(limiter.currentRps, 10);
});

Deno.test("HostLimiter: RateLimit-Remaining 0 pauses until the reset", async () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 10, clock });
  limiter.observe(
    200,
    new Headers({ "ratelimit-limit": "100", "ratelimit-remaining": "0", "ratelimit-reset": "5" }),
  );
  await limiter.acquire();
  assertEquals(clock.now() - T0, 5000);
});

Deno.test("HostLimiter: an aborted signal rejects at once; aborting a waiter removes it", async () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 1, clock });
  const pre = new AbortController();
  pre.abort(new Error("already"));
  await assertRejects(limiter.acquire(0, pre.signal), /already/);

  await limiter.acquire(); // T0, next free at T0 + 1000
  const ac = new AbortController();
  const order: string[] = [];
  const doomed = limiter.acquire(9, ac.signal).then(() => order.push("doomed"));
  const kept = limiter.acquire(0).then(() => order.push(`kept@${clock.now() - T0}`));
  ac.abort(new Error("gone"));
  await assertRejects(doomed, /gone/);
  await kept;
  assertEquals(order, ["kept@1000"]);
  assertEquals(limiter.stats.granted, 2);
});

// ---- retryDelayMs / resetDelayMs tables ----

const NOW = Date.parse("2015-10-21T07:28:00Z");

const RETRY: [Record<string, string>, number | undefined, string][] = [
  [{}, undefined, "no headers"],
  [{ "retry-after": "120" }, 120_000, "seconds"],
  [{ "retry-after": " 7 " }, 7_000, "seconds with spaces"],
  [{ "retry-after": "0" }, 0, "zero"],
  [{ "retry-after": "1.5" }, 1_500, "fractional seconds"],
  [{ "retry-after": "100000" }, 900_000, "capped at 15 minutes"],
  [{ "retry-after": "Wed, 21 Oct 2015 07:28:30 GMT" }, 30_000, "HTTP date"],
  [{ "retry-after": "Wed, 21 Oct 2015 09:28:00 GMT" }, 900_000, "HTTP date capped"],
  [{ "retry-after": "Wed, 21 Oct 2015 07:27:00 GMT" }, 0, "HTTP date in the past"],
  [{ "retry-after": "soon" }, undefined, "garbage"],
  [{ "retry-after": "soon", "ratelimit-reset": "9" }, 9_000, "garbage falls back to reset"],
  [{ "retry-after": "" }, undefined, "empty"],
  [{ "ratelimit-reset": "30" }, 30_000, "RateLimit-Reset delta seconds"],
  [{ "ratelimit-reset": "30;w=60" }, 30_000, "RateLimit-Reset with a parameter"],
  [{ "ratelimit-reset": String(NOW / 1000 + 42) }, 42_000, "RateLimit-Reset epoch seconds"],
  [{ "ratelimit-reset": String(NOW / 1000 - 42) }, 0, "RateLimit-Reset epoch in the past"],
  [{ "ratelimit-reset": "5000" }, 900_000, "RateLimit-Reset capped"],
  [{ "ratelimit-reset": "-3" }, undefined, "negative reset"],
  [{ "ratelimit-reset": "later" }, undefined, "garbage reset"],
  [{ "retry-after": "2", "ratelimit-reset": "60" }, 2_000, "Retry-After wins over reset"],
];

Deno.test("retryDelayMs: table", () => {
  const wrong: string[] = [];
  for (const [headers, want, why] of RETRY) {
    const got = retryDelayMs(new Headers(headers), NOW);
    if (got !== want) wrong.push(`${why}: got ${got}, want ${want}`);
  }
  assertEquals(wrong, []);
});

Deno.test("resetDelayMs: table (capped at 15 minutes, no Retry-After)", () => {
  const cases: [Record<string, string>, number | undefined][] = [
    [{}, undefined],
    [{ "retry-after": "5" }, undefined],
    [{ "ratelimit-reset": "0" }, 0],
    [{ "ratelimit-reset": "500" }, 500_000],
    [{ "ratelimit-reset": "86400" }, 900_000],
    [{ "ratelimit-reset": "" }, undefined],
    [{ "ratelimit-reset": String(NOW / 1000 + 1) }, 1_000],
    [{ "ratelimit-reset": "abc" }, undefined],
  ];
  for (const [h, want] of cases) {
    assertEquals(resetDelayMs(new Headers(h), NOW), want, JSON.stringify(h));
  }
});

Deno.test("HostLimiter: late timers do not lower the rate (lateness of up to one slot is carried)", async () => {
  const clock = new FakeClock(T0);
  // Every sleep overshoots by 30 ms, like timers on a busy event loop.
  const late: Clock = { now: () => clock.now(), sleep: (ms, s) => clock.sleep(ms + 30, s) };
  const limiter = new HostLimiter({ maxRps: 10, clock: late });
  const got = await grants(limiter, clock, Array.from({ length: 21 }, (_, i) => [`r${i}`, 0]));
  const span = got[20][1] - got[0][1];
  // 20 intervals of 100 ms; without carrying the lateness this would take 20 × 130 ms.
  assert(span <= 2000 + 30, `20 intervals took ${span} ms`);
  for (let i = 2; i < got.length; i++) {
    assert(got[i][1] - got[i - 2][1] >= 200 - 1e-9, "never more than one slot of catch-up");
  }
});

Deno.test("HostLimiter: a 503 that says when to come back pauses the host; a bare 503 does not", async () => {
  const clock = new FakeClock(T0);
  const limiter = new HostLimiter({ maxRps: 10, clock });
  limiter.observe(503, new Headers());
  assertEquals(limiter.stats.throttled, 0);
  limiter.observe(503, new Headers({ "retry-after": "4" }));
  assertEquals(limiter.stats.throttled, 1);
  await limiter.acquire();
  assertEquals(clock.now() - T0, 4000);
});

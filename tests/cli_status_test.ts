/** Tests for the status CLI (lib/cli/status.ts) against a small real HTTP server. */

import { assert, assertEquals, assertMatch, assertStrictEquals } from "./_assert.ts";
import { runStatusCli, type StatusCliOptions } from "../lib/cli/status.ts";
import { rateText } from "../lib/cli/summary.ts";
import { sleep } from "../lib/util/async.js";
import type { CollectionStatus, StatusDocument } from "../lib/status/document.ts";

const PASSWORD = "s3cret-admin-pw";
const NOW = Date.parse("2026-11-24T06:02:00.000Z");
const STATUS_PATH = "/admin/backfill-collections";

type Handler = (req: Request, url: URL) => Response | Promise<Response>;

interface Seen {
  method: string;
  path: string;
  params: URLSearchParams;
}

interface Run {
  code: number;
  out: string[];
  err: string[];
}

function json(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}

function collection(
  overrides: Partial<CollectionStatus> & { collection: string },
): CollectionStatus {
  return {
    source: "bsky.network",
    imported: 0,
    new: 0,
    completed: false,
    active: false,
    attempts: 1,
    invalid: 0,
    updated_at: "2026-11-24T06:00:00.000Z",
    ...overrides,
  };
}

function sampleStatus(overrides: Partial<StatusDocument> = {}): StatusDocument {
  return {
    running: true,
    run: {
      id: "r1",
      phase: "running",
      source: "bsky.network",
      mode: "full",
      started_at: "2026-11-24T05:00:00.000Z",
      collections: 1269,
      queued: 648,
      finished: 8,
      pages: 6800,
      imported: 13628818,
      new: 120000,
      invalid_dids: 0,
      dids_per_sec: 41234.5,
      pages_per_sec: 21.3,
      page_limit: 10000,
      eta_seconds: 3600,
    },
    total: 1269,
    completed: 621,
    in_progress: 640,
    failed: 8,
    total_imported: 13628818,
    total_new: 120000,
    total_invalid: 0,
    flagged: 0,
    index: null,
    live: null,
    collections: [
      collection({
        collection: "app.bsky.feed.post",
        imported: 28000000,
        new: 1000,
        completed: true,
      }),
      collection({ collection: "app.bsky.graph.block", imported: 9000000 }),
      collection({
        collection: "app.bsky.feed.like",
        imported: 6732000,
        new: 12,
        active: true,
        cursor: "opaque",
        estimated_total: 30000000,
      }),
      collection({
        collection: "com.example.bad",
        attempts: 3,
        error: "source answered 403 Forbidden",
        next_retry_at: "2026-11-24T06:07:00.000Z",
      }),
    ],
    ...overrides,
  };
}

/** Serves `routes` ("METHOD /path") behind the contract's auth; null `password`: not configured. */
async function withServer(
  routes: Record<string, Handler>,
  fn: (url: string, seen: Seen[]) => Promise<void>,
  password: string | null = PASSWORD,
): Promise<void> {
  const seen: Seen[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    const url = new URL(req.url);
    seen.push({ method: req.method, path: url.pathname, params: url.searchParams });
    if (password === null) return json({ error: "admin endpoint not configured" }, 403);
    if (req.headers.get("authorization") !== `Bearer ${password}`) {
      return json({ error: "AuthRequired" }, 401);
    }
    const route = routes[`${req.method} ${url.pathname}`];
    return route ? route(req, url) : json({ error: "NotFound" }, 404);
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, seen);
  } finally {
    await server.shutdown();
  }
}

/** Runs the CLI capturing its lines, and checks the password never reached them. */
async function run(
  relayUrl: string,
  args: string[],
  extra: Partial<StatusCliOptions> = {},
): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runStatusCli({
    args,
    relayUrl,
    password: PASSWORD,
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    now: () => NOW,
    ...extra,
  });
  assert(!out.join("\n").includes(PASSWORD), "password leaked to out");
  assert(!err.join("\n").includes(PASSWORD), "password leaked to err");
  return { code, out, err };
}

/** A port nothing listens on: bind one, then free it. */
function refusedPort(): number {
  const listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("status: summary with totals, rate, incomplete and failed collections", async () => {
  await withServer({ [`GET ${STATUS_PATH}`]: () => json(sampleStatus()) }, async (url) => {
    for (const args of [[], ["status"]]) {
      const { code, out, err } = await run(url, args);
      assertStrictEquals(code, 0);
      assertEquals(err, []);
      const text = out.join("\n");
      assertMatch(
        out[0],
        /running: full from bsky\.network, started 2026-11-24 05:00 UTC \(1h 02m ago\)/,
      );
      assertMatch(text, /621\/1269 done \(48\.9%\) · 640 in progress · 8 failed/);
      assertMatch(text, /13\.6M imported · 120k new/);
      assertMatch(text, /41\.2k DIDs\/s · 21 pages\/s of up to 10k DIDs · ETA 1h 00m/);
      assert(!text.includes("app.bsky.feed.post"), "completed collections are not listed");
      const like = out.findIndex((l) => l.includes("app.bsky.feed.like"));
      const block = out.findIndex((l) => l.includes("app.bsky.graph.block"));
      assert(like > 0 && like < block, "active collections come first");
      assertMatch(out[like], /6\.7M \/ 30M \(22\.4%\)\s+active/);
      assertMatch(out[block], /9M DIDs\s+pending/);
      const failed = out.findIndex((l) => l.startsWith("FAILED collections (1)"));
      assert(failed > block);
      assertMatch(
        out[failed + 1],
        /com\.example\.bad\s+3 attempts\s+retry in 5m 00s\s+source answered 403 Forbidden/,
      );
    }
  });
});

Deno.test("rateText: the page size in use, when the server says it, table", () => {
  const cases: [number, number, string][] = [
    [21.3, 10000, "41.2k DIDs/s · 21 pages/s of up to 10k DIDs · ETA 1h 00m"],
    [21.3, 2000, "41.2k DIDs/s · 21 pages/s of up to 2k DIDs · ETA 1h 00m"],
    [21.3, 0, "41.2k DIDs/s · 21 pages/s · ETA 1h 00m"],
    [NaN, 2000, "41.2k DIDs/s · ETA 1h 00m"],
  ];
  for (const [pagesPerSec, pageLimit, want] of cases) {
    const run = { ...sampleStatus().run!, pages_per_sec: pagesPerSec, page_limit: pageLimit };
    assertStrictEquals(rateText(run), want);
  }
});

Deno.test("status: long lists are cut at 20 rows, idle run has no rate line", async () => {
  const many = Array.from(
    { length: 30 },
    (_, i) => collection({ collection: `com.example.c${i}`, imported: i }),
  );
  const body = sampleStatus({ running: false, run: null, collections: many });
  await withServer({ [`GET ${STATUS_PATH}`]: () => json(body) }, async (url) => {
    const { code, out } = await run(url, ["status"]);
    assertStrictEquals(code, 0);
    assertStrictEquals(out[0], "backfill idle: no run in progress");
    assert(!out.some((l) => l.startsWith("rate")));
    assert(out.includes("incomplete collections (30):"));
    assertStrictEquals(out.filter((l) => l.includes("com.example.c")).length, 20);
    assertStrictEquals(out.at(-1), "  … and 10 more");
    assertMatch(out.find((l) => l.includes("com.example.c29")) ?? "", /29 DIDs/);
  });
});

Deno.test("full: pretty-printed raw JSON", async () => {
  const body = sampleStatus();
  await withServer({ [`GET ${STATUS_PATH}`]: () => json(body) }, async (url) => {
    const { code, out } = await run(url, ["full"]);
    assertStrictEquals(code, 0);
    assertEquals(JSON.parse(out.join("\n")), body);
    assertStrictEquals(out.join("\n"), JSON.stringify(body, null, 2));
  });
});

Deno.test("start: source is passed, 409 and 400 are reported with exit 1", async () => {
  let answer = (source: string | null) =>
    json({ status: "started", collections: 1269, source: source ?? "bsky.network" });
  const routes = {
    [`POST ${STATUS_PATH}`]: (_: Request, u: URL) => answer(u.searchParams.get("source")),
  };
  await withServer(routes, async (url, seen) => {
    let r = await run(url, ["start", "relay.example.com"]);
    assertStrictEquals(r.code, 0);
    assertEquals(r.out, ["started backfill of 1269 collections from relay.example.com"]);
    assertStrictEquals(seen.at(-1)?.params.get("source"), "relay.example.com");

    r = await run(url, ["start"]);
    assertEquals(r.out, ["started backfill of 1269 collections from bsky.network"]);
    assertStrictEquals(seen.at(-1)?.params.has("source"), false);

    answer = () => json({ error: "backfill already running" }, 409);
    r = await run(url, ["start"]);
    assertStrictEquals(r.code, 1);
    assertEquals(r.err, ["error: backfill already running"]);

    answer = () => json({ error: "InvalidRequest", message: "source must be a hostname" }, 400);
    r = await run(url, ["start", "not a host"]);
    assertStrictEquals(r.code, 1);
    assertStrictEquals(r.err.length, 1);
    assertMatch(r.err[0], /answered 400: source must be a hostname$/);

    const calls = seen.length;
    r = await run(url, ["start", "a", "b"]);
    assertStrictEquals(r.code, 2);
    assertStrictEquals(seen.length, calls, "usage errors make no request");
  });
});

Deno.test("stop: 200 and 409", async () => {
  let status = 200;
  const routes = {
    [`POST ${STATUS_PATH}/stop`]: () =>
      status === 200 ? json({ status: "stopping" }) : json({ error: "no backfill running" }, 409),
  };
  await withServer(routes, async (url) => {
    let r = await run(url, ["stop"]);
    assertStrictEquals(r.code, 0);
    assertEquals(r.out, ["stop requested: stopping"]);
    status = 409;
    r = await run(url, ["stop"]);
    assertStrictEquals(r.code, 1);
    assertEquals(r.err, ["error: nothing to stop: no backfill running"]);
  });
});

Deno.test("reset: repeated collection params; bad or missing NSIDs are usage errors", async () => {
  const routes = {
    [`POST ${STATUS_PATH}/reset`]: (_: Request, u: URL) =>
      json({ reset: u.searchParams.getAll("collection").length - 1 }),
  };
  await withServer(routes, async (url, seen) => {
    let r = await run(url, [
      "reset",
      "app.bsky.feed.like",
      "com.example.bad",
      "app.bsky.feed.like",
    ]);
    assertStrictEquals(r.code, 0);
    assertEquals(seen.at(-1)?.params.getAll("collection"), [
      "app.bsky.feed.like",
      "com.example.bad",
    ]);
    assertEquals(r.out, ["reset 1 collection (1 had no saved progress)"]);

    for (const args of [["reset"], ["reset", "not-an-nsid"]]) {
      r = await run(url, args);
      assertStrictEquals(r.code, 2);
      assertMatch(r.err[0], /^error: /);
      assert(r.err.some((l) => l.startsWith("usage:")));
    }
    assertStrictEquals(seen.length, 1);
  });
});

Deno.test("unknown command and help", async () => {
  let r = await run("http://127.0.0.1:1", ["frobnicate"]);
  assertStrictEquals(r.code, 2);
  assertEquals(r.out, []);
  assertStrictEquals(r.err[0], 'error: unknown command "frobnicate"');
  assert(r.err.some((l) => l.startsWith("usage: deno task status")));

  r = await run("http://127.0.0.1:1", ["help"]);
  assertStrictEquals(r.code, 0);
  assert(r.out[0].startsWith("usage:"));

  r = await run("http://127.0.0.1:1", ["watch", "--interval", "soon"]);
  assertStrictEquals(r.code, 2);
});

// ---- errors ----

Deno.test("401: one line naming RELAY_ADMIN_PASSWORD, for wrong or missing password", async () => {
  await withServer({ [`GET ${STATUS_PATH}`]: () => json(sampleStatus()) }, async (url) => {
    for (const password of ["wrong-password", undefined]) {
      const r = await run(url, ["status"], { password });
      assertStrictEquals(r.code, 1);
      assertEquals(r.out, []);
      assertEquals(r.err, [
        `error: unauthorized: RELAY_ADMIN_PASSWORD is missing or wrong for ${url}`,
      ]);
    }
  });
});

Deno.test("403: one line saying the admin endpoint is not configured", async () => {
  await withServer({}, async (url) => {
    const r = await run(url, ["start"]);
    assertStrictEquals(r.code, 1);
    assertStrictEquals(r.err.length, 1);
    assertMatch(r.err[0], /^error: the admin API is not configured on the server at /);
    assertMatch(r.err[0], /admin endpoint not configured/);
  }, null);
});

Deno.test("unreachable server: one line, exit 1", async () => {
  const url = `http://127.0.0.1:${refusedPort()}`;
  for (const args of [["status"], ["watch"], ["stop"]]) {
    const r = await run(`${url}/`, args, { watchIntervalMs: 1 });
    assertStrictEquals(r.code, 1);
    assertEquals(r.out, []);
    assertEquals(r.err, [`error: cannot reach backfill server at ${url} (connection refused)`]);
  }
});

Deno.test("slow server: timeout is one line, exit 1", async () => {
  const routes = {
    [`GET ${STATUS_PATH}`]: async () => {
      // The workload: a server slower than the client's 50 ms timeout.
      await sleep(300);
      return json(sampleStatus());
    },
  };
  await withServer(routes, async (url) => {
    const r = await run(url, ["status"], { timeoutMs: 50 });
    assertStrictEquals(r.code, 1);
    assertEquals(r.err, [`error: backfill server at ${url} did not answer within 0s`]);
  });
});

Deno.test("a server echoing the password has it redacted", async () => {
  const routes = {
    [`POST ${STATUS_PATH}`]: () =>
      json({ error: "InvalidRequest", message: `bad token ${PASSWORD} here` }, 400),
  };
  await withServer(routes, async (url) => {
    const r = await run(url, ["start"]);
    assertStrictEquals(r.code, 1);
    assertMatch(r.err[0], /bad token \*\*\* here/);
  });
});

Deno.test("unexpected body: one line, exit 1", async () => {
  await withServer({ [`GET ${STATUS_PATH}`]: () => new Response("<html>") }, async (url) => {
    let r = await run(url, ["status"]);
    assertStrictEquals(r.code, 1);
    assertEquals(r.err, ["error: unexpected answer from the server: not a backfill status"]);
    r = await run(url, ["full"]);
    assertStrictEquals(r.code, 1);
    assertEquals(r.err, ["error: server answered with non-JSON: <html>"]);
  });
});

// ---- watch ----

/** Serves the statuses in order (the last repeats); polls numbered in `fail` get a 500 instead. */
function sequence(statuses: StatusDocument[], fail: number[] = []): Record<string, Handler> {
  let polls = 0;
  let answered = 0;
  return {
    [`GET ${STATUS_PATH}`]: () => {
      if (fail.includes(polls++)) return json({ error: "InternalServerError" }, 500);
      return json(statuses[Math.min(answered++, statuses.length - 1)]);
    },
  };
}

function progressing(imported: number): StatusDocument {
  const s = sampleStatus({ total_imported: imported });
  s.collections[2] = { ...s.collections[2], imported };
  return s;
}

function ticking(): () => number {
  let t = NOW;
  return () => (t += 1000);
}

Deno.test("watch, not a TTY: a plain line per tick, a summary when the run ends", async () => {
  const ended = sampleStatus({ running: false, run: null, completed: 1261, in_progress: 0 });
  const routes = sequence([progressing(1_000_000), progressing(2_000_000), ended]);
  await withServer(routes, async (url, seen) => {
    const r = await run(url, ["watch"], { watchIntervalMs: 5, now: ticking() });
    assertStrictEquals(r.code, 0);
    assertEquals(r.err, []);
    assertStrictEquals(seen.length, 3);
    assert(!r.out.join("").includes("\x1b["), "no ANSI codes when not a TTY");
    assertMatch(
      r.out[0],
      /^\d\d:\d\d:\d\dZ 621\/1269 collections \(48\.9%\) · 640 in progress · /,
    );
    assert(r.out[0].endsWith(" · 8 failed · 1M DIDs (+120k new) · 41.2k DIDs/s · ETA 1h 00m"));
    assertMatch(r.out[1], / 2M DIDs /);
    assertStrictEquals(r.out[2], "backfill run ended: 1261/1269 collections done, 8 failed");
    assertStrictEquals(r.out[3], "backfill idle: no run in progress");
    assert(r.out.some((l) => l.includes("FAILED collections")));
  });
});

Deno.test("watch, not a TTY: waits for a run to start, survives a transient 500", async () => {
  const idle = sampleStatus({ running: false, run: null });
  const ended = sampleStatus({ running: false, run: null, completed: 1269 });
  const routes = sequence([idle, idle, idle, progressing(5), progressing(6), ended], [4]);
  await withServer(routes, async (url, seen) => {
    const r = await run(url, ["watch", "--interval=0.005"], { now: ticking() });
    assertStrictEquals(r.code, 0);
    assertStrictEquals(seen.length, 7);
    assertStrictEquals(r.out.filter((l) => l.includes("waiting for one to start")).length, 1);
    assertStrictEquals(r.err.length, 1);
    assertMatch(r.err[0], /^warning: server at .* answered 500: InternalServerError; retrying$/);
    assert(r.out.includes("backfill run ended: 1269/1269 collections done, 8 failed"));
  });
});

Deno.test("watch, TTY: redraws in place with bars for active collections", async () => {
  const ended = sampleStatus({ running: false, run: null, completed: 1269, failed: 0 });
  const second = progressing(7_732_000);
  second.collections[1] = { ...second.collections[1], active: true };
  const routes = sequence([progressing(6_732_000), second, ended]);
  await withServer(routes, async (url) => {
    const r = await run(url, ["watch"], {
      isTty: true,
      columns: 120,
      watchIntervalMs: 5,
      now: ticking(),
    });
    assertStrictEquals(r.code, 0);
    const frame1 = r.out.slice(0, 4);
    assertMatch(frame1[0], /^. backfill full from bsky\.network · running 1h 02m$/);
    assertMatch(frame1[1], /^overall █+[▏▎▍▌▋▊▉]?░+ 48\.9% {2}621\/1269 collections · 8 failed$/);
    assertMatch(
      frame1[2],
      /6\.7M DIDs \(\+120k new\) · 41\.2k DIDs\/s · 21 pages\/s of up to 10k DIDs · ETA 1h 00m/,
    );
    assertMatch(frame1[3], /^app\.bsky\.feed\.like\s+[█░▏▎▍▌▋▊▉]{20}\s+22\.4%\s+6\.7M \/ 30M$/);
    // Second frame: cursor up over the 4 lines of the first, then a per-collection rate.
    assert(r.out[4].startsWith("\x1b[4A\x1b[J"), JSON.stringify(r.out[4]));
    assertMatch(r.out[7], /^app\.bsky\.graph\.block\s+. 9M DIDs\s+0\/s$/);
    assertMatch(r.out[8], /^app\.bsky\.feed\.like .* 7\.7M \/ 30M\s+1M\/s$/);
    assert(r.out.every((l) => Array.from(l.split("\x1b[J").at(-1) ?? "").length < 120));
    assert(r.out.includes("backfill run ended: 1269/1269 collections done"));
  });
});

Deno.test("watch: aborting the signal (SIGINT) exits 0", async () => {
  const controller = new AbortController();
  let polls = 0;
  const routes = {
    [`GET ${STATUS_PATH}`]: () => {
      if (++polls === 2) controller.abort();
      return json(progressing(polls));
    },
  };
  await withServer(routes, async (url) => {
    const r = await run(url, ["watch"], { watchIntervalMs: 5, signal: controller.signal });
    assertStrictEquals(r.code, 0);
    assertEquals(r.err, []);
    assert(polls >= 2);
  });
});

Deno.test("start: a planning answer, a run stopped before it began, and a source switch that needs confirming", async () => {
  let answer: (u: URL) => Response = () =>
    json({ status: "planning", run: "ab12cd34", source: "relay.example.com", mode: "catch-up" });
  const routes = { [`POST ${STATUS_PATH}`]: (_: Request, u: URL) => answer(u) };
  await withServer(routes, async (url, seen) => {
    let r = await run(url, ["catch-up", "relay.example.com"]);
    assertStrictEquals(r.code, 0);
    assertEquals(r.out, [
      "planning catch-up from relay.example.com (run ab12cd34): discovering collections; `status` follows it",
    ]);
    answer = () => json({ status: "stopped", run: "ef56", source: "bsky.network", mode: "full" });
    r = await run(url, ["start"]);
    assertEquals(r.out, ["backfill from bsky.network (run ef56) was stopped before it began"]);

    answer = (u) =>
      u.searchParams.get("confirm-source-switch") === "true"
        ? json({ status: "started", run: "9", source: "x.example", collections: 40, queued: 40 })
        : json({
          error: "ConfirmationRequired",
          message: "catch-up from x.example would restart 40 completed collection(s) (940783 " +
            "DIDs) imported from bsky.network from the beginning; nothing was changed. Repeat " +
            "it with confirm-source-switch to go ahead",
          collections: 40,
          dids: 940783,
        }, 409);
    r = await run(url, ["catch-up", "x.example"]);
    assertStrictEquals(r.code, 1);
    assertStrictEquals(r.err.length, 1);
    assertMatch(r.err[0], /would restart 40 completed collection\(s\) \(940783 DIDs\)/);
    assertMatch(r.err[0], /\(add --confirm-source-switch\)$/);
    r = await run(url, ["catch-up", "x.example", "--confirm-source-switch"]);
    assertStrictEquals(r.code, 0, r.err.join("\n"));
    assertEquals(r.out, ["started catch-up of 40 collections from x.example (run 9)"]);
    assertStrictEquals(seen.at(-1)?.params.get("source"), "x.example");
    assertStrictEquals(seen.at(-1)?.params.get("mode"), "catch-up");
  });
});

Deno.test("status: a planning run, a replaced index and flagged collections are shown", async () => {
  const body = {
    ...sampleStatus({
      run: {
        ...sampleStatus().run!,
        id: "ab12cd34",
        phase: "planning",
        source: "relay.example.com",
        mode: "catch-up",
        started_at: "2026-11-24T06:01:00.000Z",
        collections: 0,
      },
      collections: [
        collection({ collection: "com.example.gone", reimport: true }),
        collection({
          collection: "com.example.junk",
          completed: true,
          invalid: 47,
          warning: "47 entries from the source were not valid DIDs and were skipped; reset…",
        }),
      ],
    }),
    total_invalid: 47,
    flagged: 1,
    index: { identity: "i", replaced_at: "2026-11-24T06:00:00.000Z", reimport: 1 },
  };
  await withServer({ [`GET ${STATUS_PATH}`]: () => json(body) }, async (url) => {
    const { code, out } = await run(url, ["status"]);
    assertStrictEquals(code, 0);
    assertMatch(
      out[0],
      /^backfill planning: catch-up from relay\.example\.com, started .* · run ab12cd34$/,
    );
    const text = out.join("\n");
    assertMatch(text, /47 invalid entries skipped/);
    assertMatch(
      text,
      /INDEX REPLACED\s+found missing or replaced at 2026-11-24 06:00 UTC; 1 collection waiting/,
    );
    assertMatch(text, /com\.example\.gone.*re-import after the index was lost/);
    const flagged = out.indexOf("FLAGGED collections (1), entries that were not DIDs:");
    assert(flagged > 0, text);
    assertMatch(
      out[flagged + 1],
      /com\.example\.junk\s+47 invalid\s+0 DIDs imported\s+fetch it again: status reset com\.example\.junk/,
    );
  });
});

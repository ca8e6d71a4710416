/** Tests for lib/source/client.ts: parsePage as a table, and SourceClient against a scripted server. */
import { assert, assertEquals, assertRejects, assertThrows } from "./_assert.ts";
import {
  errorBodyText,
  LEXICON_PAGE_LIMIT,
  limitAfterRefusal,
  MAX_PAGE_LIMIT,
  parsePage,
  SourceClient,
  type SourceClientOptions,
} from "../lib/source/client.ts";
import { createLogger } from "../lib/util/log.ts";
import { SourceError } from "../lib/util/errors.ts";
import { HostLimiter } from "../lib/source/rate_limiter.ts";
import { FakeClock } from "./_fake_clock.ts";
import { parseSource } from "../lib/source/source.ts";
import { until } from "./_helpers.ts";

// ---------------------------------------------------------------------------------------------
// parsePage

const P = (body: string) => parsePage(body, "relay.test", "app.bsky.feed.post");

const PAGES: [string, string, { dids: string[]; invalid: number; cursor?: string }][] = [
  ["empty", `{"repos":[]}`, { dids: [], invalid: 0, cursor: undefined }],
  ["empty with cursor", `{"repos":[],"cursor":"abc"}`, { dids: [], invalid: 0, cursor: "abc" }],
  ["two DIDs and cursor", `{"cursor":"Y3Vy","repos":[{"did":"did:plc:a"},{"did":"did:web:x.y"}]}`, {
    dids: ["did:plc:a", "did:web:x.y"],
    invalid: 0,
    cursor: "Y3Vy",
  }],
  ["empty-string cursor means none", `{"repos":[{"did":"did:plc:a"}],"cursor":""}`, {
    dids: ["did:plc:a"],
    invalid: 0,
    cursor: undefined,
  }],
  ["null cursor means none", `{"repos":[],"cursor":null}`, {
    dids: [],
    invalid: 0,
    cursor: undefined,
  }],
  ["extra fields ignored", `{"repos":[{"did":"did:plc:a","rev":"3k"}],"extra":1}`, {
    dids: ["did:plc:a"],
    invalid: 0,
    cursor: undefined,
  }],
  [
    "duplicates kept in order",
    `{"repos":[{"did":"did:plc:b"},{"did":"did:plc:a"},{"did":"did:plc:b"}]}`,
    {
      dids: ["did:plc:b", "did:plc:a", "did:plc:b"],
      invalid: 0,
      cursor: undefined,
    },
  ],
  [
    "non-object entries and invalid DIDs are counted",
    JSON.stringify({
      repos: [
        1,
        "did:plc:bare",
        null,
        [],
        true,
        {},
        { did: 5 },
        { did: null },
        { did: "not-a-did" },
        { did: "did:plc:" },
        { did: "DID:plc:abc" },
        { did: "did:plc:ok" },
        { DID: "did:plc:case" },
      ],
      cursor: "n",
    }),
    { dids: ["did:plc:ok"], invalid: 12, cursor: "n" },
  ],
];

Deno.test("parsePage: valid bodies", () => {
  for (const [why, body, want] of PAGES) assertEquals(P(body), want, why);
});

const BAD_BODIES: [string, string, RegExp][] = [
  ["empty body", "", /malformed JSON/],
  ["HTML", "<html><body>502 Bad Gateway</body></html>", /malformed JSON/],
  ["truncated JSON", `{"repos":[{"did":"did:plc:a"}`, /malformed JSON/],
  ["null", "null", /without a "repos" array/],
  ["number", "42", /without a "repos" array/],
  ["string", `"repos"`, /without a "repos" array/],
  ["array", `[{"did":"did:plc:a"}]`, /without a "repos" array/],
  ["missing repos", `{"cursor":"abc"}`, /without a "repos" array/],
  ["repos is an object", `{"repos":{"did":"did:plc:a"}}`, /without a "repos" array/],
  ["repos is null", `{"repos":null}`, /without a "repos" array/],
  ["error body", `{"error":"InvalidRequest","message":"bad"}`, /without a "repos" array/],
  ["numeric cursor", `{"repos":[],"cursor":123}`, /non-string cursor/],
  ["object cursor", `{"repos":[],"cursor":{}}`, /non-string cursor/],
];

Deno.test("parsePage: malformed bodies are retryable SourceErrors", () => {
  for (const [why, body, message] of BAD_BODIES) {
    assertThrows(() => P(body), (err: unknown) => {
      assert(err instanceof SourceError, `${why}: ${err}`);
      assert(message.test(err.message), `${why}: ${err.message}`);
      assert(err.message.includes("relay.test"), err.message);
      assert(err.message.includes("app.bsky.feed.post"), err.message);
      assertEquals(err.context.retryable, true, why);
      assertEquals(err.context.status, 200, why);
      assertEquals(err.context.collection, "app.bsky.feed.post", why);
      return true;
    }, why);
  }
});

Deno.test("parsePage: a malformed body is not quoted", () => {
  assertThrows(() => P("SECRET-METADATA " + "x".repeat(10_000)), (err: unknown) => {
    assert(err instanceof SourceError);
    assert(!err.message.includes("SECRET"), err.message);
    assert(err.message.includes("10016 characters"), err.message);
    return true;
  });
});

// ---------------------------------------------------------------------------------------------
// SourceClient against a scripted server

const START = Date.parse("2026-03-01T12:00:00Z");
const XRPC = "/xrpc/com.atproto.sync.listReposByCollection";

interface Seen {
  path: string;
  params: URLSearchParams;
  userAgent: string | null;
  /** Virtual time when the request arrived. */
  at: number;
}

type Step = (req: Request, clock: FakeClock) => Response | Promise<Response>;

interface Harness {
  client: SourceClient;
  clock: FakeClock;
  limiter: HostLimiter;
  seen: Seen[];
  statuses: (number | "error")[];
  /** Resolves everything still held by a hanging step. */
  release: Promise<void>;
}

/**
 * Serves `steps` in order (the last one repeats) on an ephemeral port, runs `fn` with a client
 * pointed at it, then releases any hanging handlers and shuts the server down.
 */
async function withServer(
  steps: Step[],
  fn: (h: Harness) => Promise<void>,
  opts: Partial<SourceClientOptions> = {},
): Promise<void> {
  const clock = new FakeClock(START);
  const seen: Seen[] = [];
  let releaseNow!: () => void;
  const release = new Promise<void>((r) => releaseNow = r);
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => {
      const url = new URL(req.url);
      seen.push({
        path: url.pathname,
        params: url.searchParams,
        userAgent: req.headers.get("user-agent"),
        at: clock.now(),
      });
      const step = steps[Math.min(seen.length - 1, steps.length - 1)];
      return step(req, clock);
    },
  );
  const statuses: (number | "error")[] = [];
  const limiter = new HostLimiter({ maxRps: 1000, clock });
  const client = new SourceClient({
    source: parseSource(`http://127.0.0.1:${server.addr.port}`),
    limiter,
    clock,
    random: () => 1,
    maxAttempts: 3,
    maxBackoffMs: 1000,
    timeoutMs: 5000,
    observer: { response: (_s, status) => statuses.push(status) },
    ...opts,
  });
  try {
    await fn({ client, clock, limiter, seen, statuses, release });
  } finally {
    releaseNow();
    await server.shutdown();
  }
}

const page = (dids: string[], cursor?: string) => (): Response =>
  Response.json({ repos: dids.map((did) => ({ did })), ...(cursor ? { cursor } : {}) });
const status = (code: number, body = "", headers: HeadersInit = {}) => (): Response =>
  new Response(body, { status: code, headers });

/** Asserts `p` rejects with a SourceError and returns it. */
async function sourceError(p: Promise<unknown>): Promise<SourceError> {
  let caught: unknown;
  await assertRejects(p, (err: unknown) => {
    caught = err;
    return true;
  });
  assert(caught instanceof SourceError, `expected SourceError, got ${caught}`);
  return caught;
}

Deno.test("SourceClient: a 200 page, and the request it sent", async () => {
  await withServer([page(["did:plc:a", "did:plc:b"], "c2"), page(["did:plc:c"])], async (h) => {
    const first = await h.client.listRepos("app.bsky.feed.post", "", 1000);
    assertEquals(first, { dids: ["did:plc:a", "did:plc:b"], invalid: 0, cursor: "c2" });
    const second = await h.client.listRepos("app.bsky.feed.post", "a+b/c=d&e", 2000);
    assertEquals(second, { dids: ["did:plc:c"], invalid: 0, cursor: undefined });
    assertEquals(h.seen.length, 2);
    assertEquals(h.seen[0].path, XRPC);
    assertEquals(h.seen[0].params.get("collection"), "app.bsky.feed.post");
    assertEquals(h.seen[0].params.get("limit"), "1000");
    assertEquals(h.seen[0].params.has("cursor"), false, "no cursor on the first page");
    assertEquals(h.seen[1].params.get("cursor"), "a+b/c=d&e", "cursor sent verbatim");
    assertEquals(h.seen[1].params.get("limit"), "2000");
    assert(h.seen[0].userAgent?.startsWith("backfill"), `user-agent ${h.seen[0].userAgent}`);
    assertEquals(h.statuses, [200, 200]);
    assertEquals(h.limiter.stats.granted, 2);
  });
});

Deno.test("SourceClient: a custom user agent is sent", async () => {
  await withServer([page([])], async (h) => {
    await h.client.listRepos("a.b.c", "", 10);
    assertEquals(h.seen[0].userAgent, "test-agent/1");
  }, { userAgent: "test-agent/1" });
});

Deno.test("SourceClient: invalid entries are skipped and counted", async () => {
  const body = JSON.stringify({
    repos: [{ did: "did:plc:good" }, { did: "nope" }, 7, null, { handle: "x" }, {
      did: "did:web:ok.example",
    }],
    cursor: "next",
  });
  await withServer([status(200, body, { "content-type": "application/json" })], async (h) => {
    assertEquals(await h.client.listRepos("a.b.c", "", 10), {
      dids: ["did:plc:good", "did:web:ok.example"],
      invalid: 4,
      cursor: "next",
    });
  });
});

Deno.test("SourceClient: a 500 then a 200 is retried after a back-off", async () => {
  await withServer([status(500, "oops"), page(["did:plc:a"])], async (h) => {
    const got = await h.client.listRepos("a.b.c", "", 10);
    assertEquals(got.dids, ["did:plc:a"]);
    assertEquals(h.seen.length, 2);
    // random() = 1: the first back-off is the full 500 ms.
    assertEquals(h.seen[1].at - h.seen[0].at, 500);
    assertEquals(h.statuses, [500, 200]);
  });
});

Deno.test("SourceClient: persistent 5xx gives up after maxAttempts with capped exponential back-off", async () => {
  await withServer([status(503, "down")], async (h) => {
    const err = await sourceError(h.client.listRepos("a.b.c", "", 10));
    assertEquals(h.seen.length, 4);
    const gaps = h.seen.slice(1).map((s, i) => s.at - h.seen[i].at);
    assertEquals(gaps, [500, 1000, 1500]);
    assertEquals(err.context.status, 503);
    assertEquals(err.context.retryable, true);
    assertEquals(err.context.collection, "a.b.c");
    assert(err.message.includes("gave up after 4 attempts"), err.message);
    assert(err.message.includes("503"), err.message);
  }, { maxAttempts: 4, maxBackoffMs: 1500 });
});

Deno.test("SourceClient: 429 with Retry-After seconds pauses the host, then succeeds", async () => {
  await withServer([
    status(429, "slow down", { "retry-after": "7" }),
    page(["did:plc:a"]),
  ], async (h) => {
    assertEquals((await h.client.listRepos("a.b.c", "", 10)).dids, ["did:plc:a"]);
    assertEquals(h.seen.length, 2);
    assertEquals(h.seen[1].at - h.seen[0].at, 7000);
    assertEquals(h.limiter.stats.throttled, 1);
    assertEquals(h.statuses, [429, 200]);
  });
});

Deno.test("SourceClient: 429 with an HTTP-date Retry-After", async () => {
  await withServer([
    (_req, clock) =>
      new Response("", {
        status: 429,
        headers: { "retry-after": new Date(clock.now() + 30_000).toUTCString() },
      }),
    page(["did:plc:a"]),
  ], async (h) => {
    assertEquals((await h.client.listRepos("a.b.c", "", 10)).dids, ["did:plc:a"]);
    assertEquals(h.seen[1].at - h.seen[0].at, 30_000);
  });
});

Deno.test("SourceClient: 429 with only RateLimit-Reset", async () => {
  await withServer([
    status(429, "", {
      "ratelimit-limit": "3000",
      "ratelimit-remaining": "0",
      "ratelimit-reset": "12",
    }),
    page(["did:plc:a"]),
  ], async (h) => {
    assertEquals((await h.client.listRepos("a.b.c", "", 10)).dids, ["did:plc:a"]);
    assertEquals(h.seen[1].at - h.seen[0].at, 12_000);
  });
});

Deno.test("SourceClient: 429s do not use up maxAttempts", async () => {
  await withServer([
    status(429, "", { "retry-after": "1" }),
    status(429, "", { "retry-after": "1" }),
    status(429, "", { "retry-after": "1" }),
    page(["did:plc:a"]),
  ], async (h) => {
    assertEquals((await h.client.listRepos("a.b.c", "", 10)).dids, ["did:plc:a"]);
    assertEquals(h.seen.length, 4);
    assertEquals(h.limiter.stats.throttled, 3);
  }, { maxAttempts: 1 });
});

Deno.test("SourceClient: endless 429s give up after max429", async () => {
  await withServer([status(429, "", { "retry-after": "1" })], async (h) => {
    const err = await sourceError(h.client.listRepos("a.b.c", "", 10));
    assertEquals(h.seen.length, 3);
    assertEquals(err.context.status, 429);
    assert(err.message.includes("gave up after 3 in a row"), err.message);
  }, { max429: 2 });
});

Deno.test("SourceClient: 503 with Retry-After pauses the host like a 429", async () => {
  await withServer([status(503, "", { "retry-after": "4" }), page(["did:plc:a"])], async (h) => {
    assertEquals((await h.client.listRepos("a.b.c", "", 10)).dids, ["did:plc:a"]);
    assert(h.seen[1].at - h.seen[0].at >= 4000, String(h.seen[1].at - h.seen[0].at));
    assertEquals(h.limiter.stats.throttled, 1);
  });
});

Deno.test("SourceClient: 403 from an edge proxy fails at once; its plain-text body is not echoed", async () => {
  await withServer(
    [status(403, "Request forbidden by administrative rules"), page([])],
    async (h) => {
      const err = await sourceError(h.client.listRepos("a.b.c", "", 10));
      assertEquals(h.seen.length, 1);
      assertEquals(err.context.status, 403);
      assertEquals(err.context.retryable, false);
      assert(!err.message.includes("Request forbidden"), err.message);
      assert(
        err.message.endsWith(
          "answered 403 for a.b.c (a 41-character body that is not an XRPC error)",
        ),
        err.message,
      );
    },
  );
});

Deno.test("errorBodyText: only an XRPC error object is shown", () => {
  const cases: [string, string][] = [
    ["", ""],
    ["ami-id\ninstance-id\niam/", " (a 23-character body that is not an XRPC error)"],
    ['{"Code":"Success","AccessKeyId":"AKIA"}', " (a 39-character body that is not an XRPC error)"],
    [
      '{"error":"not an xrpc name","message":"x"}',
      " (a 42-character body that is not an XRPC error)",
    ],
    ['{"error":"InvalidRequest","message":"bad\\nline"}', ': "InvalidRequest: bad line"'],
    ['{"error":"RateLimitExceeded"}', ': "RateLimitExceeded"'],
    [JSON.stringify({ error: "E", message: "m".repeat(500) }), `: "E: ${"m".repeat(197)}…"`],
  ];
  for (const [body, want] of cases) assertEquals(errorBodyText(body), want, body);
});

Deno.test("SourceClient: 404 (no such endpoint) fails at once", async () => {
  await withServer([status(404, "Not Found"), page([])], async (h) => {
    const err = await sourceError(h.client.listRepos("a.b.c", "", 10));
    assertEquals(h.seen.length, 1);
    assertEquals(err.context.status, 404);
    assertEquals(err.context.retryable, false);
  });
});

Deno.test("SourceClient: 400 InvalidRequest fails at once", async () => {
  await withServer([
    status(400, JSON.stringify({ error: "InvalidRequest", message: "invalid collection" })),
  ], async (h) => {
    const err = await sourceError(h.client.listRepos("a.b.c", "", 10));
    assertEquals(h.seen.length, 1);
    assertEquals(err.context.retryable, false);
    assert(err.message.includes("InvalidRequest"), err.message);
  });
});

Deno.test("limitAfterRefusal: only a 400 to a limit above the lexicon's maximum asks again, table", () => {
  const cases: [number, number | undefined, number | undefined][] = [
    [10000, 400, 2000],
    [2001, 400, 2000],
    [2000, 400, undefined],
    [100, 400, undefined],
    [10000, 403, undefined],
    [10000, 429, undefined],
    [10000, 500, undefined],
    [10000, undefined, undefined],
  ];
  for (const [asked, status, want] of cases) {
    assertEquals(limitAfterRefusal(asked, status), want, `${asked} answered ${status}`);
  }
  assertEquals([LEXICON_PAGE_LIMIT, MAX_PAGE_LIMIT], [2000, 10000]);
});

const LIMIT_REFUSED = JSON.stringify({
  error: "InvalidRequest",
  message: "limit must be less than or equal to 2000",
});

/** A logger that keeps its lines. */
function keptLog(): { lines: Record<string, unknown>[]; log: ReturnType<typeof createLogger> } {
  const lines: Record<string, unknown>[] = [];
  return { lines, log: createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) }) };
}

Deno.test("SourceClient: a 400 to a limit above 2000 asks for the page again at 2000, and later pages at 2000; logged once", async () => {
  const { lines, log } = keptLog();
  await withServer([
    status(400, LIMIT_REFUSED),
    page(["did:plc:a"], "c1"),
    page(["did:plc:b"], "c2"),
    page(["did:plc:c"]),
  ], async (h) => {
    assertEquals(h.client.pageLimit(10000), 10000);
    assertEquals((await h.client.listRepos("a.b.c", "", 10000)).dids, ["did:plc:a"]);
    assertEquals((await h.client.listRepos("a.b.c", "c1", 10000)).dids, ["did:plc:b"]);
    assertEquals((await h.client.listRepos("d.e.f", "", 5000)).dids, ["did:plc:c"]);
    assertEquals(
      h.seen.map((s) => [s.params.get("limit"), s.params.get("cursor")]),
      [["10000", null], ["2000", null], ["2000", "c1"], ["2000", null]],
    );
    assertEquals([h.client.pageLimit(10000), h.client.pageLimit(500)], [2000, 500]);
    const said = lines.filter((l) => l.level !== "debug");
    assertEquals(said.length, 1, JSON.stringify(lines));
    assertEquals([said[0].source, said[0].refused, said[0].limit], [
      h.client.source.name,
      10000,
      2000,
    ]);
  }, { log });
});

Deno.test("SourceClient: a 400 that a limit of 2000 does not cure fails the page and keeps the limit", async () => {
  const { lines, log } = keptLog();
  const badCursor = JSON.stringify({ error: "InvalidRequest", message: "invalid cursor" });
  await withServer([status(400, badCursor)], async (h) => {
    const err = await sourceError(h.client.listRepos("a.b.c", "zzz", 10000));
    assertEquals(err.context.status, 400);
    assert(err.message.includes("invalid cursor"), err.message);
    assertEquals(h.seen.map((s) => s.params.get("limit")), ["10000", "2000"]);
    assertEquals(h.client.pageLimit(10000), 10000);
    assertEquals(lines.filter((l) => l.level !== "debug"), []);
  }, { log });
});

const NGINX_502 = `<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx</center>
${"<!-- a padding to disable MSIE and Chrome friendly error page -->\n".repeat(6)}</body>
</html>`;

Deno.test("SourceClient: a 502 with an HTML body is retried and not quoted", async () => {
  await withServer([status(502, NGINX_502, { "content-type": "text/html" })], async (h) => {
    const err = await sourceError(h.client.listRepos("a.b.c", "", 10));
    assertEquals(h.seen.length, 3);
    assertEquals(err.context.status, 502);
    assertEquals(err.context.retryable, true);
    assert(!err.message.includes("<html>"), err.message);
    assert(err.message.includes("body that is not an XRPC error"), err.message);
  });
});

Deno.test("SourceClient: a 502 HTML page then a good page succeeds", async () => {
  await withServer([status(502, NGINX_502), page(["did:plc:a"], "c")], async (h) => {
    assertEquals(await h.client.listRepos("a.b.c", "", 10), {
      dids: ["did:plc:a"],
      invalid: 0,
      cursor: "c",
    });
  });
});

Deno.test("SourceClient: malformed JSON is retried, then fails", async () => {
  await withServer([status(200, `{"repos":[{"did":"did:plc:a"}`)], async (h) => {
    const err = await sourceError(h.client.listRepos("a.b.c", "", 10));
    assertEquals(h.seen.length, 2);
    assert(err.message.includes("malformed JSON"), err.message);
    assert(err.message.includes("gave up after 2 attempts"), err.message);
    assertEquals(err.context.retryable, true);
  }, { maxAttempts: 2 });
});

Deno.test("SourceClient: malformed JSON then a good page succeeds", async () => {
  await withServer([status(200, "{not json"), page(["did:plc:a"])], async (h) => {
    assertEquals((await h.client.listRepos("a.b.c", "", 10)).dids, ["did:plc:a"]);
    assertEquals(h.seen.length, 2);
  });
});

Deno.test("SourceClient: a body without repos is retried, then fails", async () => {
  await withServer([status(200, `{"cursor":"abc"}`)], async (h) => {
    const err = await sourceError(h.client.listRepos("a.b.c", "", 10));
    assertEquals(h.seen.length, 2);
    assert(err.message.includes(`without a "repos" array`), err.message);
  }, { maxAttempts: 2 });
});

Deno.test("SourceClient: an oversized streamed body is cut off at maxBodyBytes, not retried", async () => {
  const CHUNK = 64 * 1024;
  const TOTAL = 50 * 1024 * 1024;
  let produced = 0;
  let cancelled = false;
  await withServer([() => {
    const chunk = new Uint8Array(CHUNK).fill(0x20); // spaces: valid JSON padding
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (produced >= TOTAL) {
          controller.close();
          return;
        }
        produced += CHUNK;
        controller.enqueue(chunk);
      },
      cancel() {
        cancelled = true;
      },
    }, { highWaterMark: 0 });
    return new Response(stream, { headers: { "content-type": "application/json" } });
  }], async (h) => {
    const err = await sourceError(h.client.listRepos("a.b.c", "", 10));
    assertEquals(h.seen.length, 1);
    assertEquals(err.context.retryable, false);
    assert(err.message.includes("larger than 1048576 bytes"), err.message);
    // Give the server a moment to notice the client went away.
    await until(() => cancelled, { timeoutMs: 1000, what: "the server to see the body cancelled" });
    assert(produced < TOTAL / 2, `server produced ${produced} bytes before the client stopped`);
  }, { maxBodyBytes: 1024 * 1024 });
});

Deno.test("SourceClient: a declared Content-Length over the cap is refused before reading", async () => {
  const big = new Uint8Array(2 * 1024 * 1024).fill(0x20);
  await withServer(
    [() => new Response(big, { headers: { "content-length": String(big.length) } })],
    async (h) => {
      const err = await sourceError(h.client.listRepos("a.b.c", "", 10));
      assertEquals(h.seen.length, 1);
      assertEquals(err.context.retryable, false);
      assert(err.message.includes("at least 2097152"), err.message);
    },
    { maxBodyBytes: 1024 * 1024 },
  );
});

/** A handler that never answers until the test ends. */
const hang = (release: () => Promise<void>): Step => async () => {
  await release();
  return new Response("too late", { status: 200 });
};

Deno.test("SourceClient: a hanging request hits timeoutMs and is retried", async () => {
  let release: Promise<void> = Promise.resolve();
  await withServer([hang(() => release)], async (h) => {
    release = h.release;
    const started = performance.now();
    const err = await sourceError(h.client.listRepos("a.b.c", "", 10));
    const took = performance.now() - started;
    assertEquals(h.seen.length, 2);
    assert(err.message.includes("timed out after 200 ms"), err.message);
    assert(err.message.includes("gave up after 2 attempts"), err.message);
    assertEquals(err.context.retryable, true);
    // Both attempts waited out their timeout (a floor: a slow machine cannot break it). How long
    // the whole takes is a figure of `deno task bench` (bench_timings.ts).
    assert(took >= 380, `took ${took} ms`);
    assertEquals(h.statuses, ["error", "error"]);
  }, { timeoutMs: 200, maxAttempts: 2 });
});

Deno.test("SourceClient: a body that stalls after the headers hits timeoutMs", async () => {
  let release: Promise<void> = Promise.resolve();
  await withServer([() => {
    const enc = new TextEncoder();
    let sent = false;
    return new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (!sent) {
            sent = true;
            controller.enqueue(enc.encode(`{"repos":[{"did":"did:plc:a"},`));
            return;
          }
          await release;
          controller.close();
        },
      }),
      { headers: { "content-type": "application/json" } },
    );
  }], async (h) => {
    release = h.release;
    const err = await sourceError(h.client.listRepos("a.b.c", "", 10));
    assertEquals(h.seen.length, 2);
    assert(err.message.includes("timed out after 200 ms"), err.message);
    assert(err.message.includes("reading"), err.message);
    assertEquals(err.context.status, 200);
    assertEquals(err.context.retryable, true);
  }, { timeoutMs: 200, maxAttempts: 2 });
});

Deno.test("SourceClient: aborting the caller's signal stops a hanging request with its reason", async () => {
  let release: Promise<void> = Promise.resolve();
  await withServer([hang(() => release)], async (h) => {
    release = h.release;
    const ac = new AbortController();
    const pending = h.client.listRepos("a.b.c", "", 10, { signal: ac.signal });
    await until(() => h.seen.length === 1, { what: "the request to reach the server" });
    ac.abort(new Error("shutting down"));
    await assertRejects(
      pending,
      (err: unknown) => err instanceof Error && err.message === "shutting down",
    );
    assertEquals(h.seen.length, 1);
  }, { timeoutMs: 10_000 });
});

Deno.test("SourceClient: an already aborted signal sends nothing", async () => {
  await withServer([page([])], async (h) => {
    const ac = new AbortController();
    ac.abort(new Error("stop"));
    await assertRejects(h.client.listRepos("a.b.c", "", 10, { signal: ac.signal }), /stop/);
    assertEquals(h.seen.length, 0);
  });
});

Deno.test("SourceClient: connection resets are retried", async () => {
  // A raw TCP server: the first connection is dropped without an answer, the second is served.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  let connections = 0;
  const body = JSON.stringify({ repos: [{ did: "did:plc:after-reset" }] });
  const serving = (async () => {
    for await (const conn of listener) {
      connections++;
      const buf = new Uint8Array(4096);
      await conn.read(buf).catch(() => null);
      if (connections > 1) {
        const head = `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n` +
          `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
        await conn.write(new TextEncoder().encode(head + body)).catch(() => 0);
      }
      conn.close();
    }
  })();
  try {
    const clock = new FakeClock(START);
    const client = new SourceClient({
      source: parseSource(`http://127.0.0.1:${port}`),
      limiter: new HostLimiter({ maxRps: 1000, clock }),
      clock,
      random: () => 1,
      maxAttempts: 3,
      timeoutMs: 5000,
    });
    assertEquals((await client.listRepos("a.b.c", "", 10)).dids, ["did:plc:after-reset"]);
    assertEquals(connections, 2);
  } finally {
    listener.close();
    await serving.catch(() => {});
  }
});

Deno.test("SourceClient: a refused connection fails as retryable after maxAttempts", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close(); // nothing listens there now
  const clock = new FakeClock(START);
  const client = new SourceClient({
    source: parseSource(`http://127.0.0.1:${port}`),
    limiter: new HostLimiter({ maxRps: 1000, clock }),
    clock,
    random: () => 1,
    maxAttempts: 2,
    timeoutMs: 5000,
  });
  const err = await sourceError(client.listRepos("a.b.c", "", 10));
  assertEquals(err.context.retryable, true);
  assert(err.message.includes("gave up after 2 attempts"), err.message);
  assert(err.message.includes("a.b.c"), err.message);
});

import fc from "fast-check";
import { assert, assertEquals } from "./_assert.ts";
import { Backfiller } from "../lib/run/backfill.ts";
import { parseBackfillArgs, parseConfig } from "../lib/app/config.ts";
import { parseLlmsTxt } from "../lib/source/discovery.ts";
import { InputError } from "../lib/util/errors.ts";
import { createApp } from "../lib/http/app.ts";
import { decodeCursor, encodeCursor } from "../lib/http/xrpc_cursor.ts";
import { silentLogger } from "../lib/util/log.ts";
import { HostLimiter } from "../lib/source/rate_limiter.ts";
import { takeRunLock } from "../lib/progress/run_lock.ts";
import { SourceClient } from "../lib/source/client.ts";
import { parseSource, type Source } from "../lib/source/source.ts";
import { isDid, isNsid } from "../lib/util/syntax.ts";
import { freePort } from "./_child.ts";
import { TEST_DATABASE_URL, testDb, testIndex, until } from "./_helpers.ts";

const RUNS = Number(Deno.env.get("FUZZ_RUNS") ?? 2000);
const SEED = Deno.env.get("FUZZ_SEED") ? Number(Deno.env.get("FUZZ_SEED")) : undefined;
const params = (numRuns = RUNS) => ({ numRuns, seed: SEED });

const label = fc.stringMatching(/^[a-z]([a-z0-9-]{0,8}[a-z0-9])?$/);
const nsidArb = fc.tuple(
  label,
  label,
  fc.array(label, { maxLength: 2 }),
  fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9]{0,12}$/),
)
  .map(([a, b, more, name]) => [a, b, ...more, name].join("."))
  .filter((s) => isNsid(s));
const didArb = fc.oneof(
  fc.stringMatching(/^[a-z2-7]{24}$/).map((s) => `did:plc:${s}`),
  fc.tuple(
    fc.stringMatching(/^[a-z]{1,8}$/),
    fc.stringMatching(/^[a-zA-Z0-9._:%-]{0,40}[a-zA-Z0-9._-]$/),
  )
    .map(([m, id]) => `did:${m}:${id}`),
).filter((s) => isDid(s));
/** Anything: unicode, control characters, lone surrogates. */
const junk = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 20 }),
);
/** Characters the llms.txt link pattern consumes without stopping (no delimiters, no %). */
const plain = fc.string({
  unit: fc.constantFrom(
    ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:-_!*,;=@+~$&",
  ),
  maxLength: 30,
});

/** ASCII %XX escapes decoded, the only ones that can end up inside a valid NSID. */
function decodeAscii(s: string): string {
  return s.replace(/%([0-7][0-9A-Fa-f])/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

Deno.test("fuzz parseLlmsTxt: never throws; valid, unique NSIDs that the input holds", () => {
  const link = fc.tuple(
    fc.oneof(didArb, junk, plain),
    fc.oneof(nsidArb, nsidArb.map((n) => n.replace(/\./g, "%2E")), junk, plain),
    fc.constantFrom("", "/docs", ")", " ", "\n", "#x", "?y", "/", "%", "%zz"),
  ).map(([did, nsid, end]) =>
    `${["https", "http", "HTTPS"][nsid.length % 3]}://lexicon.garden/lexicon/${did}/${nsid}${end}`
  );
  const text = fc.array(
    fc.oneof(link, junk, nsidArb, fc.constant("https://lexicon.garden/lexicon/")),
    {
      maxLength: 12,
    },
  ).chain((parts) =>
    fc.array(fc.constantFrom("", "\n", " ", "(", ")", "[", "](", "<", ">", "%", "/"), {
      minLength: parts.length,
      maxLength: parts.length,
    }).map((seps) => parts.map((p, i) => p + seps[i]).join(""))
  );
  fc.assert(
    fc.property(text, (input) => {
      const out = parseLlmsTxt(input);
      assertEquals(new Set(out).size, out.length, "no duplicates");
      const decoded = decodeAscii(input);
      for (const n of out) {
        assert(isNsid(n), `valid NSID: ${n}`);
        assert(input.includes(n) || decoded.includes(n), `${n} is in the input`);
      }
    }),
    params(RUNS * 2),
  );
});

Deno.test("fuzz parseLlmsTxt: exactly the NSIDs of well-formed lexicon links, amid noise", () => {
  const entry = fc.record({
    did: fc.oneof(didArb, plain),
    nsid: fc.oneof(nsidArb, plain),
    before: fc.constantFrom("- [x](", "<", " ", "\n", "(", "see "),
    after: fc.constantFrom(")", ">", " ", "\n", "/docs)", "#frag ", "?q=1 ", "\t"),
  });
  const noise = fc.constantFrom(
    "# Lexicon Garden\n",
    "- [About](https://lexicon.garden/about)\n",
    "- [Search](https://lexicon.garden/search?q=app.bsky.feed)\n",
    "- [Identity](https://lexicon.garden/identity/did:plc:x)\n",
    "app.bsky.feed.like is popular\n",
    "https://docs.bsky.app/docs/api/app-bsky-feed-like\n",
  );
  fc.assert(
    fc.property(fc.array(fc.oneof(entry, noise), { maxLength: 15 }), (items) => {
      const expected: string[] = [];
      let input = "";
      for (const it of items) {
        if (typeof it === "string") {
          input += it;
          continue;
        }
        input += `${it.before}https://lexicon.garden/lexicon/${it.did}/${it.nsid}${it.after}`;
        // Both parts are URL-decoded before they are validated (did:web ports come as %3A). A bare
        // link sheds trailing sentence punctuation; an explicit target is taken as written.
        const explicit = it.before === "- [x](" || it.before === "<";
        const raw = explicit ? it.nsid : it.nsid.replace(/[.,;:!]+$/, "");
        const [did, nsid] = [safeDecode(it.did), safeDecode(raw)];
        if (isDid(did) && isNsid(nsid) && !expected.includes(nsid)) {
          expected.push(nsid);
        }
      }
      assertEquals(parseLlmsTxt(input), expected);
    }),
    params(),
  );
});

Deno.test("fuzz XRPC cursors: decode never throws and only accepts canonical cursors; DIDs round-trip", () => {
  const cursor = fc.oneof(
    junk,
    fc.stringMatching(/^[A-Za-z0-9_-]{0,64}$/),
    fc.string({ maxLength: 5000, unit: fc.constantFrom("A", "b", "-", "_", "=") }),
    didArb.map((d) => encodeCursor(d)),
    didArb.map((d) => encodeCursor(d) + "A"),
    didArb.map((d) => btoa(d)),
  );
  fc.assert(
    fc.property(cursor, (c) => {
      const did = decodeCursor(c);
      if (did !== undefined) {
        assert(isDid(did), `decoded a DID: ${did}`);
        assertEquals(encodeCursor(did), c, "only the canonical encoding is accepted");
      }
    }),
    params(RUNS * 2),
  );
  fc.assert(
    fc.property(didArb, (did) => {
      const c = encodeCursor(did);
      assert(/^[A-Za-z0-9_-]+$/.test(c), `URL-safe: ${c}`);
      assertEquals(decodeCursor(c), did);
    }),
    params(),
  );
});

const ENV_KEYS = [
  "PORT",
  "DATABASE_URL",
  "DATA_DIR",
  "HOST",
  "RELAY_ADMIN_PASSWORD",
  "BACKFILL_SOURCE",
  "LEXICON_LIST_URL",
  "RELAY_URL",
  "LOG_LEVEL",
  "BACKFILL_CONCURRENCY",
  "BACKFILL_PAGE_LIMIT",
  "BACKFILL_PAGE_PAUSE_MS",
  "BACKFILL_MAX_RPS",
  "BACKFILL_REQUEST_TIMEOUT_MS",
];
const envValue = fc.oneof(
  junk,
  fc.integer({ min: -10, max: 700_000 }).map(String),
  fc.constantFrom(
    "",
    " ",
    "0",
    "1",
    "2000",
    "2001",
    "65535",
    "65536",
    "1e3",
    "0x10",
    "1.5",
    " 8 ",
    "-1",
  ),
  fc.constantFrom(
    "debug",
    "INFO",
    "warn",
    "trace",
    "postgres://u@h/db",
    "postgresql://x",
    "mysql://x",
  ),
  fc.webUrl(),
  fc.domain(),
  fc.constantFrom(
    "http://",
    "https://[::1]:8080/",
    "ftp://x",
    "http://user:pw@h/",
    "http://h/?q#f",
  ),
);

Deno.test("fuzz parseConfig: a Config within its ranges, or an InputError naming a variable", () => {
  const env = fc.dictionary(
    fc.oneof(fc.constantFrom(...ENV_KEYS), fc.string({ maxLength: 8 })),
    envValue,
    {
      maxKeys: 8,
    },
  );
  fc.assert(
    fc.property(env, (e) => {
      let config;
      try {
        config = parseConfig(e);
      } catch (err) {
        assert(err instanceof InputError, `InputError, got ${err}`);
        assert(ENV_KEYS.includes(err.field ?? ""), `names a variable: ${err.field}`);
        return;
      }
      assert(Number.isInteger(config.port) && config.port >= 1 && config.port <= 65535);
      assert(config.pageLimit >= 1 && config.pageLimit <= 10_000);
      assert(config.concurrency >= 1 && config.concurrency <= 256);
      assert(config.maxRps >= 0.1 && config.maxRps <= 10_000);
      assert(["debug", "info", "warn", "error"].includes(config.logLevel));
      assert(/^https?:\/\//.test(config.source.baseUrl));
      assert(/^https?:\/\//.test(config.relayUrl) && !config.relayUrl.endsWith("/"));
      assert(config.databaseUrl === undefined || /^postgres(ql)?:\/\//.test(config.databaseUrl));
    }),
    params(),
  );
});

const sourceInput = fc.oneof(
  junk,
  fc.domain(),
  fc.webUrl({ withQueryParameters: true, withFragments: true }),
  fc.tuple(fc.domain(), fc.integer({ min: 0, max: 70_000 })).map(([d, p]) => `${d}:${p}`),
  fc.constantFrom(
    "bsky.network",
    "BSKY.NETWORK",
    "http://127.0.0.1:2583",
    "https://r.example/x/",
    " x.y ",
  ),
  fc.constantFrom("relay1.us-east.bsky.network", "-bad.host", "a..b", "http://", "ws://x", ""),
);

Deno.test("fuzz parseSource: a normalised Source (stable when parsed again) or an InputError", () => {
  fc.assert(
    fc.property(sourceInput, (input) => {
      let s: Source;
      try {
        s = parseSource(input);
      } catch (err) {
        assert(err instanceof InputError, `InputError, got ${err}`);
        return;
      }
      assert(/^https?:\/\/[^/]/.test(s.baseUrl), s.baseUrl);
      assert(!s.baseUrl.endsWith("/"), s.baseUrl);
      assert(s.host.length > 0 && !s.host.includes("/"), s.host);
      const again = parseSource(s.name);
      assertEquals(again, s, "parsing a source's name gives the same source");
    }),
    params(),
  );
});

Deno.test("fuzz parseBackfillArgs: parsed flags or an InputError", () => {
  const token = fc.oneof(
    fc.constantFrom(
      "--source",
      "--collection",
      "--catch-up",
      "--reset",
      "--help",
      "-h",
      "--",
      "-x",
    ),
    nsidArb,
    nsidArb.map((n) => `--collection=${n}`),
    sourceInput.map((s) => `--source=${s}`),
    junk,
    fc.constantFrom("--collection=", "--source=", "--catch-up=1", "=", "--=x"),
  );
  fc.assert(
    fc.property(fc.array(token, { maxLength: 8 }), (args) => {
      let r;
      try {
        r = parseBackfillArgs(args, isNsid);
      } catch (err) {
        assert(err instanceof InputError, `InputError, got ${err}`);
        return;
      }
      assert(r.collections.every(isNsid));
      assertEquals(new Set(r.collections).size, r.collections.length);
      assert(!r.reset || r.collections.length > 0);
    }),
    params(),
  );
});

const PASSWORD = "fuzz-password";
const KNOWN = "app.bsky.feed.like";

Deno.test("fuzz HTTP routes: random methods, paths, queries and Authorization never give 500", async () => {
  const db = await testDb("fuzz");
  const idx = await testIndex();
  const dids = Array.from({ length: 30 }, (_, i) => `did:plc:${String(i).padStart(24, "a")}`);
  for (const d of dids) await idx.index.addCollection(d, KNOWN);
  // Runs started by the fuzzer go to a closed port, never to the hosts they name.
  const closed = `http://127.0.0.1:${freePort()}`;
  const limiter = new HostLimiter({ maxRps: 10_000 });
  const backfiller = new Backfiller({
    index: idx.index,
    progress: db.progress,
    clientFor: (source) =>
      new SourceClient({
        source: { ...source, baseUrl: closed, host: new URL(closed).host },
        limiter,
        maxAttempts: 1,
        timeoutMs: 1000,
      }),
    discover: () =>
      Promise.resolve({ collections: [KNOWN, "com.example.fuzz"], fromList: 2, fromIndex: 1 }),
    lock: (onLost) => takeRunLock({ url: TEST_DATABASE_URL, schema: db.schema, onLost }),
    concurrency: 2,
    pageLimit: 100,
    pagePauseMs: 0,
    log: silentLogger,
    retryDelayMs: () => 0,
  });
  const app = (adminPassword?: string) =>
    createApp({
      backfiller,
      index: idx.index,
      progress: db.progress,
      adminPassword,
      defaultSource: parseSource("relay.example.com"),
      log: silentLogger,
      metrics: () => Promise.resolve("x 1\n"),
    });
  const apps = { on: app(PASSWORD), off: app(undefined) };

  const paths = [
    "/xrpc/com.atproto.sync.listReposByCollection",
    "/admin/backfill-collections",
    "/admin/backfill-collections/stop",
    "/admin/backfill-collections/reset",
  ];
  const path = fc.oneof(
    { weight: 30, arbitrary: fc.constantFrom(...paths) },
    fc.tuple(fc.constantFrom(...paths), fc.constantFrom("/", "//", "/x", "%2F", "/..", ".json"))
      .map(
        ([p, s]) => p + s,
      ),
    fc.string({ maxLength: 30 }).map((s) => "/" + encodeURIComponent(s)),
    fc.constantFrom("/admin", "/admin/", "/xrpc/", "/admin/%zz", "/%", "/healthz", "/metrics"),
  );
  const value = fc.oneof(
    nsidArb,
    fc.constant(KNOWN),
    fc.integer({ min: -5, max: 3000 }).map(String),
    fc.constantFrom("", "0", "1", "2000", "2001", "1e3", "full", "catch-up", "bsky.network"),
    fc.constantFrom("http://127.0.0.1:1", "ftp://x", "a..b", "did:plc:x"),
    fc.constantFrom(...dids).map(encodeCursor),
    didArb.map(encodeCursor),
    junk,
  );
  const key = fc.oneof(
    { weight: 20, arbitrary: fc.constantFrom("collection", "limit", "cursor", "source", "mode") },
    fc.string({ maxLength: 6 }),
  );
  const query = fc.oneof(
    fc.array(fc.tuple(key, value), { maxLength: 4 }).map((kv) =>
      new URLSearchParams(kv).toString()
    ),
    // Raw, possibly malformed: stray %, bare keys, repeated separators.
    fc.array(
      fc.tuple(key, value, fc.constantFrom("=", "", "=%", "=%zz", "==")).map(([k, v, eq]) =>
        `${encodeURIComponent(k)}${eq}${encodeURIComponent(v)}`
      ),
      { maxLength: 4 },
    ).map((parts) => parts.join(["&", "&&", ";"][parts.length % 3])),
  );
  const authorization = fc.oneof(
    fc.constant(undefined),
    { weight: 5, arbitrary: fc.constant(`Bearer ${PASSWORD}`) },
    fc.constantFrom(
      "Bearer",
      "Bearer ",
      `bearer  ${PASSWORD} `,
      `Basic ${btoa(PASSWORD)}`,
      "Bearer x",
    ),
    fc.string({ maxLength: 40, unit: "binary-ascii" }).map((s) => `Bearer ${s}`),
    fc.string({ maxLength: 40, unit: "binary" }),
  );
  const anyRequest = fc.record({
    method: fc.oneof(
      { weight: 5, arbitrary: fc.constantFrom("GET", "POST") },
      fc.constantFrom("PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"),
    ),
    path,
    query,
    authorization,
    admin: fc.oneof(
      { weight: 9, arbitrary: fc.constant("on" as const) },
      fc.constant("off" as const),
    ),
    /** A started run is left to fail against the closed port (else it is stopped at once). */
    settle: fc.boolean(),
  });
  // Authorised admin calls with well-formed but random parameters: these start, stop and reset runs.
  const adminParams = fc.array(
    fc.oneof(
      fc.tuple(fc.constant("collection"), fc.oneof(nsidArb, fc.constant(KNOWN), junk)),
      fc.tuple(fc.constant("source"), sourceInput),
      fc.tuple(fc.constant("mode"), fc.constantFrom("full", "catch-up", "FULL", "")),
    ),
    { maxLength: 4 },
  ).map((kv) => new URLSearchParams(kv).toString());
  const adminRequest = fc.record({
    method: fc.constant("POST"),
    path: fc.constantFrom(...paths.slice(1)),
    query: adminParams,
    authorization: fc.constant(`Bearer ${PASSWORD}`),
    admin: fc.constant("on" as const),
    settle: fc.boolean(),
  });
  const request = fc.oneof({ weight: 3, arbitrary: anyRequest }, adminRequest);
  let started = 0;
  const statuses: Record<number, number> = {};
  const expected = new Set([200, 400, 401, 403, 404, 405, 409]);
  try {
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const headers = new Headers();
        if (r.authorization !== undefined) {
          try {
            headers.set("authorization", r.authorization);
          } catch {
            return; // not a value HTTP can carry
          }
        }
        let req: Request;
        try {
          req = new Request(`http://localhost${r.path}${r.query ? "?" + r.query : ""}`, {
            method: r.method,
            headers,
          });
        } catch {
          return;
        }
        const res = await apps[r.admin].request(req);
        const body = await res.text();
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (backfiller.running) {
          started++;
          if (!r.settle) await backfiller.stop();
          else {
            await until(() => !backfiller.running, {
              timeoutMs: 120_000,
              what: "the started run to end",
              everyMs: 1,
            });
          }
        }
        assert(res.status !== 500, `500 for ${r.method} ${req.url}: ${body}`);
        assert(
          expected.has(res.status),
          `status ${res.status} for ${r.method} ${req.url}: ${body}`,
        );
        if (res.status === 200 && r.method !== "HEAD" && !req.url.includes("/metrics")) {
          JSON.parse(body);
        }
      }),
      params(RUNS * 2),
    );
  } finally {
    await backfiller.stop();
    console.log(`statuses: ${JSON.stringify(statuses)}, runs started: ${started}`);
    await idx.cleanup();
    await db.drop();
  }
});

/** Table tests for lib/app/config.ts: the environment parser and the `backfill` flag parser. */
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { type Config, DEFAULTS, parseBackfillArgs, parseConfig } from "../lib/app/config.ts";
import { InputError } from "../lib/util/errors.ts";
import { isNsid } from "../lib/util/syntax.ts";

Deno.test("parseConfig: an empty environment gives the documented defaults", () => {
  const want: Config = {
    databaseUrl: undefined,
    dataDir: "./data",
    port: 8080,
    host: "0.0.0.0",
    adminPassword: undefined,
    source: { name: "bsky.network", baseUrl: "https://bsky.network", host: "bsky.network" },
    sourceHosts: undefined,
    lexiconListUrl: "https://lexicon.garden/llms.txt",
    relayUrl: "http://localhost:8080",
    concurrency: 8,
    pageLimit: 10_000,
    pagePauseMs: 0,
    maxRps: 25,
    requestTimeoutMs: 30_000,
    databaseWaitMs: 60_000,
    logLevel: "info",
    liveStream: undefined,
    liveIdleTimeoutMs: 60_000,
    indexMaxOpenFiles: 1000,
    indexFreshFilterMb: undefined,
    liveAutoCatchUp: false,
  };
  assertEquals(parseConfig({}), want);
  // Blank and whitespace-only values mean "unset".
  const blanks = Object.fromEntries(
    [
      "PORT",
      "DATABASE_URL",
      "DATA_DIR",
      "HOST",
      "RELAY_ADMIN_PASSWORD",
      "BACKFILL_SOURCE",
      "LEXICON_LIST_URL",
      "RELAY_URL",
      "BACKFILL_CONCURRENCY",
      "BACKFILL_PAGE_LIMIT",
      "BACKFILL_PAGE_PAUSE_MS",
      "BACKFILL_MAX_RPS",
      "BACKFILL_REQUEST_TIMEOUT_MS",
      "BACKFILL_SOURCE_HOSTS",
      "DATABASE_WAIT_MS",
      "LOG_LEVEL",
    ].map((k, i) => [k, i % 2 ? "" : "   "]),
  );
  assertEquals(parseConfig(blanks), want);
  assertEquals(DEFAULTS.pageLimit, 10_000);
});

Deno.test("parseConfig: every variable is read, trimmed and typed", () => {
  const c = parseConfig({
    DATABASE_URL: "postgresql://u@db:5432/backfill",
    DATA_DIR: "/var/lib/backfill",
    PORT: " 9090 ",
    HOST: "127.0.0.1",
    RELAY_ADMIN_PASSWORD: "hunter2",
    BACKFILL_SOURCE: "http://127.0.0.1:2470/",
    LEXICON_LIST_URL: "http://localhost:2470/llms.txt",
    RELAY_URL: "https://relay.example.com//",
    BACKFILL_CONCURRENCY: "3",
    BACKFILL_PAGE_LIMIT: "1000",
    BACKFILL_PAGE_PAUSE_MS: "100",
    BACKFILL_MAX_RPS: "2.5",
    BACKFILL_REQUEST_TIMEOUT_MS: "5000",
    BACKFILL_SOURCE_HOSTS: " 127.0.0.1:2470 , Relay.Example.com",
    DATABASE_WAIT_MS: "5000",
    LOG_LEVEL: "DEBUG",
    LIVE_STREAM_URL: " wss://relay.example.com/xrpc/com.atproto.sync.subscribeRepos ",
    LIVE_IDLE_TIMEOUT_MS: "30000",
    INDEX_MAX_OPEN_FILES: "500",
    INDEX_FRESH_FILTER_MB: "0",
    LIVE_AUTO_CATCH_UP: "true",
  });
  assertEquals(c, {
    databaseUrl: "postgresql://u@db:5432/backfill",
    dataDir: "/var/lib/backfill",
    port: 9090,
    host: "127.0.0.1",
    adminPassword: "hunter2",
    source: {
      name: "http://127.0.0.1:2470",
      baseUrl: "http://127.0.0.1:2470",
      host: "127.0.0.1:2470",
    },
    sourceHosts: ["127.0.0.1:2470", "relay.example.com"],
    lexiconListUrl: "http://localhost:2470/llms.txt",
    relayUrl: "https://relay.example.com",
    concurrency: 3,
    pageLimit: 1000,
    pagePauseMs: 100,
    maxRps: 2.5,
    requestTimeoutMs: 5000,
    databaseWaitMs: 5000,
    logLevel: "debug",
    liveStream: {
      kind: "firehose",
      url: "wss://relay.example.com/xrpc/com.atproto.sync.subscribeRepos",
      host: "relay.example.com",
    },
    liveIdleTimeoutMs: 30_000,
    indexMaxOpenFiles: 500,
    indexFreshFilterMb: 0,
    liveAutoCatchUp: true,
  });
});

Deno.test("parseConfig: RELAY_URL defaults to the chosen port", () => {
  assertEquals(parseConfig({ PORT: "3000" }).relayUrl, "http://localhost:3000");
});

// [variable, value, accepted value or undefined when it must be rejected]
const NUMERIC: [string, string, number | undefined][] = [
  ["PORT", "1", 1],
  ["PORT", "65535", 65535],
  ["PORT", "0", undefined],
  ["PORT", "65536", undefined],
  ["PORT", "-1", undefined],
  ["PORT", "80.5", undefined],
  ["PORT", "1e3", undefined],
  ["PORT", "0x50", undefined],
  ["PORT", "eighty", undefined],
  ["PORT", "99999999999999999999999", undefined],
  ["BACKFILL_CONCURRENCY", "1", 1],
  ["BACKFILL_CONCURRENCY", "256", 256],
  ["BACKFILL_CONCURRENCY", "0", undefined],
  ["BACKFILL_CONCURRENCY", "257", undefined],
  ["BACKFILL_PAGE_LIMIT", "1", 1],
  ["BACKFILL_PAGE_LIMIT", "2000", 2000],
  ["BACKFILL_PAGE_LIMIT", "2001", 2001],
  ["BACKFILL_PAGE_LIMIT", "10000", 10000],
  ["BACKFILL_PAGE_LIMIT", "0", undefined],
  ["BACKFILL_PAGE_LIMIT", "10001", undefined],
  ["BACKFILL_PAGE_LIMIT", "500.0", undefined],
  ["BACKFILL_PAGE_PAUSE_MS", "0", 0],
  ["BACKFILL_PAGE_PAUSE_MS", "60000", 60000],
  ["BACKFILL_PAGE_PAUSE_MS", "60001", undefined],
  ["BACKFILL_PAGE_PAUSE_MS", "-100", undefined],
  ["BACKFILL_MAX_RPS", "0.1", 0.1],
  ["BACKFILL_MAX_RPS", "10000", 10000],
  ["BACKFILL_MAX_RPS", "7", 7],
  ["BACKFILL_MAX_RPS", "0.05", undefined],
  ["BACKFILL_MAX_RPS", "0", undefined],
  ["BACKFILL_MAX_RPS", "10000.5", undefined],
  ["BACKFILL_MAX_RPS", ".5", undefined],
  ["BACKFILL_MAX_RPS", "5.", undefined],
  ["BACKFILL_MAX_RPS", "1e2", undefined],
  ["BACKFILL_MAX_RPS", "Infinity", undefined],
  ["BACKFILL_MAX_RPS", "NaN", undefined],
  ["BACKFILL_REQUEST_TIMEOUT_MS", "100", 100],
  ["BACKFILL_REQUEST_TIMEOUT_MS", "600000", 600000],
  ["BACKFILL_REQUEST_TIMEOUT_MS", "99", undefined],
  ["BACKFILL_REQUEST_TIMEOUT_MS", "600001", undefined],
  ["DATABASE_WAIT_MS", "1000", 1000],
  ["DATABASE_WAIT_MS", "3600000", 3600000],
  ["DATABASE_WAIT_MS", "999", undefined],
  ["DATABASE_WAIT_MS", "0", undefined],
  ["DATABASE_WAIT_MS", "forever", undefined],
];

const FIELD: Record<string, keyof Config> = {
  PORT: "port",
  BACKFILL_CONCURRENCY: "concurrency",
  BACKFILL_PAGE_LIMIT: "pageLimit",
  BACKFILL_PAGE_PAUSE_MS: "pagePauseMs",
  BACKFILL_MAX_RPS: "maxRps",
  BACKFILL_REQUEST_TIMEOUT_MS: "requestTimeoutMs",
  DATABASE_WAIT_MS: "databaseWaitMs",
};

Deno.test("parseConfig: numeric bounds table", () => {
  const wrong: string[] = [];
  for (const [name, value, want] of NUMERIC) {
    try {
      const got = parseConfig({ [name]: value })[FIELD[name]];
      if (want === undefined) wrong.push(`${name}=${value} accepted as ${got}`);
      else if (got !== want) wrong.push(`${name}=${value} gave ${got}, want ${want}`);
    } catch (err) {
      if (want !== undefined) wrong.push(`${name}=${value} rejected: ${err}`);
      else if (!(err instanceof InputError)) wrong.push(`${name}=${value} threw ${err}`);
      else if (err.field !== name) wrong.push(`${name}=${value} blamed ${err.field}`);
      else if (!err.message.includes(name) || !err.message.includes(JSON.stringify(value))) {
        wrong.push(`${name}=${value}: message does not name variable and value: ${err.message}`);
      }
    }
  }
  assertEquals(wrong, []);
});

const REJECTED: [Record<string, string>, string, RegExp][] = [
  [{ DATABASE_URL: "mysql://u@h/db" }, "DATABASE_URL", /postgres:\/\//],
  [{ DATABASE_URL: "127.0.0.1:5432" }, "DATABASE_URL", /postgres:\/\//],
  [{ LEXICON_LIST_URL: "lexicon.garden/llms.txt" }, "LEXICON_LIST_URL", /not a valid URL/],
  [{ LEXICON_LIST_URL: "ftp://lexicon.garden/llms.txt" }, "LEXICON_LIST_URL", /http\(s\)/],
  [{ RELAY_URL: "not a url" }, "RELAY_URL", /not a valid URL/],
  [{ RELAY_URL: "ws://relay.example.com" }, "RELAY_URL", /http\(s\)/],
  [{ LOG_LEVEL: "verbose" }, "LOG_LEVEL", /one of debug, info, warn, error, got "verbose"/],
  [{ LOG_LEVEL: "trace" }, "LOG_LEVEL", /"trace"/],
  [{ BACKFILL_SOURCE: "not a host" }, "BACKFILL_SOURCE", /^BACKFILL_SOURCE: .*"not a host"/],
  [{ BACKFILL_SOURCE: "ftp://x.y" }, "BACKFILL_SOURCE", /^BACKFILL_SOURCE: .*http/],
  [{ BACKFILL_SOURCE: "https://u:p@x.y" }, "BACKFILL_SOURCE", /credentials/],
  [{ LIVE_STREAM_URL: "https://bsky.network" }, "LIVE_STREAM_URL", /^LIVE_STREAM_URL: .*ws/],
  [{ LIVE_STREAM_URL: "wss://bsky.network/" }, "LIVE_STREAM_URL", /subscribeRepos/],
  [{ LIVE_IDLE_TIMEOUT_MS: "5" }, "LIVE_IDLE_TIMEOUT_MS", /1000 to 3600000/],
  [{ INDEX_MAX_OPEN_FILES: "10" }, "INDEX_MAX_OPEN_FILES", /64 to 100000/],
  [{ INDEX_FRESH_FILTER_MB: "-1" }, "INDEX_FRESH_FILTER_MB", /0 to 4096, got "-1"/],
  [{ INDEX_FRESH_FILTER_MB: "8192" }, "INDEX_FRESH_FILTER_MB", /0 to 4096/],
  [{ LIVE_AUTO_CATCH_UP: "maybe" }, "LIVE_AUTO_CATCH_UP", /true or false/],
  [
    { BACKFILL_SOURCE_HOSTS: "relay.example.com" },
    "BACKFILL_SOURCE",
    /bsky\.network is not in BACKFILL_SOURCE_HOSTS/,
  ],
  [{ BACKFILL_SOURCE_HOSTS: " , " }, "BACKFILL_SOURCE_HOSTS", /names no host/],
  [
    { BACKFILL_SOURCE_HOSTS: "http://x.y" },
    "BACKFILL_SOURCE_HOSTS",
    /"http:\/\/x\.y" is not a host/,
  ],
  [
    { RELAY_ADMIN_PASSWORD: "pässword" },
    "RELAY_ADMIN_PASSWORD",
    /printable ASCII \(character 2 is not\)/,
  ],
  [{ RELAY_ADMIN_PASSWORD: "tab\there" }, "RELAY_ADMIN_PASSWORD", /character 4 is not/],
  [{ RELAY_ADMIN_PASSWORD: "🔑key" }, "RELAY_ADMIN_PASSWORD", /character 1 is not/],
];

Deno.test("parseConfig: rejected values name the variable", () => {
  for (const [env, field, message] of REJECTED) {
    assertThrows(() => parseConfig(env), (err: unknown) => {
      assert(err instanceof InputError, `${JSON.stringify(env)}: ${err}`);
      assertEquals(err.field, field, JSON.stringify(env));
      assert(message.test(err.message), `${JSON.stringify(env)}: ${err.message}`);
      if (field === "RELAY_ADMIN_PASSWORD") {
        assert(!err.message.includes(env.RELAY_ADMIN_PASSWORD), "the password is not echoed");
      }
      return true;
    }, JSON.stringify(env));
  }
});

Deno.test("parseConfig: LIVE_STREAM_URL picks firehose or Jetstream by path", () => {
  const f = parseConfig({
    LIVE_STREAM_URL: "wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos",
  });
  assertEquals(f.liveStream?.kind, "firehose");
  const j = parseConfig({
    LIVE_STREAM_URL: "ws://127.0.0.1:2750/subscribe",
    LIVE_AUTO_CATCH_UP: "1",
  });
  assertEquals([j.liveStream?.kind, j.liveAutoCatchUp], ["jetstream", true]);
});

Deno.test("parseConfig: the admin password may be any printable ASCII; an allowed source host may omit the port", () => {
  const ascii = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join("").trim();
  assertEquals(parseConfig({ RELAY_ADMIN_PASSWORD: ascii }).adminPassword, ascii);
  for (
    const [hosts, source, ok] of [
      ["bsky.network", "bsky.network", true],
      ["bsky.network", "https://bsky.network:8443", true],
      ["bsky.network:443", "https://bsky.network:8443", false],
      ["127.0.0.1:2470", "http://127.0.0.1:2470", true],
      ["127.0.0.1:2470", "http://127.0.0.1:2471", false],
      ["relay.example.com", "http://169.254.169.254", false],
      ["relay.example.com", "http://0x7f.1", false],
    ] as const
  ) {
    const env = { BACKFILL_SOURCE_HOSTS: hosts, BACKFILL_SOURCE: source };
    if (ok) assertEquals(parseConfig(env).sourceHosts, [hosts]);
    else assertThrows(() => parseConfig(env), InputError, `${hosts} / ${source}`);
  }
});

Deno.test("parseConfig: accepted URL-ish values", () => {
  assertEquals(parseConfig({ DATABASE_URL: "postgres://x" }).databaseUrl, "postgres://x");
  assertEquals(parseConfig({ LOG_LEVEL: "Warn" }).logLevel, "warn");
  assertEquals(
    parseConfig({ BACKFILL_SOURCE: "  Relay.Example.com " }).source.name,
    "relay.example.com",
  );
});

// ---- parseBackfillArgs ----

Deno.test("parseBackfillArgs: no arguments", () => {
  assertEquals(parseBackfillArgs([], isNsid), {
    source: undefined,
    collections: [],
    catchUp: false,
    confirmSourceSwitch: false,
    reset: false,
    help: false,
  });
});

Deno.test("parseBackfillArgs: accepted forms", () => {
  const cases: [string[], Partial<ReturnType<typeof parseBackfillArgs>>][] = [
    [["--source", "relay.example.com"], {
      source: {
        name: "relay.example.com",
        baseUrl: "https://relay.example.com",
        host: "relay.example.com",
      },
    }],
    [["--source=http://127.0.0.1:2470"], {
      source: {
        name: "http://127.0.0.1:2470",
        baseUrl: "http://127.0.0.1:2470",
        host: "127.0.0.1:2470",
      },
    }],
    [["--collection", "app.bsky.feed.post", "--collection=app.bsky.feed.like"], {
      collections: ["app.bsky.feed.post", "app.bsky.feed.like"],
    }],
    [["--collection", "a.b.c", "--collection", "a.b.c", "--collection=a.b.c"], {
      collections: ["a.b.c"],
    }],
    [["--catch-up"], { catchUp: true }],
    [["--catch-up", "--confirm-source-switch"], { catchUp: true, confirmSourceSwitch: true }],
    [["--reset", "--collection", "a.b.c"], { reset: true, collections: ["a.b.c"] }],
    [["-h"], { help: true }],
    [["--help"], { help: true }],
  ];
  for (const [argv, partial] of cases) {
    const want = {
      source: undefined,
      collections: [],
      catchUp: false,
      confirmSourceSwitch: false,
      reset: false,
      help: false,
      ...partial,
    };
    assertEquals(parseBackfillArgs(argv, isNsid), want, argv.join(" "));
  }
});

Deno.test("parseBackfillArgs: rejected forms", () => {
  const cases: [string[], RegExp][] = [
    [["--collection", "not an nsid"], /--collection "not an nsid" is not a valid NSID/],
    [["--collection", "a.b"], /"a\.b" is not a valid NSID/],
    [["--collection=com.example.foo-bar"], /not a valid NSID/],
    [["--collection="], /"" is not a valid NSID/],
    [["--collection"], /--collection needs a value/],
    [["--source"], /--source needs a value/],
    [["--source", "not a host"], /"not a host"/],
    [["--reset"], /--reset needs at least one --collection/],
    [["--reset", "--catch-up"], /--reset needs at least one --collection/],
    [["--bogus"], /unknown argument "--bogus"/],
    [["app.bsky.feed.post"], /unknown argument "app\.bsky\.feed\.post"/],
    [["--Collection", "a.b.c"], /unknown argument/],
  ];
  for (const [argv, message] of cases) {
    assertThrows(() => parseBackfillArgs(argv, isNsid), (err: unknown) => {
      assert(err instanceof InputError, `${argv.join(" ")}: ${err}`);
      assert(message.test(err.message), `${argv.join(" ")}: ${err.message}`);
      return true;
    }, argv.join(" "));
  }
});

Deno.test({
  name: "parseBackfillArgs: a value given to a boolean flag is rejected, not ignored",
  fn() {
    for (
      const argv of [["--catch-up=false"], ["--reset=no", "--collection", "a.b.c"], [
        "--confirm-source-switch=yes",
      ]]
    ) {
      assertThrows(() => parseBackfillArgs(argv, isNsid), InputError, argv.join(" "));
    }
  },
});

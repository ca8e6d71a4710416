/** The service's configuration, parsed once from an environment object by a pure function. */
import { type FlagSpec, InputError, parseCommandLine } from "../util/mod.ts";
import { MAX_PAGE_LIMIT, parseSource, type Source, sourceAllowed } from "../source/mod.ts";
import type { LogLevel } from "../util/mod.ts";
// The URL parser alone: the stage's entry would load the index's native module into `status`.
import { parseStreamUrl, type StreamEndpoint } from "../stream/url.ts";

/** Everything the service reads from its environment, validated and typed. */
export interface Config {
  /** Postgres for progress; undefined means the embedded PGlite under `dataDir/pg`. */
  readonly databaseUrl?: string;
  readonly dataDir: string;
  readonly port: number;
  /** Interface the server binds to. */
  readonly host: string;
  /** Printable ASCII only (see parseConfig). */
  readonly adminPassword?: string;
  readonly source: Source;
  /** When set, the only hosts (`host` or `host:port`) a run may use as its source. */
  readonly sourceHosts?: readonly string[];
  readonly lexiconListUrl: string;
  readonly relayUrl: string;
  /** Collections paged at once. */
  readonly concurrency: number;
  /** `limit` asked of the source, 1..10000; a source that refuses more than 2000 gets 2000. */
  readonly pageLimit: number;
  /** Pause after each page of a collection (the original design's 100 ms; README, Design); 0 by default. */
  readonly pagePauseMs: number;
  /** Request-rate cap per source host, requests per second. */
  readonly maxRps: number;
  /** Per-request timeout towards the source. */
  readonly requestTimeoutMs: number;
  /** How long startup waits for Postgres to answer before giving up (exit 1). */
  readonly databaseWaitMs: number;
  readonly logLevel: LogLevel;
  /** The live stream to index (server mode), if any. */
  readonly liveStream?: StreamEndpoint;
  /** A live socket that sends nothing for this long is reconnected. */
  readonly liveIdleTimeoutMs: number;
  /** LevelDB table files kept open, and so mapped: with ~8 MiB files, the bound on mapped index pages. */
  readonly indexMaxOpenFiles: number;
  /**
   * MiB for the filter that spares a new collection's backfill pages their index reads (0: off);
   * unset: the mode's default (DEFAULTS.indexFreshFilterMb).
   */
  readonly indexFreshFilterMb?: number;
  /** Start a catch-up backfill by itself when the live stream says events were missed. */
  readonly liveAutoCatchUp: boolean;
}

/** Defaults, exported so the README and tests can name them. */
export const DEFAULTS = {
  dataDir: "./data",
  port: 8080,
  host: "0.0.0.0",
  source: "bsky.network",
  lexiconListUrl: "https://lexicon.garden/llms.txt",
  concurrency: 8,
  pageLimit: MAX_PAGE_LIMIT,
  pagePauseMs: 0,
  maxRps: 25,
  requestTimeoutMs: 30_000,
  databaseWaitMs: 60_000,
  logLevel: "info" as LogLevel,
  liveIdleTimeoutMs: 60_000,
  indexMaxOpenFiles: 1000,
  /** The server's memory goes to its HTTP front and young generation; a one-shot run can spare it. */
  indexFreshFilterMb: { oneShot: 32, server: 0 },
} as const;

const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** Parses the environment into a Config; throws InputError naming the variable and value at fault. */
export function parseConfig(env: Readonly<Record<string, string | undefined>>): Config {
  const get = (name: string) => {
    const v = env[name]?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
  const port = int(get("PORT"), "PORT", DEFAULTS.port, 1, 65535);
  const databaseUrl = get("DATABASE_URL");
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new InputError(
      "DATABASE_URL must start with postgres:// or postgresql://",
      "DATABASE_URL",
    );
  }
  const lexiconListUrl = get("LEXICON_LIST_URL") ?? DEFAULTS.lexiconListUrl;
  httpUrl(lexiconListUrl, "LEXICON_LIST_URL");
  const relayUrl = (get("RELAY_URL") ?? `http://localhost:${port}`).replace(/\/+$/, "");
  httpUrl(relayUrl, "RELAY_URL");
  const logLevel = (get("LOG_LEVEL") ?? DEFAULTS.logLevel).toLowerCase() as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new InputError(
      `LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(logLevel)}`,
      "LOG_LEVEL",
    );
  }
  let source: Source;
  try {
    source = parseSource(get("BACKFILL_SOURCE") ?? DEFAULTS.source);
  } catch (err) {
    throw new InputError(`BACKFILL_SOURCE: ${(err as Error).message}`, "BACKFILL_SOURCE", {
      cause: err,
    });
  }
  const liveUrl = get("LIVE_STREAM_URL");
  const autoCatchUp = (get("LIVE_AUTO_CATCH_UP") ?? "false").toLowerCase();
  if (!["true", "false", "1", "0"].includes(autoCatchUp)) {
    throw new InputError(
      `LIVE_AUTO_CATCH_UP must be true or false, got ${JSON.stringify(autoCatchUp)}`,
      "LIVE_AUTO_CATCH_UP",
    );
  }
  let liveStream: StreamEndpoint | undefined;
  try {
    liveStream = liveUrl === undefined ? undefined : parseStreamUrl(liveUrl);
  } catch (err) {
    throw new InputError(`LIVE_STREAM_URL: ${(err as Error).message}`, "LIVE_STREAM_URL", {
      cause: err,
    });
  }
  const sourceHosts = parseSourceHosts(get("BACKFILL_SOURCE_HOSTS"));
  if (sourceHosts && !sourceAllowed(source, sourceHosts)) {
    throw new InputError(
      `BACKFILL_SOURCE ${source.name} is not in BACKFILL_SOURCE_HOSTS (${sourceHosts.join(", ")})`,
      "BACKFILL_SOURCE",
    );
  }
  return {
    liveStream,
    indexMaxOpenFiles: int(
      get("INDEX_MAX_OPEN_FILES"),
      "INDEX_MAX_OPEN_FILES",
      DEFAULTS.indexMaxOpenFiles,
      64,
      100_000,
    ),
    indexFreshFilterMb: get("INDEX_FRESH_FILTER_MB") === undefined
      ? undefined
      : int(get("INDEX_FRESH_FILTER_MB"), "INDEX_FRESH_FILTER_MB", 0, 0, 4096),
    liveIdleTimeoutMs: int(
      get("LIVE_IDLE_TIMEOUT_MS"),
      "LIVE_IDLE_TIMEOUT_MS",
      DEFAULTS.liveIdleTimeoutMs,
      1_000,
      3_600_000,
    ),
    liveAutoCatchUp: autoCatchUp === "true" || autoCatchUp === "1",
    databaseUrl,
    dataDir: get("DATA_DIR") ?? DEFAULTS.dataDir,
    port,
    host: get("HOST") ?? DEFAULTS.host,
    adminPassword: adminPassword(get("RELAY_ADMIN_PASSWORD")),
    source,
    sourceHosts,
    lexiconListUrl,
    relayUrl,
    concurrency: int(
      get("BACKFILL_CONCURRENCY"),
      "BACKFILL_CONCURRENCY",
      DEFAULTS.concurrency,
      1,
      256,
    ),
    pageLimit: int(
      get("BACKFILL_PAGE_LIMIT"),
      "BACKFILL_PAGE_LIMIT",
      DEFAULTS.pageLimit,
      1,
      MAX_PAGE_LIMIT,
    ),
    pagePauseMs: int(get("BACKFILL_PAGE_PAUSE_MS"), "BACKFILL_PAGE_PAUSE_MS", 0, 0, 60_000),
    maxRps: num(get("BACKFILL_MAX_RPS"), "BACKFILL_MAX_RPS", DEFAULTS.maxRps, 0.1, 10_000),
    requestTimeoutMs: int(
      get("BACKFILL_REQUEST_TIMEOUT_MS"),
      "BACKFILL_REQUEST_TIMEOUT_MS",
      DEFAULTS.requestTimeoutMs,
      100,
      600_000,
    ),
    databaseWaitMs: int(
      get("DATABASE_WAIT_MS"),
      "DATABASE_WAIT_MS",
      DEFAULTS.databaseWaitMs,
      1_000,
      3_600_000,
    ),
    logLevel,
  };
}

/**
 * The admin token must be printable ASCII: HTTP header values are bytes, and curl (UTF-8), browsers
 * and Deno's fetch (which refuses non-Latin-1) would each send other characters differently, so a
 * token that works from one would fail from another. Refused at startup, naming only the position.
 */
function adminPassword(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const bad = [...v].findIndex((ch) => ch < " " || ch > "~");
  if (bad >= 0) {
    throw new InputError(
      `RELAY_ADMIN_PASSWORD must be printable ASCII (character ${
        bad + 1
      } is not); HTTP clients encode other characters differently`,
      "RELAY_ADMIN_PASSWORD",
    );
  }
  return v;
}

/** `BACKFILL_SOURCE_HOSTS`: comma-separated host names, optionally with a port. */
function parseSourceHosts(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  const hosts = v.split(",").map((h) => h.trim().toLowerCase()).filter((h) => h !== "");
  for (const h of hosts) {
    if (!/^[a-z0-9.:\[\]-]+$/.test(h)) {
      throw new InputError(
        `BACKFILL_SOURCE_HOSTS: ${JSON.stringify(h)} is not a host or host:port`,
        "BACKFILL_SOURCE_HOSTS",
      );
    }
  }
  if (hosts.length === 0) {
    throw new InputError("BACKFILL_SOURCE_HOSTS names no host", "BACKFILL_SOURCE_HOSTS");
  }
  return hosts;
}

function int(v: string | undefined, name: string, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new InputError(
      `${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`,
      name,
    );
  }
  return Number(v);
}

function num(v: string | undefined, name: string, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(v) || n < min || n > max) {
    throw new InputError(
      `${name} must be a number from ${min} to ${max}, got ${JSON.stringify(v)}`,
      name,
    );
  }
  return n;
}

function httpUrl(v: string, name: string): void {
  let url: URL;
  try {
    url = new URL(v);
  } catch (cause) {
    throw new InputError(`${name} is not a valid URL: ${JSON.stringify(v)}`, name, { cause });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InputError(`${name} must be an http(s) URL, got ${JSON.stringify(v)}`, name);
  }
}

/** What `deno task backfill` was asked to do. */
export interface BackfillArgs {
  readonly source?: Source;
  readonly collections: readonly string[];
  readonly catchUp: boolean;
  /** `--confirm-source-switch`: a catch-up may restart completed collections from another source. */
  readonly confirmSourceSwitch: boolean;
  readonly reset: boolean;
  readonly help: boolean;
}

/** The flags of `deno task backfill`. */
const BACKFILL_FLAGS: FlagSpec = {
  source: { type: "string" },
  collection: { type: "string", multiple: true },
  "catch-up": { type: "boolean" },
  "confirm-source-switch": { type: "boolean" },
  reset: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

/**
 * Parses `backfill` flags: `--source S`, `--collection NSID` (repeatable), `--catch-up`,
 * `--confirm-source-switch`, `--reset`, `--help`.
 */
export function parseBackfillArgs(
  args: readonly string[],
  isNsid: (s: string) => boolean,
): BackfillArgs {
  const { values } = parseCommandLine(args, BACKFILL_FLAGS);
  const collections: string[] = [];
  for (const c of (values.collection ?? []) as string[]) {
    if (!isNsid(c)) {
      throw new InputError(`--collection ${JSON.stringify(c)} is not a valid NSID`, "--collection");
    }
    if (!collections.includes(c)) collections.push(c);
  }
  const source = values.source === undefined ? undefined : parseSource(values.source as string);
  const reset = values.reset === true;
  if (reset && collections.length === 0) {
    throw new InputError("--reset needs at least one --collection", "--reset");
  }
  return {
    source,
    collections,
    catchUp: values["catch-up"] === true,
    confirmSourceSwitch: values["confirm-source-switch"] === true,
    reset,
    help: values.help === true,
  };
}

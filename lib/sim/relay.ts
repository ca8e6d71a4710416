/** A simulated source relay: collectiondir's `listReposByCollection` over a `SimWorld`, with faults. */

import http from "node:http";
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { isNsid } from "../util/mod.ts";
import { InputError } from "../util/mod.ts";
import { formatDid, makeWorld, mix32, seededRandom, SimWorld } from "./world.ts";

/** Per-collection ways of answering with a broken body. */
export type MalformedMode =
  | "bad-json"
  | "missing-repos"
  | "non-object-entries"
  | "huge-body"
  | "repeat-cursor"
  | "empty-with-cursor"
  | "invalid-dids";

/** Behaviour that can change at runtime through `setFaults`; all optional. */
export interface SimFaults {
  /** Added to every relay request (not llms.txt or health), plus up to `jitterMs` more. */
  latencyMs?: number;
  jitterMs?: number;
  /** Probability of a random 429. */
  rate429?: number;
  /** Seconds announced on 429s (default 1; the token bucket computes its own). */
  retryAfterSec?: number;
  /** Send Retry-After as an HTTP date instead of seconds. */
  retryAfterDate?: boolean;
  /** Which rate-limit headers a 429 carries (default "both"). */
  limitHeaders?: "retry-after" | "ratelimit" | "both" | "none";
  /** Whether answers that pass the token bucket carry RateLimit-* headers (default true). */
  okLimitHeaders?: boolean;
  /** A real token bucket: requests beyond it get 429; successes carry RateLimit-* headers. */
  maxRps?: number;
  /** Bucket size (default maxRps, i.e. one second of burst). */
  burst?: number;
  /** Probability of a proxy-style 502/503 with an HTML body. */
  rate5xx?: number;
  /** Probability of destroying the connection without a response. */
  rateReset?: number;
  /** Probability of never answering (until the client or `close` gives up). */
  hangRate?: number;
  /** Collections ("*" for all) answering 403 "Request forbidden by administrative rules". */
  forbidden?: Set<string> | string[];
  /** Collection ("*" for all) to malformed-body mode. */
  malformed?: Record<string, MalformedMode> | Map<string, MalformedMode>;
  /** Every Nth page is cut short but still carries a cursor (the server gave up early). */
  shortPageEvery?: number;
  /** Size of the "huge-body" body (default 512 MiB), streamed lazily. */
  hugeBodyBytes?: number;
  /** Upper clamp for `limit` (default 10000, like collectiondir). */
  maxLimit?: number;
  /** Serve `listReposByCollection` (default true; false answers 404 like relays without it). */
  listRepos?: boolean;
  /** Serve `/v1/listCollections` (default true). */
  listCollections?: boolean;
  /** listCollections hides collections with fewer DIDs (collectiondir's `clist-min-dids`, default 5). */
  listCollectionsMinDids?: number;
  /** NSIDs listed only in llms.txt (they answer empty pages). */
  llmsExtra?: string[];
  /** Replaces the generated llms.txt. */
  llmsTxt?: string;
  /** Status for llms.txt (default 200). */
  llmsStatus?: number;
}

/** Options for `startSimRelay`: the faults plus what is fixed for the server's life. */
export interface SimRelayOptions extends SimFaults {
  port?: number;
  hostname?: string;
  /** Defaults to `makeWorld({ seed })`. */
  world?: SimWorld;
  /** Seeds the fault RNG and the cursor secret (default: the world's seed). */
  seed?: number;
  /** Cursor signing secret; relays with different secrets reject each other's cursors. */
  cursorSecret?: string;
}

/** Live counters; `reset` and `hang` count requests that got no answer. */
export interface SimRelayStats {
  requests: number;
  byStatus: Record<string, number>;
  byCollection: Record<string, number>;
  inFlight: number;
  maxConcurrent: number;
  rateLimited: number;
  pages: number;
  didsServed: number;
  /** Most requests seen within any one-second window. */
  peakRps: number;
  /** Same, counting only requests answered 200. */
  peakOkRps: number;
}

/** A running simulated relay. */
export interface SimRelay {
  readonly url: string;
  readonly port: number;
  readonly world: SimWorld;
  readonly stats: SimRelayStats;
  /** Merges `partial` into the current faults (an `undefined` field turns that fault off). */
  setFaults(partial: SimFaults): void;
  /** Zeroes the counters. */
  resetStats(): void;
  /** The cursor this relay would issue for `position` in `collection`. */
  cursorFor(collection: string, position: number): string;
  close(): Promise<void>;
}

const LIST_REPOS = "/xrpc/com.atproto.sync.listReposByCollection";
const JSON_TYPE = "application/json; charset=utf-8";
const TEXT_TYPE = "text/plain; charset=utf-8";
const INVALID_DIDS = ["not-a-did", "did:plc:", "did:PLC:abc", "did:plc:has space", "", "did:web:"];
const RATE_LIMITED = '{"error":"RateLimitExceeded","message":"Rate Limit Exceeded"}';
const HUGE_CHUNK = Buffer.from('{"did":"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"},'.repeat(1500));

function newStats(): SimRelayStats {
  return {
    requests: 0,
    byStatus: {},
    byCollection: {},
    inFlight: 0,
    maxConcurrent: 0,
    rateLimited: 0,
    pages: 0,
    didsServed: 0,
    peakRps: 0,
    peakOkRps: 0,
  };
}

/** Most events within any trailing one-second window. */
class PeakWindow {
  #times: number[] = [];
  #head = 0;
  add(now: number): number {
    this.#times.push(now);
    while (this.#times[this.#head] <= now - 1000) this.#head++;
    if (this.#head > 4096) {
      this.#times = this.#times.slice(this.#head);
      this.#head = 0;
    }
    return this.#times.length - this.#head;
  }
}

/** Token bucket of `rate` per second holding up to `burst`. */
class TokenBucket {
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

/** FNV-1a, for cursor tags and authority DIDs; not cryptographic, only binding. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function cursorTag(secret: string, collection: string, position: number): string {
  const key = `${secret}|${collection}|${position}`;
  return fnv1a(key).toString(16).padStart(8, "0") +
    mix32(fnv1a(key + "#")).toString(16).padStart(8, "0");
}

/** Opaque cursor: base64url of `collection|position|tag`, valid only for that collection and secret. */
export function encodeCursor(secret: string, collection: string, position: number): string {
  const raw = `${collection}|${position}|${cursorTag(secret, collection, position)}`;
  return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The position a cursor encodes, or undefined when it is garbage or belongs elsewhere. */
export function decodeCursor(
  secret: string,
  collection: string,
  cursor: string,
): number | undefined {
  if (!/^[A-Za-z0-9_-]{1,2000}$/.test(cursor)) return undefined;
  let raw: string;
  try {
    raw = atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
  } catch {
    return undefined;
  }
  const parts = raw.split("|");
  if (parts.length !== 3 || parts[0] !== collection || !/^\d{1,15}$/.test(parts[1])) {
    return undefined;
  }
  const position = Number(parts[1]);
  return parts[2] === cursorTag(secret, collection, position) ? position : undefined;
}

/** lexicon.garden-style llms.txt: every collection linked (some with /docs, some twice) among noise. */
export function renderLlmsTxt(world: SimWorld, extra: string[] = []): string {
  const authorityDid = (nsid: string) =>
    formatDid(fnv1a(nsid.slice(0, nsid.lastIndexOf("."))), world.salt);
  const lines = [
    "# Lexicon Garden",
    "",
    "> Lexicon Garden indexes AT Protocol lexicon schemas published across the network.",
    "",
    "- [About](https://lexicon.garden/about)",
    "- [Search](https://lexicon.garden/search?q=app.bsky.feed)",
    "- [Lexicon spec](https://atproto.com/specs/lexicon)",
    "",
    "## Lexicons",
    "",
  ];
  [...world.collections(), ...extra].forEach((nsid, i) => {
    const base = `https://lexicon.garden/lexicon/${authorityDid(nsid)}/${nsid}`;
    lines.push(`- [${nsid}](${base}${i % 3 === 1 ? "/docs" : ""}): record schema`);
    if (i % 5 === 2) lines.push(`- [${nsid} (docs)](${base}/docs)`);
  });
  lines.push(
    "",
    "## Elsewhere",
    "",
    "- [Broken entry](https://lexicon.garden/lexicon/did:plc:x/not an nsid)",
    "- [Empty entry](https://lexicon.garden/lexicon/did:plc:x/)",
    "- [Identity](https://lexicon.garden/identity/did:plc:x)",
    "- [app.bsky.feed.like elsewhere](https://docs.bsky.app/docs/api/app-bsky-feed-like)",
    "- [Source](https://github.com/example/lexicon-garden)",
    "",
  );
  return lines.join("\n");
}

/** JSON array of `{"did":…}` objects; world-formatted DIDs need no escaping, explicit ones might. */
function reposJson(dids: string[], raw: boolean): string {
  if (dids.length === 0) return "[]";
  if (!raw) return '[{"did":"' + dids.join('"},{"did":"') + '"}]';
  return "[" + dids.map((d) => '{"did":' + JSON.stringify(d) + "}").join(",") + "]";
}

function pageJson(repos: string, cursor: string | undefined, key = "repos"): string {
  return cursor === undefined ? `{"${key}":${repos}}` : `{"cursor":"${cursor}","${key}":${repos}}`;
}

/** Resolves after `ms`, or as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Resolves on 'drain' or abort, removing both listeners. */
function drained(res: http.ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    res.on("drain", done);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** collectiondir's getLimit for listCollections: unparsable means the default. */
function goLimit(s: string | null, min: number, def: number, max: number): number {
  if (!s || !/^[+-]?\d+$/.test(s)) return def;
  return Math.min(max, Math.max(min, Number(s)));
}

function badRequest(message: string): [number, string] {
  return [400, JSON.stringify({ error: "InvalidRequest", message })];
}

interface Faults extends Omit<SimFaults, "forbidden" | "malformed"> {
  forbidden: Set<string>;
  malformed: Map<string, MalformedMode>;
}

class SimRelayServer implements SimRelay {
  readonly stats = newStats();
  url = "";
  port = 0;
  #faults: Faults = { forbidden: new Set(), malformed: new Map() };
  #bucket: TokenBucket | undefined;
  #rand: () => number;
  #secret: string;
  #pageCount = 0;
  #all = new PeakWindow();
  #ok = new PeakWindow();
  #inflight = new Set<AbortController>();
  #server: http.Server;

  constructor(readonly world: SimWorld, opts: SimRelayOptions) {
    const seed = opts.seed ?? world.seed;
    this.#rand = seededRandom(mix32(seed ^ 0xfa0175));
    this.#secret = opts.cursorSecret ?? `sim-relay-${seed}`;
    const { world: _w, port: _p, hostname: _h, seed: _s, cursorSecret: _c, ...faults } = opts;
    this.setFaults(faults);
    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch((err) => {
        if (!res.headersSent && !res.destroyed) this.#send(res, 500, TEXT_TYPE, "oops");
        else res.destroy();
        console.error("sim relay handler failed:", err);
      });
    });
  }

  listen(port: number, hostname: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(port, hostname, () => {
        this.port = (this.#server.address() as { port: number }).port;
        this.url = `http://${hostname}:${this.port}`;
        resolve();
      });
    });
  }

  setFaults(partial: SimFaults): void {
    const next: Faults = { ...this.#faults, ...partial } as Faults;
    if ("forbidden" in partial) next.forbidden = new Set(partial.forbidden ?? []);
    if ("malformed" in partial) {
      const m = partial.malformed;
      next.malformed = new Map(m instanceof Map ? m : Object.entries(m ?? {}));
    }
    if ("maxRps" in partial || "burst" in partial) {
      this.#bucket = next.maxRps && next.maxRps > 0
        ? new TokenBucket(next.maxRps, Math.max(1, next.burst ?? next.maxRps))
        : undefined;
    }
    this.#faults = next;
  }

  resetStats(): void {
    Object.assign(this.stats, newStats(), { inFlight: this.stats.inFlight });
    this.#all = new PeakWindow();
    this.#ok = new PeakWindow();
  }

  cursorFor(collection: string, position: number): string {
    return encodeCursor(this.#secret, collection, position);
  }

  async close(): Promise<void> {
    for (const ctl of this.#inflight) ctl.abort();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  #count(status: number | string): void {
    const key = String(status);
    this.stats.byStatus[key] = (this.stats.byStatus[key] ?? 0) + 1;
    if (status === 429) this.stats.rateLimited++;
    if (status === 200) {
      this.stats.peakOkRps = Math.max(this.stats.peakOkRps, this.#ok.add(performance.now()));
    }
  }

  #send(
    res: http.ServerResponse,
    status: number,
    type: string,
    body: string,
    headers: Record<string, string> = {},
  ): void {
    if (res.destroyed || res.writableEnded) return;
    this.#count(status);
    headers["content-type"] = type;
    headers["content-length"] = String(Buffer.byteLength(body));
    res.writeHead(status, headers);
    res.end(body);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const stats = this.stats;
    stats.requests++;
    stats.peakRps = Math.max(stats.peakRps, this.#all.add(performance.now()));
    stats.maxConcurrent = Math.max(stats.maxConcurrent, ++stats.inFlight);
    const ctl = new AbortController();
    this.#inflight.add(ctl);
    res.once("close", () => {
      stats.inFlight--;
      this.#inflight.delete(ctl);
      ctl.abort();
    });
    const url = new URL(req.url ?? "/", "http://sim");
    const path = url.pathname;
    if (req.method !== "GET" && req.method !== "HEAD") {
      return this.#send(res, 405, JSON_TYPE, '{"message":"Method Not Allowed"}');
    }
    if (path === "/xrpc/_health") return this.#send(res, 200, JSON_TYPE, '{"version":"sim"}');
    if (path === "/_health") return this.#send(res, 200, TEXT_TYPE, "ok");
    if (path === "/llms.txt") return this.#llms(res);
    const f = this.#faults;
    const isList = path === LIST_REPOS && f.listRepos !== false;
    if (!isList && !(path === "/v1/listCollections" && f.listCollections !== false)) {
      return this.#send(res, 404, JSON_TYPE, '{"message":"Not Found"}');
    }
    const collection = isList ? url.searchParams.get("collection") ?? "" : "";
    if (isList) stats.byCollection[collection] = (stats.byCollection[collection] ?? 0) + 1;
    if (!(await this.#injectFault(req, res, ctl.signal))) return;
    if (!isList) return this.#listCollections(url.searchParams, res);
    if (f.forbidden.has(collection) || f.forbidden.has("*")) {
      return this.#send(res, 403, TEXT_TYPE, "Request forbidden by administrative rules");
    }
    const mode = f.malformed.get(collection) ?? f.malformed.get("*");
    if (mode === "huge-body") return this.#huge(res, ctl.signal);
    const [status, body] = this.#listRepos(url.searchParams, collection, mode);
    const headers = status === 200 && this.#okHeaders() ? this.#bucket!.headers() : {};
    this.#send(res, status, JSON_TYPE, body, headers);
  }

  /** Applies rate limits, latency and random faults; false when the request got its (non-)answer. */
  async #injectFault(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    signal: AbortSignal,
  ): Promise<boolean> {
    const f = this.#faults;
    // The edge limiter answers before any latency, like a proxy in front of the service.
    if (this.#bucket && !this.#bucket.take()) {
      const h = this.#bucket.headers();
      this.#tooMany(res, Number(h["ratelimit-reset"]), h);
      return false;
    }
    // Always draw the same numbers so one request's faults do not shift the next one's.
    const [rReset, rHang, r5xx, r429, rJitter, rPick] = [0, 0, 0, 0, 0, 0].map(this.#rand);
    const delay = (f.latencyMs ?? 0) + (f.jitterMs ?? 0) * rJitter;
    if (delay > 0) await sleep(delay, signal);
    if (signal.aborted) return false;
    if (rReset < (f.rateReset ?? 0)) {
      this.#count("reset");
      req.socket.destroy();
      return false;
    }
    if (rHang < (f.hangRate ?? 0)) {
      this.#count("hang");
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
      return false;
    }
    if (r5xx < (f.rate5xx ?? 0)) {
      const [code, text] = rPick < 0.5
        ? [502, "Bad Gateway"]
        : [503, "Service Temporarily Unavailable"];
      const html = `<html>\r\n<head><title>${code} ${text}</title></head>\r\n<body>\r\n` +
        `<center><h1>${code} ${text}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`;
      this.#send(res, code, "text/html", html);
      return false;
    }
    if (r429 < (f.rate429 ?? 0)) {
      const sec = f.retryAfterSec ?? 1;
      this.#tooMany(res, sec, {
        "ratelimit-limit": String(Math.round(f.maxRps ?? 3000)),
        "ratelimit-remaining": "0",
        "ratelimit-reset": String(sec),
      });
      return false;
    }
    return true;
  }

  /** A 429 carrying Retry-After and/or the RateLimit-* headers, as `limitHeaders` asks. */
  #tooMany(res: http.ServerResponse, sec: number, ratelimit: Record<string, string>): void {
    const which = this.#faults.limitHeaders ?? "both";
    const headers: Record<string, string> = {};
    if (which === "both" || which === "retry-after") {
      headers["retry-after"] = this.#faults.retryAfterDate
        ? new Date(Date.now() + sec * 1000).toUTCString()
        : String(sec);
    }
    if (which === "both" || which === "ratelimit") Object.assign(headers, ratelimit);
    this.#send(res, 429, JSON_TYPE, RATE_LIMITED, headers);
  }

  #listRepos(q: URLSearchParams, collection: string, mode?: MalformedMode): [number, string] {
    if (!isNsid(collection)) {
      return badRequest(`bad collection nsid: ${JSON.stringify(collection)}`);
    }
    const rawLimit = q.get("limit");
    if (rawLimit && !/^[+-]?\d+$/.test(rawLimit)) return badRequest("limit must be an integer");
    const limit = rawLimit
      ? Math.min(this.#faults.maxLimit ?? 10000, Math.max(1, Number(rawLimit)))
      : Math.min(this.#faults.maxLimit ?? 10000, 500);
    const rawCursor = q.get("cursor");
    let position = 0;
    if (rawCursor) {
      const decoded = decodeCursor(this.#secret, collection, rawCursor);
      if (decoded === undefined) return badRequest("invalid cursor");
      position = decoded;
    }
    const size = this.world.size(collection);
    const start = Math.min(position, size);
    let end = Math.min(start + limit, size);
    let next = end - start === limit ? end : undefined;
    const every = this.#faults.shortPageEvery ?? 0;
    if (every > 0 && ++this.#pageCount % every === 0 && end - start > 1) {
      end = start + Math.ceil((end - start) / 2);
      next = end;
    }
    if (mode === "repeat-cursor") next = rawCursor ? position : end;
    if (mode === "empty-with-cursor" && next === undefined) {
      next = start === end ? position + 1 : end;
    }
    const { dids, raw } = this.world.slice(collection, start, end);
    const cursor = next === undefined ? undefined : this.cursorFor(collection, next);
    this.stats.pages++;
    this.stats.didsServed += dids.length;
    switch (mode) {
      case "bad-json": {
        // Any strict prefix of a JSON object is invalid JSON.
        const body = pageJson(reposJson(dids, raw), cursor);
        return [200, body.slice(0, Math.max(1, Math.floor(body.length / 2)))];
      }
      case "missing-repos":
        return [200, pageJson(JSON.stringify(dids), cursor, "dids")];
      case "non-object-entries":
        return [200, pageJson(JSON.stringify(dids), cursor)];
      case "invalid-dids": {
        const mixed: string[] = [];
        dids.forEach((d, i) => {
          if ((start + i) % 7 === 3) mixed.push(INVALID_DIDS[(start + i) % INVALID_DIDS.length]);
          mixed.push(d);
        });
        return [200, pageJson(reposJson(mixed, true), cursor)];
      }
    }
    return [200, pageJson(reposJson(dids, raw), cursor)];
  }

  /** Streams `{"repos":[…]}` of `hugeBodyBytes` without a length, honouring backpressure. */
  async #huge(res: http.ServerResponse, signal: AbortSignal): Promise<void> {
    const total = this.#faults.hugeBodyBytes ?? 512 * 1024 * 1024;
    this.#count(200);
    res.writeHead(200, { "content-type": JSON_TYPE });
    res.write('{"repos":[');
    for (let sent = 0; sent < total && !signal.aborted; sent += HUGE_CHUNK.length) {
      if (!res.write(HUGE_CHUNK)) await drained(res, signal);
    }
    if (!signal.aborted) res.end('{"did":"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"}]}');
  }

  /** collectiondir's shape, including its quirk: past `limit` it keeps going and the cursor is the last name. */
  #listCollections(q: URLSearchParams, res: http.ServerResponse): void {
    const counts: Record<string, number> = {};
    let cursor = "";
    const only = q.getAll("c");
    if (only.length > 0) {
      for (const c of [...new Set(only)].sort()) {
        if (this.world.has(c)) counts[c] = this.world.size(c);
      }
    } else {
      const limit = goLimit(q.get("limit"), 50, 500, 1000);
      const after = q.get("cursor") ?? "";
      const minDids = this.#faults.listCollectionsMinDids ?? 5;
      let n = 0;
      for (const c of this.world.collections().sort()) {
        if (after && c <= after) continue;
        const size = this.world.size(c);
        if (size < minDids) continue;
        counts[c] = size;
        if (++n >= limit) cursor = c;
      }
    }
    const headers = this.#okHeaders() ? this.#bucket!.headers() : {};
    this.#send(res, 200, JSON_TYPE, JSON.stringify({ collections: counts, cursor }), headers);
  }

  #okHeaders(): boolean {
    return this.#bucket !== undefined && this.#faults.okLimitHeaders !== false;
  }

  #llms(res: http.ServerResponse): void {
    const f = this.#faults;
    const status = f.llmsStatus ?? 200;
    if (status !== 200) return this.#send(res, status, TEXT_TYPE, `status ${status}`);
    this.#send(
      res,
      200,
      "text/markdown; charset=utf-8",
      f.llmsTxt ?? renderLlmsTxt(this.world, f.llmsExtra),
    );
  }
}

/** Starts a simulated relay on 127.0.0.1 (port 0 picks a free one). */
export async function startSimRelay(opts: SimRelayOptions = {}): Promise<SimRelay> {
  const relay = new SimRelayServer(opts.world ?? makeWorld({ seed: opts.seed }), opts);
  await relay.listen(opts.port ?? 0, opts.hostname ?? "127.0.0.1");
  return relay;
}

const DEFAULT_LARGE = [20000, 12000, 8000, 5000, 2000];
const USAGE =
  `usage: sim-relay [flags]   (each flag also reads SIM_RELAY_<FLAG>, e.g. SIM_RELAY_PORT)
  --port N (2583)  --hostname H (127.0.0.1)  --seed N (1)
  --scale X (1; large collections are X × ${
    DEFAULT_LARGE.join("/")
  } DIDs)  --collections N (40)  --tail-max N (60)
  --latency MS  --jitter MS  --rate429 P  --retry-after S  --retry-after-date  --max-rps N
  --rate5xx P  --rate-reset P  --hang-rate P  --short-page-every N  --max-limit N (10000)
  --forbidden a.b.c,d.e.f  --malformed nsid=mode,...  --llms-extra a.b.c,...  --no-list-collections`;
const NUMERIC_FLAGS = [
  "port",
  "seed",
  "scale",
  "collections",
  "tail-max",
  "latency",
  "jitter",
  "rate429",
  "retry-after",
  "max-rps",
  "rate5xx",
  "rate-reset",
  "hang-rate",
  "short-page-every",
  "max-limit",
] as const;
const STRING_FLAGS = ["hostname", "forbidden", "malformed", "llms-extra"] as const;
const BOOL_FLAGS = ["retry-after-date", "no-list-collections", "help"] as const;
const MODES = [
  "bad-json",
  "missing-repos",
  "non-object-entries",
  "huge-body",
  "repeat-cursor",
  "empty-with-cursor",
  "invalid-dids",
];

/** Flags from `args`, falling back to SIM_RELAY_* in `env`. */
function readFlags(args: string[], env: Record<string, string | undefined>) {
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const k of [...NUMERIC_FLAGS, ...STRING_FLAGS]) options[k] = { type: "string" };
  for (const k of BOOL_FLAGS) options[k] = { type: "boolean" };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new InputError(`sim-relay: ${(err as Error).message}\n${USAGE}`, undefined, {
      cause: err,
    });
  }
  const get = (k: string) => values[k] ?? env[`SIM_RELAY_${k.toUpperCase().replace(/-/g, "_")}`];
  const num = (k: string): number | undefined => {
    const v = get(k);
    if (v === undefined || v === "") return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) {
      throw new InputError(`sim-relay: --${k} must be a number >= 0`, k);
    }
    return n;
  };
  const list = (k: string) => String(get(k) ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  const bool = (k: string) => get(k) === true || /^(1|true|yes)$/i.test(String(get(k) ?? ""));
  return { num, list, bool, str: (k: string) => get(k) as string | undefined };
}

/** Builds relay options from CLI flags and SIM_RELAY_* variables. */
export function simRelayOptionsFromArgs(
  args: string[],
  env: Record<string, string | undefined>,
): SimRelayOptions | "help" {
  const { num, list, bool, str } = readFlags(args, env);
  if (bool("help")) return "help";
  const malformed: Record<string, MalformedMode> = {};
  for (const pair of list("malformed")) {
    const [nsid, mode] = pair.split("=");
    if (!mode || !MODES.includes(mode)) {
      throw new InputError(
        `sim-relay: --malformed wants nsid=mode, mode one of ${MODES.join(", ")}`,
      );
    }
    malformed[nsid] = mode as MalformedMode;
  }
  const seed = num("seed") ?? 1;
  const scale = num("scale") ?? 1;
  const world = makeWorld({
    seed,
    collections: num("collections"),
    tailMax: num("tail-max"),
    largeSizes: DEFAULT_LARGE.map((n) => Math.round(n * scale)),
  });
  return {
    world,
    seed,
    port: num("port") ?? 2583,
    hostname: str("hostname") ?? "127.0.0.1",
    latencyMs: num("latency"),
    jitterMs: num("jitter"),
    rate429: num("rate429"),
    retryAfterSec: num("retry-after"),
    retryAfterDate: bool("retry-after-date"),
    maxRps: num("max-rps"),
    rate5xx: num("rate5xx"),
    rateReset: num("rate-reset"),
    hangRate: num("hang-rate"),
    shortPageEvery: num("short-page-every"),
    maxLimit: num("max-limit"),
    forbidden: list("forbidden"),
    malformed,
    llmsExtra: list("llms-extra"),
    listCollections: !bool("no-list-collections"),
  };
}

/** `deno task sim-relay`: serves until `signal` aborts (or SIGINT/SIGTERM when none is given). */
export async function runSimRelayCli(
  args: string[],
  env: Record<string, string | undefined>,
  io: { signal?: AbortSignal; out?: (line: string) => void } = {},
): Promise<number> {
  const out = io.out ?? ((line: string) => console.log(line));
  const opts = simRelayOptionsFromArgs(args, env);
  if (opts === "help") {
    out(USAGE);
    return 0;
  }
  const relay = await startSimRelay(opts);
  const t = relay.world.totals();
  const largest = relay.world.collections()
    .map((c) => [c, relay.world.size(c)] as const)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 5)
    .map(([c, n]) => `${c} ${n}`);
  out(`sim relay listening on ${relay.url}`);
  out(
    `world: seed ${relay.world.seed}, ${t.collections} collections, ${t.entries} entries, ${t.accounts} accounts`,
  );
  out(`largest: ${largest.join(", ")}`);
  await waitForStop(io.signal);
  await relay.close();
  const s = relay.stats;
  out(
    `stopped: ${s.requests} requests, ${s.pages} pages, ${s.didsServed} DIDs, ${
      JSON.stringify(s.byStatus)
    }`,
  );
  return 0;
}

function waitForStop(signal?: AbortSignal): Promise<void> {
  if (signal) {
    return new Promise((resolve) => {
      if (signal.aborted) resolve();
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
  }
  return new Promise((resolve) => {
    const sigs: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
    const stop = () => {
      for (const s of sigs) Deno.removeSignalListener(s, stop);
      resolve();
    };
    for (const s of sigs) Deno.addSignalListener(s, stop);
  });
}

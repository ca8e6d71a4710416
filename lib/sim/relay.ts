/** A simulated source relay: collectiondir's `listReposByCollection` over a `SimWorld`, with faults. */

import http from "node:http";
import { Buffer } from "node:buffer";
import { isNsid, sleep } from "../util/mod.ts";
import { decodeSimCursor, encodeSimCursor } from "./cursor.ts";
import { drawFault, type Faults, mergeFaults, noFaults, type SimFaults } from "./faults.ts";
import type { MalformedMode } from "./faults.ts";
import { renderLlmsTxt } from "./llms_txt.ts";
import { newStats, PeakWindow, type SimRelayStats } from "./stats.ts";
import { TokenBucket } from "./token_bucket.ts";
import { makeWorld, mix32, seededRandom, SimWorld } from "./world.ts";
import { SimStream, type SimStreamOptions } from "./stream.ts";

export type { MalformedMode, OverLimit, SimFaults } from "./faults.ts";
export type { SimRelayStats } from "./stats.ts";

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
  /** The live streams (firehose and Jetstream) over the world; see lib/sim/stream.ts. */
  stream?: SimStreamOptions;
}

/** A running simulated relay. */
export interface SimRelay {
  readonly url: string;
  readonly port: number;
  readonly world: SimWorld;
  readonly stats: SimRelayStats;
  /** The live streams at `/xrpc/com.atproto.sync.subscribeRepos` and `/subscribe`. */
  readonly stream: SimStream;
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

/** JSON array of `{"did":…}` objects; world-formatted DIDs need no escaping, explicit ones might. */
function reposJson(dids: string[], raw: boolean): string {
  if (dids.length === 0) return "[]";
  if (!raw) return '[{"did":"' + dids.join('"},{"did":"') + '"}]';
  return "[" + dids.map((d) => '{"did":' + JSON.stringify(d) + "}").join(",") + "]";
}

function pageJson(repos: string, cursor: string | undefined, key = "repos"): string {
  return cursor === undefined ? `{"${key}":${repos}}` : `{"cursor":"${cursor}","${key}":${repos}}`;
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

class SimRelayServer implements SimRelay {
  readonly stats = newStats();
  url = "";
  port = 0;
  #faults: Faults = noFaults();
  #bucket: TokenBucket | undefined;
  #rand: () => number;
  #secret: string;
  #pageCount = 0;
  #all = new PeakWindow();
  #ok = new PeakWindow();
  #inflight = new Set<AbortController>();
  #server: http.Server;
  readonly stream: SimStream;

  constructor(readonly world: SimWorld, opts: SimRelayOptions) {
    const seed = opts.seed ?? world.seed;
    this.#rand = seededRandom(mix32(seed ^ 0xfa0175));
    this.#secret = opts.cursorSecret ?? `sim-relay-${seed}`;
    const { world: _w, port: _p, hostname: _h, seed: _s, cursorSecret: _c, stream, ...faults } =
      opts;
    this.stream = new SimStream(world, { seed, ...stream });
    this.setFaults(faults);
    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch((err) => {
        if (!res.headersSent && !res.destroyed) this.#send(res, 500, TEXT_TYPE, "oops");
        else res.destroy();
        console.error("sim relay handler failed:", err);
      });
    });
    this.#server.on("upgrade", (req, socket) => {
      if (!this.stream.handleUpgrade(req, socket)) {
        socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
      }
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
    const next = mergeFaults(this.#faults, partial);
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
    return encodeSimCursor(this.#secret, collection, position);
  }

  async close(): Promise<void> {
    this.stream.close();
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
    stats.byPath[path] = (stats.byPath[path] ?? 0) + 1;
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
    const { delayMs, outcome } = drawFault(f, this.#rand);
    if (delayMs > 0) await sleep(delayMs, signal).catch(() => {});
    if (signal.aborted) return false;
    switch (outcome.kind) {
      case "reset":
        this.#count("reset");
        req.socket.destroy();
        return false;
      case "hang":
        this.#count("hang");
        await new Promise<void>((resolve) => {
          if (signal.aborted) resolve();
          signal.addEventListener("abort", () => resolve(), { once: true });
        });
        return false;
      case "5xx":
        this.#send(res, outcome.status, "text/html", outcome.html);
        return false;
      case "429":
        this.#tooMany(res, outcome.retryAfterSec, outcome.ratelimit);
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
    const max = this.#faults.maxLimit ?? 10000;
    if (this.#faults.overLimit === "reject" && rawLimit && Number(rawLimit) > max) {
      return badRequest(`limit must be less than or equal to ${max}`);
    }
    const limit = Math.min(max, rawLimit ? Math.max(1, Number(rawLimit)) : 500);
    const rawCursor = q.get("cursor");
    let position = 0;
    if (rawCursor) {
      const decoded = decodeSimCursor(this.#secret, collection, rawCursor);
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

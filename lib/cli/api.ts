/** The status CLI's client for the admin API: requests, failures phrased for the operator, the body. */
import { errorMessage } from "../util/mod.ts";
import { formatDuration } from "../status/mod.ts";
import { clip } from "./text.ts";

/** The current run as the server reports it; `null` in {@link BackfillStatus.run} when idle. */
export interface RunInfo {
  source: string;
  mode: string;
  started_at: string;
  collections: number;
  dids_per_sec?: number;
  pages_per_sec?: number;
  eta_seconds?: number;
}

/** One collection's backfill progress as the server reports it. */
export interface CollectionStatus {
  collection: string;
  source?: string;
  imported: number;
  new: number;
  completed: boolean;
  active: boolean;
  attempts: number;
  updated_at?: string;
  estimated_total?: number;
  error?: string;
  next_retry_at?: string;
  cursor?: string;
}

/** The body of `GET /admin/backfill-collections`. */
export interface BackfillStatus {
  running: boolean;
  run: RunInfo | null;
  total: number;
  completed: number;
  in_progress: number;
  failed: number;
  total_imported: number;
  total_new: number;
  collections: CollectionStatus[];
  live?: LiveInfo | null;
}

/** The live stream as the server reports it (a subset of its `live` object). */
export interface LiveInfo {
  url: string;
  kind: string;
  connected: boolean;
  cursor: number | null;
  lag_seconds: number | null;
  lag_p99_seconds: number | null;
  events_per_sec: number;
  pairs_added: number;
  pairs_removed: number;
  accounts_deleted: number;
  reconnects: number;
  last_error: string | null;
  catch_up_needed: boolean;
  catch_up_reason: string | null;
}

/** The admin API the CLI talks to. */
export const STATUS_PATH = "/admin/backfill-collections";

/** A failure already phrased for the operator; `transient` ones are worth retrying in `watch`. */
export class CliFailure extends Error {
  constructor(message: string, readonly transient = false) {
    super(message);
  }
}

/** The operator pressed Ctrl-C (the caller's signal aborted). */
export class Interrupted extends Error {}

/** What every command needs: where the server is, how to talk to it, where lines go. */
export interface Context {
  base: URL;
  shownUrl: string;
  password?: string;
  fetch: typeof fetch;
  out: (line: string) => void;
  err: (line: string) => void;
  isTty: boolean;
  columns: number;
  signal?: AbortSignal;
  now: () => number;
  intervalMs: number;
  timeoutMs: number;
}

/** A response read to the end: its status, text and the text parsed as JSON (if it was). */
export interface ApiResponse {
  status: number;
  text: string;
  body: unknown;
}

/** GETs and parses the status document. */
export async function fetchStatus(ctx: Context): Promise<BackfillStatus> {
  const res = await request(ctx, "GET", STATUS_PATH);
  expectOk(ctx, res);
  return parseStatus(res.body);
}

/** One admin API request; network failures and timeouts become {@link CliFailure}s. */
export async function request(
  ctx: Context,
  method: string,
  path: string,
  params: [string, string][] = [],
): Promise<ApiResponse> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (ctx.password) headers.authorization = `Bearer ${ctx.password}`;
  // A plain timer rather than AbortSignal.timeout so nothing outlives the call (test sanitizers).
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), ctx.timeoutMs);
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, timeout.signal]) : timeout.signal;
  try {
    const res = await ctx.fetch(endpoint(ctx.base, path, params), { method, headers, signal });
    const text = await res.text();
    return checkAuth(ctx, { status: res.status, text, body: parseJson(text) });
  } catch (e) {
    if (e instanceof CliFailure) throw e;
    if (ctx.signal?.aborted) throw new Interrupted();
    if (timeout.signal.aborted) {
      const limit = formatDuration(ctx.timeoutMs / 1000);
      throw new CliFailure(
        `backfill server at ${ctx.shownUrl} did not answer within ${limit}`,
        true,
      );
    }
    const reason = describeNetworkError(e);
    throw new CliFailure(`cannot reach backfill server at ${ctx.shownUrl} (${reason})`, true);
  } finally {
    clearTimeout(timer);
  }
}

function endpoint(base: URL, path: string, params: [string, string][]): URL {
  const url = new URL(base);
  url.pathname = url.pathname.replace(/\/+$/, "") + path;
  for (const [key, value] of params) url.searchParams.append(key, value);
  return url;
}

function checkAuth(ctx: Context, res: ApiResponse): ApiResponse {
  if (res.status === 401) {
    throw new CliFailure(
      `unauthorized: RELAY_ADMIN_PASSWORD is missing or wrong for ${ctx.shownUrl}`,
    );
  }
  if (res.status === 403) {
    throw new CliFailure(
      `the admin API is not configured on the server at ${ctx.shownUrl} ` +
        `(${serverMessage(res)}): set RELAY_ADMIN_PASSWORD in the server's environment`,
    );
  }
  return res;
}

/** Throws a {@link CliFailure} for any non-2xx answer. */
export function expectOk(ctx: Context, res: ApiResponse): void {
  if (res.status >= 200 && res.status < 300) return;
  if (res.status === 404) {
    throw new CliFailure(`the server at ${ctx.shownUrl} has no backfill admin API (404)`);
  }
  throw new CliFailure(
    `server at ${ctx.shownUrl} answered ${res.status}: ${serverMessage(res)}`,
    res.status >= 500,
  );
}

/** Turns fetch's nested connect errors into a few words ("connection refused"). */
function describeNetworkError(e: unknown): string {
  const chain: string[] = [];
  for (let cur: unknown = e; cur !== undefined && chain.length < 5; cur = (cur as Error).cause) {
    chain.push(errorMessage(cur));
    if (!(cur instanceof Error)) break;
  }
  const text = chain.join(" | ");
  const known: [RegExp, string][] = [
    [/connection refused/i, "connection refused"],
    [/dns error|failed to lookup|name or service not known|no such host/i, "host not found"],
    [/connection reset/i, "connection reset"],
    [/network is unreachable|no route to host/i, "network unreachable"],
    [/certificate|tls|ssl/i, "TLS handshake failed"],
    [/timed out/i, "timed out"],
  ];
  const hit = known.find(([re]) => re.test(text));
  return hit ? hit[1] : clip(chain[chain.length - 1] ?? "unknown error");
}

/** The server's own words for an answer: its JSON message or error, else the text. */
export function serverMessage(res: ApiResponse): string {
  if (isRecord(res.body)) {
    const message = str(res.body.message) ?? str(res.body.error);
    if (message) return clip(message);
  }
  return clip(res.text) || `HTTP ${res.status}`;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// ---- parsing the status body ----

function parseStatus(body: unknown): BackfillStatus {
  if (!isRecord(body) || !Array.isArray(body.collections)) {
    throw new CliFailure("unexpected answer from the server: not a backfill status");
  }
  return {
    running: body.running === true,
    run: isRecord(body.run) ? parseRun(body.run) : null,
    total: num(body.total),
    completed: num(body.completed),
    in_progress: num(body.in_progress),
    failed: num(body.failed),
    total_imported: num(body.total_imported),
    total_new: num(body.total_new),
    collections: body.collections.filter(isRecord).map(parseCollection),
    live: isRecord(body.live) ? parseLive(body.live) : null,
  };
}

function parseLive(l: Record<string, unknown>): LiveInfo {
  return {
    url: str(l.url) ?? "?",
    kind: str(l.kind) ?? "?",
    connected: l.connected === true,
    cursor: optNum(l.cursor) ?? null,
    lag_seconds: optNum(l.lag_seconds) ?? null,
    lag_p99_seconds: optNum(l.lag_p99_seconds) ?? null,
    events_per_sec: num(l.events_per_sec),
    pairs_added: num(l.pairs_added),
    pairs_removed: num(l.pairs_removed),
    accounts_deleted: num(l.accounts_deleted),
    reconnects: num(l.reconnects),
    last_error: str(l.last_error) ?? null,
    catch_up_needed: l.catch_up_needed === true,
    catch_up_reason: str(l.catch_up_reason) ?? null,
  };
}

function parseRun(run: Record<string, unknown>): RunInfo {
  return {
    source: str(run.source) ?? "?",
    mode: str(run.mode) ?? "?",
    started_at: str(run.started_at) ?? "",
    collections: num(run.collections),
    dids_per_sec: optNum(run.dids_per_sec),
    pages_per_sec: optNum(run.pages_per_sec),
    eta_seconds: optNum(run.eta_seconds),
  };
}

function parseCollection(c: Record<string, unknown>): CollectionStatus {
  return {
    collection: str(c.collection) ?? "?",
    source: str(c.source),
    imported: num(c.imported),
    new: num(c.new),
    completed: c.completed === true,
    active: c.active === true,
    attempts: num(c.attempts),
    updated_at: str(c.updated_at),
    estimated_total: optNum(c.estimated_total),
    error: str(c.error),
    next_retry_at: str(c.next_retry_at),
    cursor: str(c.cursor),
  };
}

/** A plain JSON object. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `v` when it is a string. */
export function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

function num(v: unknown): number {
  return optNum(v) ?? 0;
}

function optNum(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/** The status CLI's client for the admin API: requests, failures phrased for the operator, the body. */
import ky, { isTimeoutError, type KyInstance } from "ky";
import { asString, errorMessage, isRecord } from "../util/mod.ts";
import { formatDuration, parseStatusDocument, type StatusDocument } from "../status/mod.ts";
import { clip } from "./text.ts";

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
  /** The admin API's ky client: credentials, timeout, no retries (watch decides those). */
  api: KyInstance;
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
export async function fetchStatus(ctx: Context): Promise<StatusDocument> {
  const res = await request(ctx, "GET", STATUS_PATH);
  expectOk(ctx, res);
  const status = parseStatusDocument(res.body);
  if (!status) throw new CliFailure("unexpected answer from the server: not a backfill status");
  return status;
}

/** One admin API request; network failures and timeouts become {@link CliFailure}s. */
export async function request(
  ctx: Context,
  method: string,
  path: string,
  params: [string, string][] = [],
): Promise<ApiResponse> {
  try {
    const response = ctx.api(endpoint(ctx.base, path, params), { method, signal: ctx.signal });
    // Through .text(), ky's timeout covers reading the body as well as waiting for the answer.
    const text = await response.text();
    const res = await response;
    return checkAuth(ctx, { status: res.status, text, body: parseJson(text) });
  } catch (e) {
    if (e instanceof CliFailure) throw e;
    if (ctx.signal?.aborted) throw new Interrupted();
    if (isTimeoutError(e)) {
      const limit = formatDuration(ctx.timeoutMs / 1000);
      throw new CliFailure(
        `backfill server at ${ctx.shownUrl} did not answer within ${limit}`,
        true,
      );
    }
    const reason = describeNetworkError(e);
    throw new CliFailure(`cannot reach backfill server at ${ctx.shownUrl} (${reason})`, true);
  }
}

/** The admin API's client for `password` (sent as a bearer token), with a per-request timeout. */
export function adminClient(
  opts: { password?: string; timeoutMs: number; fetch?: typeof fetch },
): KyInstance {
  const headers: Record<string, string> = { accept: "application/json" };
  if (opts.password) headers.authorization = `Bearer ${opts.password}`;
  return ky.create({
    headers,
    timeout: opts.timeoutMs,
    retry: 0,
    throwHttpErrors: false,
    fetch: opts.fetch,
  });
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
    const message = asString(res.body.message) ?? asString(res.body.error);
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

/** The operator's status CLI: talks to a running server's collection-backfill admin API. */

import { errorMessage, InputError } from "../util/mod.ts";
import {
  formatCount,
  formatDuration,
  formatPercent,
  formatRate,
  formatTable,
  progressBar,
  truncate,
} from "../status/mod.ts";
import { isNsid } from "../util/mod.ts";

/** Everything {@link runStatusCli} touches is passed in, so tests and main.ts control it. */
export interface StatusCliOptions {
  /** argv after "status". */
  args: string[];
  /** Base URL of the backfill server, e.g. http://localhost:8080. */
  relayUrl: string;
  /** The admin token (RELAY_ADMIN_PASSWORD); sent as a Bearer token, never printed. */
  password?: string;
  fetch?: typeof fetch;
  out: (line: string) => void;
  err: (line: string) => void;
  isTty?: boolean;
  columns?: number;
  /** Aborting it (SIGINT) ends `watch` with exit code 0. */
  signal?: AbortSignal;
  now?: () => number;
  /** How often `watch` polls, in milliseconds (default 1000; `watch --interval` overrides). */
  watchIntervalMs?: number;
  /** Per-request timeout in milliseconds (default 10000). */
  timeoutMs?: number;
}

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
}

const STATUS_PATH = "/admin/backfill-collections";
const LIST_LIMIT = 20;
const WATCH_BAR_LIMIT = 15;
const WATCH_MAX_FAILURES = 10;
const SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";
const USAGE = [
  "usage: deno task status [command]",
  "",
  "commands:",
  "  status                      summary of the collection backfill (the default)",
  "  start [source]              start a backfill from source (the server's default if omitted)",
  "  catch-up [source]           resume completed collections from their last cursor for new DIDs",
  "  full                        the raw status JSON",
  "  watch [--interval SECONDS]  live progress until the run ends (Ctrl-C to quit)",
  "  stop                        stop the running backfill",
  "  reset <collection>...       forget the progress of these collections (NSIDs)",
  "  help                        this text",
  "",
  "environment: RELAY_URL (the server), RELAY_ADMIN_PASSWORD (the admin token)",
];

/** A failure already phrased for the operator; `transient` ones are worth retrying in `watch`. */
class CliFailure extends Error {
  constructor(message: string, readonly transient = false) {
    super(message);
  }
}

/** The operator pressed Ctrl-C (the caller's signal aborted). */
class Interrupted extends Error {}

interface Context {
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

interface ApiResponse {
  status: number;
  text: string;
  body: unknown;
}

/** Runs the status CLI (status, start, full, watch, stop, reset); resolves to the exit code. */
export async function runStatusCli(opts: StatusCliOptions): Promise<number> {
  const out = redacting(opts.out, opts.password);
  const err = redacting(opts.err, opts.password);
  try {
    return await dispatch(makeContext(opts, out, err), opts.args);
  } catch (e) {
    return report(e, err);
  }
}

/** Wraps a line sink so the password can never reach the terminal, even if the server echoes it. */
function redacting(sink: (line: string) => void, password?: string): (line: string) => void {
  if (!password) return sink;
  return (line) => sink(line.replaceAll(password, "***"));
}

function report(e: unknown, err: (line: string) => void): number {
  if (e instanceof Interrupted) return 130;
  if (e instanceof InputError) {
    err(`error: ${e.message}`);
    for (const line of USAGE) err(line);
    return 2;
  }
  err(`error: ${oneLine(errorMessage(e))}`);
  return 1;
}

function makeContext(
  opts: StatusCliOptions,
  out: (line: string) => void,
  err: (line: string) => void,
): Context {
  const base = parseBaseUrl(opts.relayUrl);
  return {
    base,
    shownUrl: base.origin + base.pathname.replace(/\/+$/, ""),
    password: opts.password,
    fetch: opts.fetch ?? fetch,
    out,
    err,
    isTty: opts.isTty ?? false,
    columns: opts.columns && opts.columns > 20 ? opts.columns : 80,
    signal: opts.signal,
    now: opts.now ?? Date.now,
    intervalMs: opts.watchIntervalMs ?? 1000,
    timeoutMs: opts.timeoutMs ?? 10_000,
  };
}

function parseBaseUrl(relayUrl: string): URL {
  let url: URL;
  try {
    url = new URL(relayUrl);
  } catch {
    throw new CliFailure(`RELAY_URL is not a valid URL: ${JSON.stringify(relayUrl)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new CliFailure(`RELAY_URL must be an http(s) URL, not ${url.protocol}`);
  }
  // Credentials in the URL would be echoed in error lines; the token travels in a header instead.
  url.username = "";
  url.password = "";
  url.search = "";
  url.hash = "";
  return url;
}

async function dispatch(ctx: Context, args: string[]): Promise<number> {
  const [command = "status", ...rest] = args;
  switch (command) {
    case "status":
      expectNoArgs(command, rest);
      return await showStatus(ctx);
    case "full":
      expectNoArgs(command, rest);
      return await showFull(ctx);
    case "start":
      return await start(ctx, rest);
    case "catch-up":
      return await start(ctx, rest, "catch-up");
    case "watch":
      return await watch(ctx, parseWatchArgs(rest, ctx.intervalMs));
    case "stop":
      expectNoArgs(command, rest);
      return await stop(ctx);
    case "reset":
      return await reset(ctx, rest);
    case "help":
    case "-h":
    case "--help":
      for (const line of USAGE) ctx.out(line);
      return 0;
    default:
      throw new InputError(`unknown command ${JSON.stringify(command)}`);
  }
}

function expectNoArgs(command: string, rest: string[]): void {
  if (rest.length > 0) throw new InputError(`${command} takes no arguments`);
}

function parseWatchArgs(rest: string[], defaultMs: number): number {
  if (rest.length === 0) return defaultMs;
  const [flag, value, ...extra] = rest[0].includes("=")
    ? [...rest[0].split("="), ...rest.slice(1)]
    : rest;
  const seconds = Number(value);
  if (flag !== "--interval" || extra.length > 0 || !(seconds > 0)) {
    throw new InputError("watch takes only --interval SECONDS (a positive number)");
  }
  return seconds * 1000;
}

// ---- subcommands ----

async function showStatus(ctx: Context): Promise<number> {
  const status = await fetchStatus(ctx);
  for (const line of renderStatus(status, ctx.now())) ctx.out(line);
  return 0;
}

async function showFull(ctx: Context): Promise<number> {
  const res = await request(ctx, "GET", STATUS_PATH);
  expectOk(ctx, res);
  if (res.body === undefined) {
    throw new CliFailure(`server answered with non-JSON: ${clip(res.text)}`);
  }
  for (const line of JSON.stringify(res.body, null, 2).split("\n")) ctx.out(line);
  return 0;
}

async function start(ctx: Context, rest: string[], mode?: "catch-up"): Promise<number> {
  if (rest.length > 1 || rest[0]?.startsWith("-")) {
    throw new InputError(`${mode ?? "start"} takes at most one argument: the source relay`);
  }
  const params: [string, string][] = rest[0] ? [["source", rest[0]]] : [];
  if (mode) params.push(["mode", mode]);
  const res = await request(ctx, "POST", STATUS_PATH, params);
  if (res.status === 409) throw new CliFailure(serverMessage(res));
  expectOk(ctx, res);
  const body = isRecord(res.body) ? res.body : {};
  if (typeof body.collections === "number") {
    const source = str(body.source) ?? rest[0] ?? "the default source";
    ctx.out(
      `started ${mode ? "catch-up" : "backfill"} of ${body.collections} collections from ${source}`,
    );
  } else {
    ctx.out(serverMessage(res));
  }
  return 0;
}

async function stop(ctx: Context): Promise<number> {
  const res = await request(ctx, "POST", `${STATUS_PATH}/stop`);
  if (res.status === 409) throw new CliFailure(`nothing to stop: ${serverMessage(res)}`);
  expectOk(ctx, res);
  const body = isRecord(res.body) ? res.body : {};
  const detail = str(body.message) ?? str(body.status);
  ctx.out(detail ? `stop requested: ${detail}` : "stop requested");
  return 0;
}

async function reset(ctx: Context, rest: string[]): Promise<number> {
  if (rest.length === 0) throw new InputError("reset needs at least one collection NSID");
  const bad = rest.find((c) => !isNsid(c));
  if (bad !== undefined) throw new InputError(`not a collection NSID: ${JSON.stringify(bad)}`);
  const collections = [...new Set(rest)];
  const params = collections.map((c): [string, string] => ["collection", c]);
  const res = await request(ctx, "POST", `${STATUS_PATH}/reset`, params);
  expectOk(ctx, res);
  const body = isRecord(res.body) ? res.body : {};
  const n = typeof body.reset === "number" ? body.reset : undefined;
  if (n === undefined) {
    ctx.out(`reset requested: ${serverMessage(res)}`);
  } else {
    const skipped = collections.length - n;
    ctx.out(
      `reset ${plural(n, "collection")}` +
        (skipped > 0 ? ` (${skipped} had no saved progress)` : ""),
    );
  }
  return 0;
}

// ---- HTTP ----

async function fetchStatus(ctx: Context): Promise<BackfillStatus> {
  const res = await request(ctx, "GET", STATUS_PATH);
  expectOk(ctx, res);
  return parseStatus(res.body);
}

async function request(
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

function expectOk(ctx: Context, res: ApiResponse): void {
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

function serverMessage(res: ApiResponse): string {
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

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

function num(v: unknown): number {
  return optNum(v) ?? 0;
}

function optNum(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

// ---- the `status` summary ----

function renderStatus(s: BackfillStatus, now: number): string[] {
  const lines = [headline(s, now), ...totals(s)];
  const incomplete = incompleteCollections(s.collections);
  if (incomplete.length > 0) {
    lines.push("", `incomplete collections (${incomplete.length}):`);
    lines.push(...limited(incomplete.map(incompleteRow)));
  }
  const failed = failedCollections(s.collections);
  if (failed.length > 0) {
    lines.push("", `FAILED collections (${failed.length}):`);
    lines.push(...limited(failed.map((c) => failedRow(c, now))));
  }
  return lines;
}

function headline(s: BackfillStatus, now: number): string {
  if (s.running && s.run) {
    const r = s.run;
    const since = Date.parse(r.started_at);
    const ago = Number.isNaN(since) ? "" : ` (${formatDuration((now - since) / 1000)} ago)`;
    return `backfill running: ${r.mode} from ${r.source}, started ${
      formatTime(r.started_at)
    }${ago}`;
  }
  if (s.running) return "backfill running";
  if (s.total > 0 && s.completed === s.total) return "backfill idle: all collections are done";
  return "backfill idle: no run in progress";
}

function totals(s: BackfillStatus): string[] {
  const done = s.total > 0 ? ` (${formatPercent(s.completed / s.total)})` : "";
  const rows = [
    [
      "collections",
      `${s.completed}/${s.total} done${done} · ${s.in_progress} in progress · ${s.failed} failed`,
    ],
    ["DIDs", `${formatCount(s.total_imported)} imported · ${formatCount(s.total_new)} new`],
  ];
  if (s.running && s.run) rows.push(["rate", rateText(s.run)]);
  return formatTable(rows);
}

function rateText(r: RunInfo): string {
  const parts = [`${formatRate(r.dids_per_sec ?? NaN)} DIDs/s`];
  if (r.pages_per_sec !== undefined) parts.push(`${formatRate(r.pages_per_sec)} pages/s`);
  parts.push(`ETA ${formatDuration(r.eta_seconds ?? NaN)}`);
  return parts.join(" · ");
}

function isFailed(c: CollectionStatus): boolean {
  return !c.completed && !c.active && c.error !== undefined;
}

function incompleteCollections(all: CollectionStatus[]): CollectionStatus[] {
  return all.filter((c) => !c.completed && !isFailed(c)).sort((a, b) =>
    Number(b.active) - Number(a.active) || b.imported - a.imported ||
    a.collection.localeCompare(b.collection)
  );
}

function failedCollections(all: CollectionStatus[]): CollectionStatus[] {
  return all.filter(isFailed).sort((a, b) =>
    b.attempts - a.attempts || a.collection.localeCompare(b.collection)
  );
}

function incompleteRow(c: CollectionStatus): string[] {
  const flags = [c.active ? "active" : "pending"];
  if (c.attempts > 1) flags.push(`attempt ${c.attempts}`);
  if (c.error) flags.push(`last error: ${clip(c.error, 60)}`);
  return [truncate(c.collection, 60), progressText(c), flags.join(" · ")];
}

function progressText(c: CollectionStatus): string {
  const total = c.estimated_total;
  if (!total) return `${formatCount(c.imported)} DIDs`;
  return `${formatCount(c.imported)} / ${formatCount(total)} (${
    formatPercent(c.imported / total)
  })`;
}

function failedRow(c: CollectionStatus, now: number): string[] {
  return [
    truncate(c.collection, 60),
    plural(c.attempts, "attempt"),
    retryText(c.next_retry_at, now),
    clip(c.error ?? "", 120),
  ];
}

function retryText(nextRetryAt: string | undefined, now: number): string {
  const at = nextRetryAt ? Date.parse(nextRetryAt) : NaN;
  if (Number.isNaN(at)) return "no retry scheduled";
  return at <= now ? "retry due" : `retry in ${formatDuration((at - now) / 1000)}`;
}

/** Keeps the first {@link LIST_LIMIT} rows of a long list and says how many were left out. */
function limited(rows: string[][]): string[] {
  const lines = formatTable(rows.slice(0, LIST_LIMIT), "  ");
  if (rows.length > LIST_LIMIT) lines.push(`  … and ${rows.length - LIST_LIMIT} more`);
  return lines;
}

// ---- `watch` ----

interface WatchState {
  polls: number;
  failures: number;
  sawRunning: boolean;
  shownLines: number;
  idleShown: boolean;
  previous?: { at: number; imported: Map<string, number> };
}

async function watch(ctx: Context, intervalMs: number): Promise<number> {
  const state: WatchState = {
    polls: 0,
    failures: 0,
    sawRunning: false,
    shownLines: 0,
    idleShown: false,
  };
  try {
    while (true) {
      const status = await pollForWatch(ctx, state);
      if (status?.running) state.sawRunning = true;
      if (status && !status.running && state.sawRunning) {
        finishWatch(ctx, status);
        return 0;
      }
      if (status) drawWatch(ctx, state, status);
      if (!await sleep(intervalMs, ctx.signal)) return 0;
    }
  } catch (e) {
    if (e instanceof Interrupted) return 0;
    throw e;
  }
}

/** One poll; after a first success, transient failures (a restarting server) are retried. */
async function pollForWatch(ctx: Context, state: WatchState): Promise<BackfillStatus | undefined> {
  try {
    const status = await fetchStatus(ctx);
    state.polls++;
    state.failures = 0;
    return status;
  } catch (e) {
    const retry = e instanceof CliFailure && e.transient && state.polls > 0 &&
      ++state.failures < WATCH_MAX_FAILURES;
    if (!retry) throw e;
    ctx.err(`warning: ${e.message}; retrying`);
    state.shownLines = 0; // the warning broke the in-place redraw; start a fresh frame below it
    return undefined;
  }
}

function drawWatch(ctx: Context, state: WatchState, status: BackfillStatus): void {
  const now = ctx.now();
  if (ctx.isTty) {
    const lines = renderFrame(status, state, now).map((l) => truncate(l, ctx.columns - 1));
    // Move up over the previous frame and clear to the end of the screen, then draw over it.
    const prefix = state.shownLines > 0 ? `\x1b[${state.shownLines}A\x1b[J` : "";
    lines.forEach((line, i) => ctx.out(i === 0 ? prefix + line : line));
    state.shownLines = lines.length;
  } else if (status.running) {
    ctx.out(plainWatchLine(status, now));
  } else if (!state.idleShown) {
    ctx.out(`${clock(now)} no backfill is running; waiting for one to start (Ctrl-C to quit)`);
  }
  state.idleShown = !status.running;
  state.previous = {
    at: now,
    imported: new Map(status.collections.map((c) => [c.collection, c.imported])),
  };
}

function finishWatch(ctx: Context, status: BackfillStatus): void {
  const failed = status.failed > 0 ? `, ${status.failed} failed` : "";
  ctx.out(`backfill run ended: ${status.completed}/${status.total} collections done${failed}`);
  for (const line of renderStatus(status, ctx.now())) ctx.out(line);
}

function plainWatchLine(s: BackfillStatus, now: number): string {
  const parts = [
    `${s.completed}/${s.total} collections (${formatPercent(s.total ? s.completed / s.total : 0)})`,
    `${s.in_progress} in progress`,
    `${s.failed} failed`,
    `${formatCount(s.total_imported)} DIDs (+${formatCount(s.total_new)} new)`,
  ];
  if (s.run) {
    parts.push(`${formatRate(s.run.dids_per_sec ?? NaN)} DIDs/s`);
    parts.push(`ETA ${formatDuration(s.run.eta_seconds ?? NaN)}`);
  }
  return `${clock(now)} ${parts.join(" · ")}`;
}

function renderFrame(s: BackfillStatus, state: WatchState, now: number): string[] {
  const spin = SPINNER[state.polls % SPINNER.length];
  if (!s.running) {
    return [`${spin} no backfill is running; waiting for one to start (Ctrl-C to quit)`];
  }
  const fraction = s.total ? s.completed / s.total : 0;
  const run = s.run;
  const started = run ? Date.parse(run.started_at) : NaN;
  const header = run
    ? `${spin} backfill ${run.mode} from ${run.source} · running ${
      Number.isNaN(started) ? "?" : formatDuration((now - started) / 1000)
    }`
    : `${spin} backfill running`;
  const lines = [
    header,
    `overall ${progressBar(fraction, 30)} ${formatPercent(fraction)}  ` +
    `${s.completed}/${s.total} collections · ${s.failed} failed`,
    `        ${formatCount(s.total_imported)} DIDs (+${formatCount(s.total_new)} new)` +
    (run ? ` · ${rateText(run)}` : ""),
  ];
  return [...lines, ...collectionBars(s.collections, state, now, spin)];
}

function collectionBars(
  all: CollectionStatus[],
  state: WatchState,
  now: number,
  spin: string,
): string[] {
  const active = all.filter((c) => c.active).sort((a, b) => b.imported - a.imported);
  const rows = active.slice(0, WATCH_BAR_LIMIT).map((c) => {
    const total = c.estimated_total;
    const bar = total
      ? `${progressBar(c.imported / total, 20)} ${formatPercent(c.imported / total).padStart(6)}`
      : `${spin} ${formatCount(c.imported)} DIDs`;
    const amount = total ? `${formatCount(c.imported)} / ${formatCount(total)}` : "";
    const rate = collectionRate(c, state, now);
    return [
      truncate(c.collection, 40),
      bar,
      amount,
      rate === undefined ? "" : `${formatRate(rate)}/s`,
    ];
  });
  const lines = formatTable(rows);
  if (active.length > WATCH_BAR_LIMIT) {
    lines.push(`… and ${active.length - WATCH_BAR_LIMIT} more active`);
  }
  return lines;
}

/** DIDs per second since the previous poll, when there was one. */
function collectionRate(c: CollectionStatus, state: WatchState, now: number): number | undefined {
  const before = state.previous?.imported.get(c.collection);
  const seconds = state.previous ? (now - state.previous.at) / 1000 : 0;
  if (before === undefined || seconds <= 0) return undefined;
  return Math.max(0, c.imported - before) / seconds;
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const done = (slept: boolean) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      resolve(slept);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

// ---- small text helpers ----

function formatTime(iso: string): string {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? iso : new Date(t).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function clock(now: number): string {
  return new Date(now).toISOString().slice(11, 19) + "Z";
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

function clip(text: string, width = 200): string {
  return truncate(oneLine(text), width);
}

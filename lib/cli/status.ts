/** The operator's status CLI: talks to a running server's collection-backfill admin API. */

import { CONFIRM_SOURCE_SWITCH, errorMessage, InputError, parseCommandLine } from "../util/mod.ts";
import { adminClient, CliFailure, type Context, Interrupted } from "./api.ts";
import { reset, showFull, showStatus, start, stop } from "./commands.ts";
import { STATUS_USAGE as USAGE } from "./help.ts";
import { oneLine } from "./text.ts";
import { watch } from "./watch.ts";

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
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return {
    base,
    shownUrl: base.origin + base.pathname.replace(/\/+$/, ""),
    api: adminClient({ password: opts.password, timeoutMs, fetch: opts.fetch }),
    out,
    err,
    isTty: opts.isTty ?? false,
    columns: opts.columns && opts.columns > 20 ? opts.columns : 80,
    signal: opts.signal,
    now: opts.now ?? Date.now,
    intervalMs: opts.watchIntervalMs ?? 1000,
    timeoutMs,
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
      commandArgs(command, rest, 0, "no arguments");
      return await showStatus(ctx);
    case "full":
      commandArgs(command, rest, 0, "no arguments");
      return await showFull(ctx);
    case "start":
    case "catch-up": {
      const { source, confirm } = startArgs(command, rest);
      return await start(ctx, source, command === "catch-up" ? "catch-up" : undefined, confirm);
    }
    case "watch":
      return await watch(ctx, watchInterval(rest, ctx.intervalMs));
    case "stop":
      commandArgs(command, rest, 0, "no arguments");
      return await stop(ctx);
    case "reset":
      return await reset(ctx, commandArgs(command, rest, Infinity, "collection NSIDs only"));
    case "help":
    case "-h":
    case "--help":
      for (const line of USAGE) ctx.out(line);
      return 0;
    default:
      throw new InputError(`unknown command ${JSON.stringify(command)}`);
  }
}

/** A subcommand's positional arguments (it takes no flags), at most `max`; else "`command` takes …". */
function commandArgs(command: string, rest: string[], max: number, takes: string): string[] {
  const wrong = () => new InputError(`${command} takes ${takes}`);
  let positionals: string[];
  try {
    positionals = parseCommandLine(rest, {}, { positionals: true }).positionals;
  } catch {
    throw wrong();
  }
  if (positionals.length > max) throw wrong();
  return positionals;
}

/** `start|catch-up [source] [--confirm-source-switch]`. */
function startArgs(command: string, rest: string[]): { source?: string; confirm: boolean } {
  const wrong = () =>
    new InputError(
      `${command} takes at most one argument, the source relay, and --${CONFIRM_SOURCE_SWITCH}`,
    );
  let parsed;
  try {
    parsed = parseCommandLine(rest, { [CONFIRM_SOURCE_SWITCH]: { type: "boolean" } }, {
      positionals: true,
    });
  } catch {
    throw wrong();
  }
  if (parsed.positionals.length > 1) throw wrong();
  return {
    source: parsed.positionals[0],
    confirm: parsed.values[CONFIRM_SOURCE_SWITCH] === true,
  };
}

/** `watch [--interval SECONDS]`, in milliseconds. */
function watchInterval(rest: string[], defaultMs: number): number {
  const wrong = () => new InputError("watch takes only --interval SECONDS (a positive number)");
  let interval: unknown;
  try {
    interval = parseCommandLine(rest, { interval: { type: "string" } }).values.interval;
  } catch {
    throw wrong();
  }
  if (interval === undefined) return defaultMs;
  const seconds = Number(interval);
  if (!(seconds > 0)) throw wrong();
  return seconds * 1000;
}

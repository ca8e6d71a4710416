/** The one-request subcommands: status, full, start, catch-up, stop, reset. */
import { asString, CONFIRM_SOURCE_SWITCH, InputError, isNsid, isRecord } from "../util/mod.ts";
import {
  CliFailure,
  type Context,
  expectOk,
  fetchStatus,
  request,
  serverMessage,
  STATUS_PATH,
} from "./api.ts";
import { renderStatus } from "./summary.ts";
import { clip, plural } from "./text.ts";

/** `status`: the summary. */
export async function showStatus(ctx: Context): Promise<number> {
  const status = await fetchStatus(ctx);
  for (const line of renderStatus(status, ctx.now())) ctx.out(line);
  return 0;
}

/** `full`: the raw status JSON. */
export async function showFull(ctx: Context): Promise<number> {
  const res = await request(ctx, "GET", STATUS_PATH);
  expectOk(ctx, res);
  if (res.body === undefined) {
    throw new CliFailure(`server answered with non-JSON: ${clip(res.text)}`);
  }
  for (const line of JSON.stringify(res.body, null, 2).split("\n")) ctx.out(line);
  return 0;
}

/**
 * `start` and `catch-up`: asks the server to begin a run (from `source`, or its default). The server
 * answers before slow planning (discovery) is done: "started", or "planning" (`status` shows it).
 */
export async function start(
  ctx: Context,
  source: string | undefined,
  mode?: "catch-up",
  confirmSourceSwitch = false,
): Promise<number> {
  const params: [string, string][] = source ? [["source", source]] : [];
  if (mode) params.push(["mode", mode]);
  if (confirmSourceSwitch) params.push([CONFIRM_SOURCE_SWITCH, "true"]);
  const res = await request(ctx, "POST", STATUS_PATH, params);
  if (res.status === 409) {
    const confirm = isRecord(res.body) && res.body.error === "ConfirmationRequired";
    throw new CliFailure(serverMessage(res) + (confirm ? ` (add --${CONFIRM_SOURCE_SWITCH})` : ""));
  }
  expectOk(ctx, res);
  const body = isRecord(res.body) ? res.body : {};
  const what = mode ? "catch-up" : "backfill";
  const from = asString(body.source) ?? source ?? "the default source";
  const run = asString(body.run) ? ` (run ${asString(body.run)})` : "";
  if (body.status === "planning") {
    ctx.out(`planning ${what} from ${from}${run}: discovering collections; \`status\` follows it`);
  } else if (body.status === "stopped") {
    ctx.out(`${what} from ${from}${run} was stopped before it began`);
  } else if (typeof body.collections === "number") {
    ctx.out(`started ${what} of ${body.collections} collections from ${from}${run}`);
  } else {
    ctx.out(serverMessage(res));
  }
  return 0;
}

/** `stop`: asks the server to stop the run. */
export async function stop(ctx: Context): Promise<number> {
  const res = await request(ctx, "POST", `${STATUS_PATH}/stop`);
  if (res.status === 409) throw new CliFailure(`nothing to stop: ${serverMessage(res)}`);
  expectOk(ctx, res);
  const body = isRecord(res.body) ? res.body : {};
  const detail = asString(body.message) ?? asString(body.status);
  ctx.out(detail ? `stop requested: ${detail}` : "stop requested");
  return 0;
}

/** `reset`: forgets the progress of the given collections. */
export async function reset(ctx: Context, names: string[]): Promise<number> {
  if (names.length === 0) throw new InputError("reset needs at least one collection NSID");
  const bad = names.find((c) => !isNsid(c));
  if (bad !== undefined) throw new InputError(`not a collection NSID: ${JSON.stringify(bad)}`);
  const collections = [...new Set(names)];
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

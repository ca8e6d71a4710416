/** The one-request subcommands: status, full, start, catch-up, stop, reset. */
import { asString, InputError, isNsid, isRecord } from "../util/mod.ts";
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

/** `start` and `catch-up`: asks the server to begin a run. */
export async function start(ctx: Context, rest: string[], mode?: "catch-up"): Promise<number> {
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
    const source = asString(body.source) ?? rest[0] ?? "the default source";
    ctx.out(
      `started ${mode ? "catch-up" : "backfill"} of ${body.collections} collections from ${source}`,
    );
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
export async function reset(ctx: Context, rest: string[]): Promise<number> {
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

/** `deno task sim-relay`: flags and SIM_RELAY_* variables to relay options, and the serving loop. */
import { parseArgs } from "node:util";
import { InputError } from "../util/mod.ts";
import { MALFORMED_MODES, type MalformedMode, OVER_LIMIT_MODES, type OverLimit } from "./faults.ts";
import { type SimRelayOptions, startSimRelay } from "./relay.ts";
import { makeWorld } from "./world.ts";

const DEFAULT_LARGE = [20000, 12000, 8000, 5000, 2000];
const USAGE =
  `usage: sim-relay [flags]   (each flag also reads SIM_RELAY_<FLAG>, e.g. SIM_RELAY_PORT)
  --port N (2583)  --hostname H (127.0.0.1)  --seed N (1)
  --scale X (1; large collections are X × ${
    DEFAULT_LARGE.join("/")
  } DIDs)  --collections N (40)  --tail-max N (60)
  --latency MS  --jitter MS  --rate429 P  --retry-after S  --retry-after-date  --max-rps N
  --rate5xx P  --rate-reset P  --hang-rate P  --short-page-every N
  --max-limit N (10000)  --over-limit clamp|reject (clamp: a larger limit gets max-limit DIDs;
    reject: it gets 400 InvalidRequest, like a lexicon-strict server with --max-limit 2000)
  --forbidden a.b.c,d.e.f  --malformed nsid=mode,...  --llms-extra a.b.c,...  --no-list-collections
  --stream-rate EVENTS/S (0)  --stream-backlog N (200000)  --stream-prefill N (0)
  --stream-real-repos (real MSTs: v1.1 commits that prove deletes)  --stream-unprovable P (0)`;
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
  "stream-rate",
  "stream-backlog",
  "stream-prefill",
  "stream-unprovable",
] as const;
const STRING_FLAGS = ["hostname", "forbidden", "malformed", "llms-extra", "over-limit"] as const;
const BOOL_FLAGS = [
  "retry-after-date",
  "no-list-collections",
  "stream-real-repos",
  "help",
] as const;

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
    if (!mode || !MALFORMED_MODES.includes(mode as MalformedMode)) {
      throw new InputError(
        `sim-relay: --malformed wants nsid=mode, mode one of ${MALFORMED_MODES.join(", ")}`,
      );
    }
    malformed[nsid] = mode as MalformedMode;
  }
  const overLimit = str("over-limit") || undefined;
  if (overLimit !== undefined && !OVER_LIMIT_MODES.includes(overLimit as OverLimit)) {
    throw new InputError(
      `sim-relay: --over-limit must be ${OVER_LIMIT_MODES.join(" or ")}, got ${
        JSON.stringify(overLimit)
      }`,
      "over-limit",
    );
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
    overLimit: overLimit as OverLimit | undefined,
    forbidden: list("forbidden"),
    malformed,
    llmsExtra: list("llms-extra"),
    listCollections: !bool("no-list-collections"),
    stream: {
      rate: num("stream-rate"),
      backlog: num("stream-backlog"),
      realRepos: bool("stream-real-repos"),
      mix: num("stream-unprovable") === undefined
        ? undefined
        : { unprovable: num("stream-unprovable") },
    },
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
  await relay.stream.generate(readFlags(args, env).num("stream-prefill") ?? 0);
  relay.stream.start();
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
  const ws = relay.url.replace(/^http/, "ws");
  out(
    `streams: ${ws}/xrpc/com.atproto.sync.subscribeRepos (firehose), ${ws}/subscribe (Jetstream)`,
  );
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

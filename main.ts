/** Entry point: parses the environment and arguments, then wires one mode together. */
// Modes are imported lazily so that `status` from a laptop never loads the native index or Postgres.
import { parseBackfillArgs, parseConfig } from "./lib/app/config.ts";
import { BusyError, errorMessage, InputError, StoreError } from "./lib/util/errors.ts";
import { createLogger } from "./lib/util/log.ts";
import { isNsid } from "./lib/util/syntax.ts";

const USAGE = `usage: deno task <mode>
  migrate                      apply database migrations
  start                        run the server (admin API, XRPC, backfill loop)
  backfill [--source S] [--collection NSID]... [--catch-up] [--reset]
                               run a backfill to the end and exit
  status [status|start [source]|catch-up [source]|full|watch|stop|reset NSID...]
                               talk to a running server
  sim-relay [--help]           start the simulated source relay`;

/** Aborts on the first SIGINT/SIGTERM; a second one exits at once. */
function shutdownSignal(): AbortSignal {
  const ac = new AbortController();
  const onSignal = () => {
    if (ac.signal.aborted) Deno.exit(130);
    ac.abort(new DOMException("shutdown requested", "AbortError"));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", onSignal);
  return ac.signal;
}

async function main(args: string[], signal: AbortSignal): Promise<number> {
  const [mode, ...rest] = args;
  if (mode === undefined || mode === "help" || mode === "--help" || rest.includes("--help")) {
    if (mode !== "status" && mode !== "sim-relay") {
      console.log(USAGE);
      return mode === undefined ? 2 : 0;
    }
  }
  const env = Deno.env.toObject();
  const config = parseConfig(env);
  const stderr = (line: string) => console.error(line);
  const log = createLogger({ level: config.logLevel, write: stderr });
  switch (mode) {
    case "status": {
      const { runStatusCli } = await import("./lib/cli/status.ts");
      return await runStatusCli({
        args: rest,
        relayUrl: config.relayUrl,
        password: config.adminPassword,
        out: (l) => console.log(l),
        err: stderr,
        isTty: Deno.stdout.isTerminal(),
        columns: Deno.stdout.isTerminal() ? Deno.consoleSize().columns : undefined,
        signal,
      });
    }
    case "sim-relay": {
      const { runSimRelayCli } = await import("./lib/sim/cli.ts");
      return await runSimRelayCli(rest, env, { signal });
    }
    case "migrate": {
      const { openRuntime } = await import("./lib/app/runtime.ts");
      const rt = await openRuntime({ config, log });
      await rt.close();
      console.log("migrations are up to date");
      return 0;
    }
    case "start": {
      const { openRuntime } = await import("./lib/app/runtime.ts");
      const { serve } = await import("./lib/app/server.ts");
      const rt = await openRuntime({ config, log, signal });
      try {
        await serve({ runtime: rt, config, log, signal });
      } finally {
        await rt.close();
      }
      log.info("stopped");
      return 0;
    }
    case "backfill": {
      const opts = parseBackfillArgs(rest, isNsid);
      if (opts.help) {
        console.log(USAGE);
        return 0;
      }
      const { openRuntime } = await import("./lib/app/runtime.ts");
      const { runOneShot } = await import("./lib/cli/oneshot.ts");
      const rt = await openRuntime({ config, log, signal });
      try {
        if (opts.reset) {
          const r = await rt.backfiller.reset(opts.collections);
          console.log(
            `reset ${r.reset.length} collection(s)${
              r.unknown.length ? `; unknown: ${r.unknown.join(", ")}` : ""
            }`,
          );
        }
        const { code } = await runOneShot({
          backfiller: rt.backfiller,
          request: {
            source: opts.source ?? config.source,
            collections: opts.collections,
            catchUp: opts.catchUp,
          },
          out: (l) => console.log(l),
          signal,
        });
        return code;
      } finally {
        await rt.close();
      }
    }
    case undefined:
    case "help":
    case "--help":
      console.log(USAGE);
      return mode === undefined ? 2 : 0;
    default:
      console.error(`unknown mode ${JSON.stringify(mode)}\n${USAGE}`);
      return 2;
  }
}

if (import.meta.main) {
  const signal = shutdownSignal();
  let code: number;
  try {
    code = await main(Deno.args, signal);
  } catch (err) {
    if (signal.aborted && !(err instanceof InputError)) {
      // A signal that interrupted startup (migrations, discovery) is a clean stop, not a failure.
      console.error("stopped by signal");
      code = 0;
    } else if (err instanceof InputError || err instanceof StoreError || err instanceof BusyError) {
      // Expected failures get one line; anything else keeps its stack for a bug report.
      console.error(`error: ${err.message}`);
      code = err instanceof InputError ? 2 : 1;
    } else {
      console.error("error:", errorMessage(err), err instanceof Error ? `\n${err.stack}` : "");
      code = 1;
    }
  }
  Deno.exit(code);
}

/** Entry point: parses the environment and arguments, then wires one mode together. */
// Modes are imported lazily so that `status` from a laptop never loads the native index or Postgres.
import { parseBackfillArgs, parseConfig } from "./lib/app/config.ts";
import {
  BusyError,
  ConfirmationError,
  errorMessage,
  InputError,
  SourceError,
  StoreError,
} from "./lib/util/errors.ts";
import { createLogger } from "./lib/util/log.ts";
import { watchLauncher } from "./lib/app/launcher.ts";
import { isNsid } from "./lib/util/syntax.ts";
import { MAIN_USAGE } from "./lib/cli/help.ts";

/** Whether to print the usage instead of running: no mode, `help`, or `--help`/`-h` after a mode
 * whose own command line does not handle help (status and sim-relay do). */
function wantsHelp(mode: string | undefined, rest: string[]): boolean {
  if (mode === undefined || mode === "help" || mode === "--help" || mode === "-h") return true;
  if (mode === "status" || mode === "sim-relay") return false;
  return rest.includes("--help") || rest.includes("-h");
}

/**
 * Aborts on the first SIGINT/SIGTERM (or when the `npx` that launched the quick start is stopped);
 * a second one exits at once.
 */
function shutdownSignal(): AbortSignal {
  const ac = new AbortController();
  const onSignal = () => {
    if (ac.signal.aborted) Deno.exit(130);
    ac.abort(new DOMException("shutdown requested", "AbortError"));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", onSignal);
  if (Deno.build.os === "linux") {
    watchLauncher({
      npmExec: Deno.env.get("npm_command") === "exec",
      ppid: Deno.ppid,
      onGone: () => {
        console.error("the npx that started this process was stopped; stopping too");
        onSignal();
      },
    });
  }
  return ac.signal;
}

async function main(args: string[], signal: AbortSignal): Promise<number> {
  const [mode, ...rest] = args;
  if (wantsHelp(mode, rest)) {
    console.log(MAIN_USAGE);
    return mode === undefined ? 2 : 0;
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
      const rt = await openRuntime({ config, log, signal, checkIndex: false });
      await rt.close();
      console.log("migrations are up to date");
      return 0;
    }
    case "start": {
      const { openRuntime } = await import("./lib/app/runtime.ts");
      const { serve } = await import("./lib/app/server.ts");
      await serve({ open: () => openRuntime({ config, log, signal }), config, log, signal });
      log.info("stopped");
      return 0;
    }
    case "backfill": {
      const opts = parseBackfillArgs(rest, isNsid);
      const { openRuntime } = await import("./lib/app/runtime.ts");
      const { runOneShot } = await import("./lib/cli/oneshot.ts");
      const rt = await openRuntime({ config, log, signal, oneShot: true });
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
            confirmSourceSwitch: opts.confirmSourceSwitch,
          },
          out: (l) => console.log(l),
          signal,
        });
        return code;
      } finally {
        await rt.close();
      }
    }
    default:
      throw new InputError(
        `unknown mode ${JSON.stringify(mode)} (modes: migrate, start, backfill, status, sim-relay)`,
      );
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
    } else if (
      err instanceof InputError || err instanceof StoreError || err instanceof BusyError ||
      err instanceof ConfirmationError || err instanceof SourceError
    ) {
      // Expected failures get one line; anything else keeps its stack for a bug report.
      console.error(`error: ${err.message}`);
      code = err instanceof InputError || err instanceof ConfirmationError ? 2 : 1;
    } else {
      console.error("error:", errorMessage(err), err instanceof Error ? `\n${err.stack}` : "");
      code = 1;
    }
  }
  Deno.exit(code);
}

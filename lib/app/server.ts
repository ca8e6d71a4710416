/** Server mode: the HTTP app on a port, resuming an interrupted run on boot, until the signal aborts. */
import type { Hono } from "hono";
import type { Config } from "./config.ts";
import { createApp } from "../http/mod.ts";
import type { Logger } from "../util/mod.ts";
import { renderMetrics, type Runtime } from "./runtime.ts";
import { parseSource } from "../source/mod.ts";
import { startRetryLoop } from "../run/mod.ts";
import { statusPageRoutes } from "../http/mod.ts";

/** Options for serve(). */
export interface ServeOptions {
  readonly runtime: Runtime;
  readonly config: Config;
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** Extra routes, e.g. the status page. */
  readonly extend?: (app: Hono) => void;
  /** Resume collections an earlier process left in flight (default true). */
  readonly autoResume?: boolean;
  readonly onListen?: (addr: { hostname: string; port: number }) => void;
}

/** Serves until `signal` aborts, then stops the backfill (checkpointing in-flight pages) and the server. */
export async function serve(opts: ServeOptions): Promise<void> {
  const { runtime: rt, config, log } = opts;
  const app = createApp({
    backfiller: rt.backfiller,
    index: rt.index,
    progress: rt.progress,
    adminPassword: config.adminPassword,
    defaultSource: config.source,
    log,
    metrics: () => renderMetrics(rt),
    extend: (app) => {
      statusPageRoutes({
        backfiller: rt.backfiller,
        progress: rt.progress,
        adminPassword: config.adminPassword,
        signal: opts.signal,
      })(app);
      opts.extend?.(app);
    },
  });
  const server = Deno.serve({
    port: config.port,
    hostname: config.host,
    signal: opts.signal,
    onListen: (addr) => {
      log.info("listening", {
        host: addr.hostname,
        port: addr.port,
        admin: config.adminPassword ? "on" : "off",
      });
      opts.onListen?.(addr);
    },
  }, app.fetch);
  // Listen first: a signal during the boot-time resume must stop that run too.
  opts.signal.addEventListener("abort", () => {
    log.info("shutting down");
    rt.backfiller.stop({ resumable: true });
  }, { once: true });
  if ((opts.autoResume ?? true) && !opts.signal.aborted) await resumeInterrupted(rt, log);
  startRetryLoop({ backfiller: rt.backfiller, progress: rt.progress, log, signal: opts.signal });
  await server.finished;
  await rt.backfiller.stop({ resumable: true });
}

/** Resumes the run an earlier process was in the middle of when it was stopped or died. */
async function resumeInterrupted(rt: Runtime, log: Logger): Promise<void> {
  const intent = await rt.backfiller.interrupted();
  if (!intent) return;
  try {
    const started = await rt.backfiller.start({
      source: parseSource(intent.source),
      collections: intent.collections,
      catchUp: intent.mode === "catch-up",
    });
    log.info("resuming interrupted backfill", { source: intent.source, queued: started.queued });
    started.done.catch((err) => log.error("backfill failed", { error: (err as Error).message }));
  } catch (err) {
    log.warn("cannot resume interrupted backfill", {
      source: intent.source,
      error: (err as Error).message,
    });
  }
}

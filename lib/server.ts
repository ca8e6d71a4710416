/** Server mode: the HTTP app on a port, resuming an interrupted run on boot, until the signal aborts. */
import type { Hono } from "hono";
import type { Config } from "./config.ts";
import { createApp } from "./http_app.ts";
import type { Logger } from "./log.ts";
import { renderMetrics, type Runtime } from "./runtime.ts";
import { parseSource } from "./source.ts";
import { statusPageRoutes } from "./status_page.ts";

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
  if (opts.autoResume ?? true) await resumeInterrupted(rt, log);
  opts.signal.addEventListener("abort", () => {
    log.info("shutting down");
    rt.backfiller.stop();
  }, { once: true });
  await server.finished;
  await rt.backfiller.stop();
}

/** Restarts the collections that an earlier process was paging when it died (not the failed ones). */
async function resumeInterrupted(rt: Runtime, log: Logger): Promise<void> {
  const rows = (await rt.progress.list()).filter((r) =>
    r.completedAt === null && r.lastError === null && r.attempts > 0
  );
  if (rows.length === 0) return;
  const source = rows[0].source;
  const collections = rows.filter((r) => r.source === source).map((r) => r.collection);
  try {
    const started = await rt.backfiller.start({ source: parseSource(source), collections });
    log.info("resuming interrupted backfill", { source, collections: started.queued });
    started.done.catch((err) => log.error("backfill failed", { error: (err as Error).message }));
  } catch (err) {
    log.warn("cannot resume interrupted backfill", { source, error: (err as Error).message });
  }
}

/** Server mode: the HTTP app on a port, resuming an interrupted run on boot, until the signal aborts. */
import type { Hono } from "hono";
import type { Config } from "./config.ts";
import { createApp, type HttpFront, startFront } from "../http/mod.ts";
import type { Logger } from "../util/mod.ts";
import { renderMetrics, type Runtime } from "./runtime.ts";
import { parseSource } from "../source/mod.ts";
import { startRetryLoop } from "../run/mod.ts";
import { statusPageRoutes } from "../http/mod.ts";
import { LiveStreamStore } from "../progress/mod.ts";
import { LiveConsumer, type LiveStatus, mirroredStatus } from "../stream/mod.ts";
import { errorMessage } from "../util/mod.ts";

/** Options for serve(). */
export interface ServeOptions {
  /**
   * Opens the service's parts (the index, then Postgres, which may take a while to answer). The
   * port is bound first: meanwhile `/healthz` answers 200 and everything else 503.
   */
  readonly open: () => Promise<Runtime>;
  readonly config: Config;
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** Extra routes, e.g. the status page. */
  readonly extend?: (app: Hono) => void;
  /** Resume collections an earlier process left in flight (default true). */
  readonly autoResume?: boolean;
  readonly onListen?: (addr: { hostname: string; port: number }) => void;
}

/**
 * Serves until `signal` aborts, then stops the backfill (checkpointing in-flight pages), the server
 * and the runtime. A port that cannot be bound is one typed error naming PORT or HOST.
 */
export async function serve(opts: ServeOptions): Promise<void> {
  const { config, log } = opts;
  let handler: (req: Request) => Response | Promise<Response> = starting;
  const server = await bind(config, opts, (req) => handler(req));
  let rt: Runtime;
  try {
    rt = await opts.open();
  } catch (err) {
    await server.shutdown().catch(() => {});
    throw err;
  }
  try {
    // A signal during startup (migrations, opening the index) must not be lost: an abort listener
    // added after it would never fire. Deno.serve's own signal has already closed the port.
    if (opts.signal.aborted) return;
    // The stream starts before any backfill, so that together they leave no gap (see README).
    const liveStore = new LiveStreamStore(rt.sql);
    const consumer = config.liveStream
      ? await LiveConsumer.open({
        endpoint: config.liveStream,
        index: rt.index,
        log,
        mirror: liveStore,
        idleTimeoutMs: config.liveIdleTimeoutMs,
      })
      : undefined;
    const consuming = consumer?.run(opts.signal).catch((err) =>
      log.error("live stream stopped", { error: errorMessage(err) })
    );
    const live = async (): Promise<LiveStatus | null> => {
      if (consumer) return consumer.status();
      const row = await liveStore.latest();
      return row ? mirroredStatus(row, await liveStore.collections(), Date.now()) : null;
    };
    const app = createApp({
      backfiller: rt.backfiller,
      index: rt.index,
      progress: rt.progress,
      adminPassword: config.adminPassword,
      defaultSource: config.source,
      log,
      metrics: async () => renderMetrics(rt, await live().catch(() => null)),
      live,
      extend: (app) => {
        statusPageRoutes({
          backfiller: rt.backfiller,
          progress: rt.progress,
          adminPassword: config.adminPassword,
          signal: opts.signal,
          live,
        })(app);
        opts.extend?.(app);
      },
    });
    handler = app.fetch;
    // Listings are answered on the front's thread from here on, beside whatever this one is doing.
    // (A failure is logged by the front, and listings stay here.)
    await server.serveIndex(rt.index).catch(() => {});
    // "listening" came at bind time, during startup; this says the whole service now answers.
    log.info("ready", { live: config.liveStream?.url ?? null });
    // Listen first: a signal during the boot-time resume must stop that run too.
    opts.signal.addEventListener("abort", () => {
      log.info("shutting down");
      rt.backfiller.stop({ resumable: true });
    }, { once: true });
    if ((opts.autoResume ?? true) && !opts.signal.aborted) await resumeInterrupted(rt, log);
    startRetryLoop({ backfiller: rt.backfiller, progress: rt.progress, log, signal: opts.signal });
    if (consumer) watchCatchUp(rt, consumer, config, log, opts.signal);
    await server.finished;
    await rt.backfiller.stop({ resumable: true });
    await consuming;
  } catch (err) {
    await server.shutdown().catch(() => {});
    throw err;
  } finally {
    await rt.close();
  }
}

/**
 * Clears the live stream's "catch-up needed" mark once a backfill that started after it completes
 * every collection, and (with LIVE_AUTO_CATCH_UP) starts that catch-up when no backfill runs.
 */
function watchCatchUp(
  rt: Runtime,
  consumer: LiveConsumer,
  config: Config,
  log: Logger,
  signal: AbortSignal,
): void {
  let startedFor: number | null = null;
  const tick = async () => {
    const st = rt.backfiller.state;
    const since = consumer.checkpoint.catchUpSince;
    if (since === null) return;
    if (
      st && !rt.backfiller.running && st.endedAt !== undefined && st.failed.length === 0 &&
      st.finished >= st.queued && st.startedAt >= since
    ) {
      await consumer.catchUpDone(st.startedAt);
      return;
    }
    if (!config.liveAutoCatchUp || rt.backfiller.running || startedFor === since) return;
    startedFor = since;
    const started = await rt.backfiller.start({ source: config.source, catchUp: true });
    log.info("live stream: starting the catch-up backfill it needs", {
      reason: consumer.checkpoint.catchUpReason,
      queued: started.queued,
    });
    started.done.catch((err) => log.error("backfill failed", { error: errorMessage(err) }));
  };
  const timer = setInterval(() => {
    tick().catch((err) => log.debug("catch-up watch skipped a tick", { error: errorMessage(err) }));
  }, 5_000);
  signal.addEventListener("abort", () => clearInterval(timer), { once: true });
}

/** Binds the port through the HTTP front, which closes it when `signal` aborts. */
async function bind(
  config: Config,
  opts: ServeOptions,
  handler: (req: Request) => Response | Promise<Response>,
): Promise<HttpFront> {
  const front = await startFront({
    hostname: config.host,
    port: config.port,
    handler,
    log: opts.log,
  });
  opts.log.info("listening", {
    host: front.addr.hostname,
    port: front.addr.port,
    admin: config.adminPassword ? "on" : "off",
  });
  opts.onListen?.(front.addr);
  if (opts.signal.aborted) front.shutdown();
  else opts.signal.addEventListener("abort", () => front.shutdown(), { once: true });
  return front;
}

/** Answers while startup waits for Postgres: alive, not ready. */
function starting(req: Request): Response {
  const path = new URL(req.url).pathname;
  if (path === "/healthz") return Response.json({ status: "starting" });
  if (path === "/readyz") {
    return Response.json({ ready: false, starting: "waiting for Postgres" }, { status: 503 });
  }
  return Response.json(
    { error: "Unavailable", message: "the server is starting: waiting for Postgres" },
    { status: 503, headers: { "retry-after": "5" } },
  );
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
      // The run was accepted (and any source switch confirmed) before it was interrupted.
      confirmSourceSwitch: true,
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

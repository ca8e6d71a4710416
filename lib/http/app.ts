/** The HTTP surface: XRPC read, admin API, health, readiness and metrics, behind one error boundary. */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { adminAuth } from "./admin_auth.ts";
import type { Backfiller } from "../run/mod.ts";
import {
  BusyError,
  CONFIRM_SOURCE_SWITCH,
  deadline,
  InputError,
  isNsid,
  type Logger,
} from "../util/mod.ts";
import type { IndexStore } from "../index/mod.ts";
import { isRunMode, type ProgressStore } from "../progress/mod.ts";
import { parseSource, type Source } from "../source/mod.ts";
import { buildStatus } from "../status/mod.ts";
import type { LiveStatus } from "../stream/mod.ts";
import { errorBoundary, listReposByCollection, show, single, urlLimit, XRPC_LIST } from "./xrpc.ts";

/** What the HTTP app needs. */
export interface AppOptions {
  readonly backfiller: Backfiller;
  readonly index: IndexStore;
  readonly progress: ProgressStore;
  readonly adminPassword?: string;
  readonly defaultSource: Source;
  readonly log: Logger;
  /** Renders `/metrics` (Prometheus text). */
  readonly metrics?: () => Promise<string>;
  /** The live stream's status, when there is one (see lib/stream). */
  readonly live?: () => Promise<LiveStatus | null>;
  readonly now?: () => number;
  /** How long a start request waits for planning before answering `"planning"` (default 2 s). */
  readonly planWaitMs?: number;
  /** Extra routes (e.g. the status page and its event stream) mounted before the fallback. */
  readonly extend?: (app: Hono) => void;
}

/** Builds the Hono app. */
export function createApp(opts: AppOptions): Hono {
  const app = new Hono();
  const now = opts.now ?? Date.now;

  app.use("*", urlLimit);

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    const index = opts.index.isOpen;
    let progress = false, reimport = 0;
    try {
      await deadline(opts.progress.ping(), 2_000);
      progress = true;
      reimport = await deadline(opts.progress.reimportPending(), 2_000);
    } catch { /* reported below */ }
    // An index that lost collections it once held is not ready until they are imported again.
    const ready = index && progress && reimport === 0;
    return c.json(
      { ready, index, progress, ...(reimport > 0 ? { reimport_pending: reimport } : {}) },
      ready ? 200 : 503,
    );
  });
  app.get("/metrics", async (c) => {
    if (!opts.metrics) throw new HTTPException(404, { message: "metrics are not enabled" });
    return c.text(await opts.metrics(), 200, { "content-type": "text/plain; version=0.0.4" });
  });

  app.get(XRPC_LIST, listReposByCollection((c, l, a) => opts.index.listDids(c, l, a)));

  const admin = new Hono();
  admin.use("*", adminAuth(opts.adminPassword));
  admin.get("/backfill-collections", async (c) => {
    onlyParams(c.req.queries(), []);
    const [rows, record] = await deadline(
      Promise.all([opts.progress.list(), opts.progress.indexRecord()]),
      10_000,
    ).catch((err) => {
      throw new HTTPException(503, { message: `progress database unavailable: ${err.message}` });
    });
    const live = (await opts.live?.().catch(() => null)) ?? null;
    return c.json(
      buildStatus(
        rows,
        opts.backfiller.state,
        opts.backfiller.running,
        now(),
        live,
        record ?? null,
      ),
    );
  });
  admin.post("/backfill-collections", async (c) => {
    const q = c.req.queries();
    onlyParams(q, ["source", "mode", "collection", CONFIRM_SOURCE_SWITCH]);
    const source = q.source ? parseSource(single(q.source, "source")) : opts.defaultSource;
    const mode = q.mode ? single(q.mode, "mode") : "full";
    if (!isRunMode(mode)) {
      throw new InputError(`mode must be "full" or "catch-up", got ${show(mode)}`, "mode");
    }
    const collections = q.collection ?? [];
    for (const col of collections) {
      if (!isNsid(col)) {
        throw new InputError(`collection must be a valid NSID, got ${show(col)}`, "collection");
      }
    }
    const confirm = q[CONFIRM_SOURCE_SWITCH]
      ? flag(single(q[CONFIRM_SOURCE_SWITCH], CONFIRM_SOURCE_SWITCH), CONFIRM_SOURCE_SWITCH)
      : false;
    const run = await opts.backfiller.begin({
      source,
      collections,
      catchUp: mode === "catch-up",
      confirmSourceSwitch: confirm,
    });
    run.done.catch((err) => opts.log.error("backfill failed", { error: (err as Error).message }));
    // Planning (discovery) can be slow: past planWaitMs the answer says so, and status shows it.
    const head = { run: run.id, source: run.source, mode };
    const outcome = await deadline(
      run.planned.then((value) => ({ value }), (error: unknown) => ({ error })),
      opts.planWaitMs ?? 2_000,
    ).catch(() => undefined);
    if (outcome === undefined) return c.json({ status: "planning", ...head });
    if ("error" in outcome) {
      if (isStop(outcome.error)) return c.json({ status: "stopped", ...head });
      throw outcome.error;
    }
    const plan = outcome.value;
    return c.json({
      status: "started",
      ...head,
      collections: plan.collections,
      queued: plan.queued,
      ...(plan.listError ? { warning: plan.listError } : {}),
    });
  });
  admin.post("/backfill-collections/stop", async (c) => {
    onlyParams(c.req.queries(), []);
    if (!(await opts.backfiller.stop())) throw new BusyError("no backfill is running");
    return c.json({ status: "stopped" });
  });
  admin.post("/backfill-collections/reset", async (c) => {
    const q = c.req.queries();
    onlyParams(q, ["collection"]);
    const collections = q.collection ?? [];
    if (collections.length === 0) {
      throw new InputError("reset needs at least one collection", "collection");
    }
    for (const col of collections) {
      if (!isNsid(col)) {
        throw new InputError(`collection must be a valid NSID, got ${show(col)}`, "collection");
      }
    }
    const r = await opts.backfiller.reset(collections);
    return c.json({ reset: r.reset.length, collections: r.reset, unknown: r.unknown });
  });
  app.route("/admin", admin);
  opts.extend?.(app);
  // Known paths asked with another method: 405 naming the allowed ones, not 404.
  for (
    const [path, allow] of [
      [XRPC_LIST, "GET, HEAD"],
      ["/healthz", "GET, HEAD"],
      ["/readyz", "GET, HEAD"],
      ["/metrics", "GET, HEAD"],
    ]
  ) {
    app.all(path, (c) =>
      c.json(
        { error: "MethodNotAllowed", message: `${c.req.method} is not allowed; use ${allow}` },
        405,
        { allow },
      ));
  }

  app.notFound((c) =>
    c.json({ error: "NotFound", message: `no route for ${c.req.method} ${c.req.path}` }, 404)
  );
  app.onError(errorBoundary(opts.log));
  return app;
}

function onlyParams(q: Record<string, string[]>, allowed: readonly string[]): void {
  for (const k of Object.keys(q)) {
    if (!allowed.includes(k)) {
      throw new InputError(
        allowed.length
          ? `unknown parameter ${show(k)} (allowed: ${allowed.join(", ")})`
          : `unknown parameter ${show(k)}`,
        k,
      );
    }
  }
}

function flag(v: string, name: string): boolean {
  if (v === "true") return true;
  if (v === "false") return false;
  throw new InputError(`${name} must be "true" or "false", got ${show(v)}`, name);
}

/** True for the reason a stop request aborts a run with. */
function isStop(err: unknown): boolean {
  return err instanceof DOMException && err.name === "AbortError";
}

/** The HTTP surface: XRPC read, admin API, health, readiness and metrics, behind one error boundary. */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { adminAuth } from "./admin_auth.ts";
import type { Backfiller } from "../run/mod.ts";
import { BusyError, deadline, InputError } from "../util/mod.ts";
import type { IndexStore } from "../index/mod.ts";
import type { Logger } from "../util/mod.ts";
import type { ProgressStore } from "../progress/mod.ts";
import { parseSource, type Source } from "../source/mod.ts";
import { buildStatus } from "../status/mod.ts";
import type { LiveStatus } from "../stream/mod.ts";
import { decodeCursor, encodeCursor } from "./xrpc_cursor.ts";
import { isNsid } from "../util/mod.ts";

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
  /** Extra routes (e.g. the status page and its event stream) mounted before the fallback. */
  readonly extend?: (app: Hono) => void;
}

const XRPC_LIST = "/xrpc/com.atproto.sync.listReposByCollection";

/** Builds the Hono app. */
export function createApp(opts: AppOptions): Hono {
  const app = new Hono();
  const now = opts.now ?? Date.now;

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    const index = opts.index.isOpen;
    let progress = false;
    try {
      await deadline(opts.progress.ping(), 2_000);
      progress = true;
    } catch { /* reported below */ }
    return c.json({ ready: index && progress, index, progress }, index && progress ? 200 : 503);
  });
  app.get("/metrics", async (c) => {
    if (!opts.metrics) throw new HTTPException(404, { message: "metrics are not enabled" });
    return c.text(await opts.metrics(), 200, { "content-type": "text/plain; version=0.0.4" });
  });

  app.get(XRPC_LIST, async (c) => {
    const q = c.req.query();
    const collection = q.collection;
    if (collection === undefined) return xrpcError(c, "collection is required");
    if (!isNsid(collection)) {
      return xrpcError(c, `collection must be a valid NSID, got ${show(collection)}`);
    }
    let limit = 500;
    if (q.limit !== undefined) {
      if (!/^[0-9]{1,4}$/.test(q.limit) || Number(q.limit) < 1 || Number(q.limit) > 2000) {
        return xrpcError(c, `limit must be an integer from 1 to 2000, got ${show(q.limit)}`);
      }
      limit = Number(q.limit);
    }
    let after: string | undefined;
    if (q.cursor !== undefined && q.cursor !== "") {
      after = decodeCursor(q.cursor);
      if (after === undefined) {
        return xrpcError(c, `cursor is not one this server issued: ${show(q.cursor)}`);
      }
    }
    const page = await opts.index.listDids(collection, limit, after);
    const body: { cursor?: string; repos: { did: string }[] } = {
      repos: page.dids.map((did) => ({ did })),
    };
    if (page.last !== undefined) body.cursor = encodeCursor(page.last);
    return c.json(body);
  });

  const admin = new Hono();
  admin.use("*", adminAuth(opts.adminPassword));
  admin.get("/backfill-collections", async (c) => {
    onlyParams(c.req.queries(), []);
    const rows = await deadline(opts.progress.list(), 10_000).catch((err) => {
      throw new HTTPException(503, { message: `progress database unavailable: ${err.message}` });
    });
    const live = (await opts.live?.().catch(() => null)) ?? null;
    return c.json(buildStatus(rows, opts.backfiller.state, opts.backfiller.running, now(), live));
  });
  admin.post("/backfill-collections", async (c) => {
    const q = c.req.queries();
    onlyParams(q, ["source", "mode", "collection"]);
    const source = q.source ? parseSource(single(q.source, "source")) : opts.defaultSource;
    const mode = q.mode ? single(q.mode, "mode") : "full";
    if (mode !== "full" && mode !== "catch-up") {
      throw new InputError(`mode must be "full" or "catch-up", got ${show(mode)}`, "mode");
    }
    const collections = q.collection ?? [];
    for (const col of collections) {
      if (!isNsid(col)) {
        throw new InputError(`collection must be a valid NSID, got ${show(col)}`, "collection");
      }
    }
    const started = await opts.backfiller.start({
      source,
      collections,
      catchUp: mode === "catch-up",
    });
    started.done.catch((err) =>
      opts.log.error("backfill failed", { error: (err as Error).message })
    );
    return c.json({
      status: "started",
      source: started.source,
      mode,
      collections: started.collections,
      queued: started.queued,
      ...(started.listError ? { warning: started.listError } : {}),
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

  app.notFound((c) =>
    c.json({ error: "NotFound", message: `no route for ${c.req.method} ${c.req.path}` }, 404)
  );
  app.onError((err, c) => {
    if (err instanceof HTTPException) {
      return c.json({ error: errorName(err.status), message: err.message }, err.status);
    }
    if (err instanceof InputError) {
      return c.json({ error: "InvalidRequest", message: err.message }, 400);
    }
    if (err instanceof BusyError) return c.json({ error: "Conflict", message: err.message }, 409);
    opts.log.error("request failed", {
      method: c.req.method,
      path: c.req.path,
      error: err.message,
    });
    return c.json({ error: "InternalServerError", message: "internal error" }, 500);
  });
  return app;
}

function xrpcError(c: { json: (b: unknown, s: 400) => Response }, message: string): Response {
  return c.json({ error: "InvalidRequest", message }, 400);
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

function single(values: string[], name: string): string {
  if (values.length !== 1) throw new InputError(`${name} may be given once`, name);
  return values[0];
}

function show(v: unknown): string {
  const s = typeof v === "string" ? v : String(v);
  return JSON.stringify(s.length > 100 ? s.slice(0, 100) + "…" : s);
}

function errorName(status: number): string {
  return status === 400
    ? "InvalidRequest"
    : status === 401
    ? "AuthRequired"
    : status === 404
    ? "NotFound"
    : "Error";
}

/** The XRPC read and the one error boundary: what both the app and the HTTP front's thread serve. */
import type { ErrorHandler, Handler, MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { DidPage } from "../index/listings.ts";
import {
  BusyError,
  ConfirmationError,
  InputError,
  isNsid,
  type Logger,
  SourceError,
} from "../util/mod.ts";
import { decodeCursor, encodeCursor } from "./xrpc_cursor.ts";

/** The XRPC read this service serves. */
export const XRPC_LIST = "/xrpc/com.atproto.sync.listReposByCollection";

/** The longest URL the app answers. */
export const MAX_URL_BYTES = 16 * 1024;

/** Longer URLs than MAX_URL_BYTES get a JSON 414; past ~64 KiB the HTTP layer refuses them itself. */
export const urlLimit: MiddlewareHandler = async (c, next) => {
  const bytes = new TextEncoder().encode(c.req.url).length;
  if (bytes > MAX_URL_BYTES) {
    return c.json({
      error: "URITooLong",
      message: `the URL is ${bytes} bytes; the limit is ${MAX_URL_BYTES}`,
    }, 414);
  }
  await next();
};

/** Lists one page of a collection's DIDs: IndexStore.listDids, or IndexReader.listDids in the HTTP front. */
export type ListDids = (collection: string, limit: number, after?: string) => Promise<DidPage>;

/** The `com.atproto.sync.listReposByCollection` handler over `list`. */
export function listReposByCollection(list: ListDids): Handler {
  return async (c) => {
    // Repeated parameters are refused, as on the admin routes: the first value must not win silently.
    const all = c.req.queries();
    const q: Record<string, string | undefined> = {};
    for (const name of ["collection", "limit", "cursor"]) {
      if (all[name]) q[name] = single(all[name], name);
    }
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
    const page = await list(collection, limit, after);
    const body: { cursor?: string; repos: { did: string }[] } = {
      repos: page.dids.map((did) => ({ did })),
    };
    if (page.last !== undefined) body.cursor = encodeCursor(page.last);
    return c.json(body);
  };
}

/** The one error boundary: typed errors become their status and JSON body; anything else is logged and a 500. */
export function errorBoundary(log: Logger): ErrorHandler {
  return (err, c) => {
    if (err instanceof HTTPException) {
      return c.json({ error: errorName(err.status), message: err.message }, err.status);
    }
    if (err instanceof InputError) {
      return c.json({ error: "InvalidRequest", message: err.message }, 400);
    }
    if (err instanceof BusyError) return c.json({ error: "Conflict", message: err.message }, 409);
    if (err instanceof ConfirmationError) {
      return c.json({ error: "ConfirmationRequired", message: err.message, ...err.details }, 409);
    }
    if (err instanceof SourceError) {
      return c.json({ error: "BadGateway", message: err.message }, 502);
    }
    log.error("request failed", {
      method: c.req.method,
      path: c.req.path,
      error: err.message,
    });
    return c.json({ error: "InternalServerError", message: "internal error" }, 500);
  };
}

function xrpcError(c: { json: (b: unknown, s: 400) => Response }, message: string): Response {
  return c.json({ error: "InvalidRequest", message }, 400);
}

/** The one value of a query parameter; a repeated one is refused rather than the first winning. */
export function single(values: string[], name: string): string {
  if (values.length !== 1) throw new InputError(`${name} may be given once`, name);
  return values[0];
}

/** A value quoted for an error message, cut at 100 characters. */
export function show(v: unknown): string {
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

/** Bearer-token check for `/admin/*`, compared in constant time. */
import { timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";

const encoder = new TextEncoder();

async function digest(s: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(s)));
}

/** True when `given` equals `expected`; comparing digests keeps time independent of content and length. */
export async function tokensMatch(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([digest(given), digest(expected)]);
  return timingSafeEqual(a, b);
}

/** Middleware: 403 when no password is configured, 401 for a missing or wrong bearer token. */
export function adminAuth(password: string | undefined): MiddlewareHandler {
  return async (c, next) => {
    if (password === undefined || password === "") {
      return c.json({ error: "admin endpoint not configured" }, 403);
    }
    const header = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(.+)$/i.exec(header);
    if (!m || !(await tokensMatch(m[1].trim(), password))) {
      c.header("WWW-Authenticate", 'Bearer realm="backfill admin"');
      return c.json({ error: "AuthRequired", message: "missing or invalid bearer token" }, 401);
    }
    await next();
  };
}

/** Stage 6a, HTTP: the Hono app (XRPC read, admin API, health, metrics), the status page, and the front thread that owns the port. */
export * from "./admin_auth.ts";
export * from "./app.ts";
export * from "./front.ts";
export * from "./metrics.ts";
export * from "./status_page.ts";
export * from "./xrpc.ts";
export * from "./xrpc_cursor.ts";

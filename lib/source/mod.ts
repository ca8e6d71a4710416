/** Stage 1, the source: source relays (parsing, HTTP client, rate limiting, sizes) and collection discovery. */
export * from "./client.ts";
export * from "./discovery.ts";
export * from "./http_body.ts";
export * from "./rate_limiter.ts";
export * from "./source.ts";

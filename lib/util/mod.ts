/** Shared basics every stage may use: command lines, typed errors, JSON field readers, logging, sleep and retry, the Buffer pool, atproto syntax checks. */
export * from "./args.ts";
export * from "./async.js";
export * from "./buffer.ts";
export * from "./clock.ts";
export * from "./errors.ts";
export * from "./json.ts";
export * from "./log.ts";
export * from "./syntax.ts";

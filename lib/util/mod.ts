/** Shared basics every stage may use: typed errors, logging, abortable sleep, atproto syntax checks. */
export * from "./errors.ts";
export * from "./log.ts";
export * from "./sleep.ts";
export * from "./syntax.ts";
export * from "./retry.ts";

/** Stage 4, the run: the backfiller that drives paging into the index and progress, and its live state. */
export * from "./backfill.ts";
export * from "./collection.ts";
export * from "./retry_loop.ts";
export * from "./state.ts";
export * from "./index_identity.ts";

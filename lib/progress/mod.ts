/** Stage 3b, progress: resumable progress in Postgres (store, SQL migrations, run lock, embedded PGlite). */
export * from "./embedded_pg.ts";
export * from "./migrate.ts";
export * from "./run_lock.ts";
export * from "./store.ts";
export * from "./live.ts";

/** Stage 3a, the index: LevelDB keys, page decisions (no I/O), the store, and layout migrations. */
export * from "./keys.ts";
export * from "./migrate.ts";
export * from "./page.ts";
export * from "./store.ts";
export * from "./listings.ts";
export * from "./reader.ts";
export * from "./live.ts";

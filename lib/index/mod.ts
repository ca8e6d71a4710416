/** Stage 3a, the index: the LevelDB collection index (keys, store, migrations between key layouts). */
export * from "./keys.ts";
export * from "./migrate.ts";
export * from "./store.ts";
export * from "./listings.ts";
export * from "./reader.ts";
export * from "./live.ts";

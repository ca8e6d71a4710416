/** Test tooling, not the service: a simulated source relay over a deterministic world. */
export * from "./cli.ts";
export * from "./cursor.ts";
export * from "./faults.ts";
export * from "./llms_txt.ts";
export * from "./relay.ts";
export * from "./stats.ts";
export * from "./token_bucket.ts";
export * from "./world.ts";
export * from "./commit.ts";
export * from "./stream.ts";

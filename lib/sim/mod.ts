/** Test tooling, not the service: a simulated source relay over a deterministic world. */
export * from "./relay.ts";
export * from "./world.ts";

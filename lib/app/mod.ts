/** Stage 7, the modes: configuration, opening the stateful parts, and server mode. */
export * from "./config.ts";
export * from "./runtime.ts";
export * from "./server.ts";

/** Stage 6b, command line: the one-shot run's output and the operator's status CLI. */
export * from "./oneshot.ts";
export * from "./status.ts";

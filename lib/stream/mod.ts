/** Stage 3c, the live stream: a relay's firehose or a Jetstream, decoded and written into the index. */
export * from "./consumer.ts";
export * from "./decide.ts";
export * from "./event.ts";
export * from "./firehose.ts";
export * from "./jetstream.ts";
export * from "./plan.ts";
export * from "./proof.ts";
export * from "./url.ts";

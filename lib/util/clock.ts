/** Time as the service sees it: injectable, so tests can fake it. */
import { sleep } from "./async.js";

/** A clock and sleeper, injectable so tests can fake time. */
export interface Clock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The real clock. */
export const systemClock: Clock = { now: () => Date.now(), sleep };

/**
 * Server mode's background loop: failed collections are retried when their next-retry time comes,
 * and collections marked for re-import (the index was lost) are imported again.
 */
import type { Backfiller } from "./backfill.ts";
import { errorMessage } from "../util/mod.ts";
import type { Logger } from "../util/mod.ts";
import type { ProgressStore } from "../progress/mod.ts";
import { parseSource } from "../source/mod.ts";

/** Options for startRetryLoop. */
export interface RetryLoopOptions {
  readonly backfiller: Backfiller;
  readonly progress: ProgressStore;
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** How often due collections are looked for (default 60 s). */
  readonly everyMs?: number;
  readonly now?: () => number;
}

/**
 * Starts the loop, with a first look right away; it stops when `signal` aborts. Only runs while no
 * other backfill is running.
 */
export function startRetryLoop(opts: RetryLoopOptions): void {
  const now = opts.now ?? Date.now;
  let busy = false;
  const tick = async () => {
    if (busy || opts.backfiller.running || opts.signal.aborted) return;
    busy = true;
    try {
      const due = (await opts.progress.list()).filter((r) =>
        r.completedAt === null && (r.reimport ||
          r.lastError !== null && r.nextRetryAt !== null && r.nextRetryAt.getTime() <= now())
      );
      if (due.length === 0 || opts.backfiller.running) return;
      // One source per run: cursors belong to the source that issued them.
      const source = due[0].source;
      const collections = due.filter((r) => r.source === source).map((r) => r.collection);
      const started = await opts.backfiller.start({ source: parseSource(source), collections });
      opts.log.info("retrying failed collections and re-imports", { source, collections });
      started.done.catch((err) => opts.log.error("retry run failed", { error: errorMessage(err) }));
    } catch (err) {
      opts.log.debug("retry loop skipped a tick", { error: errorMessage(err) });
    } finally {
      busy = false;
    }
  };
  const first = setTimeout(tick, 0);
  const timer = setInterval(tick, opts.everyMs ?? 60_000);
  opts.signal.addEventListener("abort", () => {
    clearTimeout(first);
    clearInterval(timer);
  }, { once: true });
}

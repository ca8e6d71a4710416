/** One-shot mode: run a backfill to the end, print progress while it runs, and pick an exit code. */
import type { Backfiller, RunRequest, RunSummary } from "../run/mod.ts";
import { formatCount, formatDuration, formatRate, invalidWarning } from "../status/mod.ts";
import type { RunState } from "../run/mod.ts";

/** Options for runOneShot. */
export interface OneShotOptions {
  readonly backfiller: Backfiller;
  readonly request: RunRequest;
  readonly out: (line: string) => void;
  readonly signal: AbortSignal;
  readonly progressEveryMs?: number;
  readonly now?: () => number;
}

/**
 * Runs to completion. Exit code 0 when every collection completed, or when a signal stopped the run
 * cleanly (it resumes next time); 1 when any collection failed.
 */
export async function runOneShot(
  opts: OneShotOptions,
): Promise<{ code: number; summary?: RunSummary }> {
  const now = opts.now ?? Date.now;
  // Listen before starting: a signal during planning (discovery, seeding) must stop it too.
  const onAbort = () => opts.backfiller.stop({ resumable: true });
  opts.signal.addEventListener("abort", onAbort, { once: true });
  let timer: ReturnType<typeof setInterval> | undefined;
  let summary: RunSummary;
  try {
    if (opts.signal.aborted) throw opts.signal.reason;
    const started = await opts.backfiller.start(opts.request);
    if (started.listError) {
      opts.out(`warning: ${started.listError}; using the collections already in the index`);
    }
    opts.out(
      `backfill from ${started.source}: ${started.collections} collections, ${started.queued} to page` +
        (opts.request.catchUp ? " (catch-up)" : ""),
    );
    timer = setInterval(() => {
      const state = opts.backfiller.state;
      if (state) opts.out(progressLine(state, now()));
    }, opts.progressEveryMs ?? 5_000);
    summary = await started.done;
  } catch (err) {
    if (!opts.signal.aborted) throw err;
    opts.out("stopped by signal before the run began; nothing was lost");
    return { code: 0 };
  } finally {
    clearInterval(timer);
    opts.signal.removeEventListener("abort", onAbort);
  }
  opts.out(
    `${summary.stopped ? "stopped" : "done"} in ${formatDuration(summary.seconds)}: ` +
      `${summary.completed} completed, ${summary.failed.length} failed, ` +
      `${formatCount(summary.imported)} DIDs imported (${
        formatCount(summary.new)
      } new to the index), ${formatCount(summary.invalid)} invalid entries skipped`,
  );
  if (summary.stopReason) opts.out(`stopped: ${summary.stopReason}`);
  else if (summary.stopped) {
    opts.out("stopped by signal; run it again to resume from the saved cursors");
  }
  for (const f of summary.failed) opts.out(`failed: ${f.collection}: ${f.error}`);
  for (const f of summary.flagged) {
    opts.out(
      `flagged: ${f.collection}: ${invalidWarning(f.invalid)} ` +
        `(deno task backfill --reset --collection ${f.collection}); ${f.imported} DIDs imported`,
    );
  }
  return { code: summary.failed.length > 0 || summary.stopReason ? 1 : 0, summary };
}

/** One line of progress for a terminal or a log file. */
export function progressLine(state: RunState, now: number): string {
  const { didsPerSec } = state.rates(now);
  const active = [...state.active.values()]
    .sort((a, b) => b.imported - a.imported)
    .slice(0, 3)
    .map((a) => `${a.collection} ${formatCount(a.imported)}`);
  return `[${
    formatDuration((now - state.startedAt) / 1000)
  }] ${state.finished}/${state.queued} collections, ` +
    `${state.failed.length} failed, ${formatCount(state.imported)} DIDs (${
      formatRate(didsPerSec)
    }/s)` +
    (active.length ? `; in flight: ${active.join(", ")}` : "");
}

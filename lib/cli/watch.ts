/** `watch`: polls the status and redraws it (in place on a terminal) until the run ends. */
import {
  type CollectionStatus,
  formatCount,
  formatDuration,
  formatPercent,
  formatRate,
  formatTable,
  progressBar,
  type StatusDocument,
  truncate,
} from "../status/mod.ts";
import { CliFailure, type Context, fetchStatus, Interrupted } from "./api.ts";
import { rateText, renderStatus } from "./summary.ts";
import { clock } from "./text.ts";
import { errorMessage, retry, sleep } from "../util/mod.ts";

const WATCH_BAR_LIMIT = 15;
const WATCH_MAX_FAILURES = 10;
const SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";

interface WatchState {
  polls: number;
  sawRunning: boolean;
  shownLines: number;
  idleShown: boolean;
  previous?: { at: number; imported: Map<string, number> };
}

/** Watches until the run ends (0), Ctrl-C (0), or a failure that is not worth retrying. */
export async function watch(ctx: Context, intervalMs: number): Promise<number> {
  const state: WatchState = { polls: 0, sawRunning: false, shownLines: 0, idleShown: false };
  try {
    while (true) {
      const status = await pollForWatch(ctx, state, intervalMs);
      if (status.running) state.sawRunning = true;
      if (!status.running && state.sawRunning) {
        finishWatch(ctx, status);
        return 0;
      }
      drawWatch(ctx, state, status);
      await sleep(intervalMs, ctx.signal);
    }
  } catch (e) {
    if (e instanceof Interrupted || ctx.signal?.aborted) return 0;
    throw e;
  }
}

/**
 * One poll. After a first success, transient failures (a restarting server) are retried every
 * interval, up to {@link WATCH_MAX_FAILURES} in a row.
 */
async function pollForWatch(
  ctx: Context,
  state: WatchState,
  intervalMs: number,
): Promise<StatusDocument> {
  const status = await retry(() => fetchStatus(ctx), {
    signal: ctx.signal,
    maxAttempts: WATCH_MAX_FAILURES,
    isRetriable: (e) => e instanceof CliFailure && e.transient && state.polls > 0,
    minTimeout: intervalMs,
    multiplier: 1,
    jitter: 0,
    onRetry: (e) => {
      ctx.err(`warning: ${errorMessage(e)}; retrying`);
      state.shownLines = 0; // the warning broke the in-place redraw; start a fresh frame below it
    },
  });
  state.polls++;
  return status;
}

function drawWatch(ctx: Context, state: WatchState, status: StatusDocument): void {
  const now = ctx.now();
  if (ctx.isTty) {
    const lines = renderFrame(status, state, now).map((l) => truncate(l, ctx.columns - 1));
    // Move up over the previous frame and clear to the end of the screen, then draw over it.
    const prefix = state.shownLines > 0 ? `\x1b[${state.shownLines}A\x1b[J` : "";
    lines.forEach((line, i) => ctx.out(i === 0 ? prefix + line : line));
    state.shownLines = lines.length;
  } else if (status.running) {
    ctx.out(plainWatchLine(status, now));
  } else if (!state.idleShown) {
    ctx.out(`${clock(now)} no backfill is running; waiting for one to start (Ctrl-C to quit)`);
  }
  state.idleShown = !status.running;
  state.previous = {
    at: now,
    imported: new Map(status.collections.map((c) => [c.collection, c.imported])),
  };
}

function finishWatch(ctx: Context, status: StatusDocument): void {
  const failed = status.failed > 0 ? `, ${status.failed} failed` : "";
  ctx.out(`backfill run ended: ${status.completed}/${status.total} collections done${failed}`);
  for (const line of renderStatus(status, ctx.now())) ctx.out(line);
}

function plainWatchLine(s: StatusDocument, now: number): string {
  const parts = [
    `${s.completed}/${s.total} collections (${formatPercent(s.total ? s.completed / s.total : 0)})`,
    `${s.in_progress} in progress`,
    `${s.failed} failed`,
    `${formatCount(s.total_imported)} DIDs (+${formatCount(s.total_new)} new)`,
  ];
  if (s.run) {
    parts.push(`${formatRate(s.run.dids_per_sec)} DIDs/s`);
    parts.push(`ETA ${formatDuration(s.run.eta_seconds ?? NaN)}`);
  }
  return `${clock(now)} ${parts.join(" · ")}`;
}

function renderFrame(s: StatusDocument, state: WatchState, now: number): string[] {
  const spin = SPINNER[state.polls % SPINNER.length];
  if (!s.running) {
    return [`${spin} no backfill is running; waiting for one to start (Ctrl-C to quit)`];
  }
  const fraction = s.total ? s.completed / s.total : 0;
  const run = s.run;
  const started = run ? Date.parse(run.started_at) : NaN;
  const header = run
    ? `${spin} backfill ${run.mode} from ${run.source} · running ${
      Number.isNaN(started) ? "?" : formatDuration((now - started) / 1000)
    }`
    : `${spin} backfill running`;
  const lines = [
    header,
    `overall ${progressBar(fraction, 30)} ${formatPercent(fraction)}  ` +
    `${s.completed}/${s.total} collections · ${s.failed} failed`,
    `        ${formatCount(s.total_imported)} DIDs (+${formatCount(s.total_new)} new)` +
    (run ? ` · ${rateText(run)}` : ""),
  ];
  return [...lines, ...collectionBars(s.collections, state, now, spin)];
}

function collectionBars(
  all: CollectionStatus[],
  state: WatchState,
  now: number,
  spin: string,
): string[] {
  const active = all.filter((c) => c.active).sort((a, b) => b.imported - a.imported);
  const rows = active.slice(0, WATCH_BAR_LIMIT).map((c) => {
    const total = c.estimated_total;
    const bar = total
      ? `${progressBar(c.imported / total, 20)} ${formatPercent(c.imported / total).padStart(6)}`
      : `${spin} ${formatCount(c.imported)} DIDs`;
    const amount = total ? `${formatCount(c.imported)} / ${formatCount(total)}` : "";
    const rate = collectionRate(c, state, now);
    return [
      truncate(c.collection, 40),
      bar,
      amount,
      rate === undefined ? "" : `${formatRate(rate)}/s`,
    ];
  });
  const lines = formatTable(rows);
  if (active.length > WATCH_BAR_LIMIT) {
    lines.push(`… and ${active.length - WATCH_BAR_LIMIT} more active`);
  }
  return lines;
}

/** DIDs per second since the previous poll, when there was one. */
function collectionRate(c: CollectionStatus, state: WatchState, now: number): number | undefined {
  const before = state.previous?.imported.get(c.collection);
  const seconds = state.previous ? (now - state.previous.at) / 1000 : 0;
  if (before === undefined || seconds <= 0) return undefined;
  return Math.max(0, c.imported - before) / seconds;
}

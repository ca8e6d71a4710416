/** The backfiller: plans a run, pages collections concurrently (largest first), and records the outcome. */
import { runCollection } from "./collection.ts";
import type { Discovered } from "../source/mod.ts";
import {
  BusyError,
  CONFIRM_SOURCE_SWITCH,
  ConfirmationError,
  errorMessage,
  InputError,
  SourceError,
} from "../util/mod.ts";
import { type IndexStore, initialCheckpoint } from "../index/mod.ts";
import type { Logger } from "../util/mod.ts";
import type { ProgressRow, ProgressStore, RunIntent, RunMode } from "../progress/mod.ts";
import type { RunLock } from "../progress/mod.ts";
import { type FlaggedCollection, RunState } from "./state.ts";
import { type Backoff, backoffDelay, type Clock, systemClock } from "../util/mod.ts";
import type { SourceClient } from "../source/mod.ts";
import { type Source, sourceAllowed } from "../source/mod.ts";
import { isNsid } from "../util/mod.ts";

/** What to run. */
export interface RunRequest {
  readonly source: Source;
  /** Only these collections; otherwise discover. */
  readonly collections?: readonly string[];
  readonly catchUp?: boolean;
  /** Allows a catch-up to restart completed collections that another source imported. */
  readonly confirmSourceSwitch?: boolean;
}

/** How a run ended. */
export interface RunSummary {
  readonly source: string;
  readonly completed: number;
  readonly failed: readonly { collection: string; error: string }[];
  /** True when a stop or shutdown ended the run before every collection finished. */
  readonly stopped: boolean;
  /** Why the run was stopped, when it was not a plain stop request (e.g. the run lock was lost). */
  readonly stopReason?: string;
  readonly imported: number;
  readonly new: number;
  /** Entries skipped in this run because they were not valid DIDs. */
  readonly invalid: number;
  /** The `limit` the run's last pages were asked for with (0 when it paged nothing). */
  readonly pageLimit: number;
  /** Collections completed in this run with such entries. */
  readonly flagged: readonly FlaggedCollection[];
  readonly seconds: number;
}

/** What planning decided. */
export interface RunPlan {
  /** Collections discovered or named for this run. */
  readonly collections: number;
  /** Of those, how many this run will page (the rest are already complete). */
  readonly queued: number;
  /** Why discovery fell back to the index's collections, when it did. */
  readonly listError?: string;
}

/** A run that has begun; it may still be planning. */
export interface BegunRun {
  readonly id: string;
  readonly source: string;
  readonly mode: RunMode;
  /** Resolves once planning is done; rejects when planning failed or a stop came first. */
  readonly planned: Promise<RunPlan>;
  /** Resolves when the run ends, stopped included; rejects only when planning failed. */
  readonly done: Promise<RunSummary>;
}

/** A started run, its planning done. */
export interface StartedRun extends BegunRun, RunPlan {}

/** Observer hooks, for metrics and logs. */
export interface BackfillObserver {
  page?(source: string, dids: number, imported: number, newCount: number, invalid: number): void;
  collectionEvent?(collection: string, event: "started" | "completed" | "failed"): void;
}

/** Everything a Backfiller needs. */
export interface BackfillerOptions {
  readonly index: IndexStore;
  readonly progress: ProgressStore;
  readonly clientFor: (source: Source) => SourceClient;
  readonly discover: (signal: AbortSignal) => Promise<Discovered>;
  /** Source's own collection sizes, when it can tell; used to start the largest first. */
  readonly sourceSizes?: (
    client: SourceClient,
    signal: AbortSignal,
  ) => Promise<Map<string, number>>;
  /** When set, the only source hosts a run may use (BACKFILL_SOURCE_HOSTS). */
  readonly sourceHosts?: readonly string[];
  /** Takes the cross-process lock, or returns undefined when another process holds it. */
  readonly lock?: (onLost: (err: Error) => void) => Promise<RunLock | undefined>;
  readonly concurrency: number;
  readonly pageLimit: number;
  readonly pagePauseMs: number;
  readonly log: Logger;
  readonly clock?: Clock;
  readonly observer?: BackfillObserver;
  /** Delay before a failed collection is due again, by attempt. */
  readonly retryDelayMs?: (attempts: number) => number;
  /** How often a running backfill logs a one-line summary (default 30 s; 0 turns it off). */
  readonly summaryEveryMs?: number;
}

interface ActiveRun {
  state?: RunState;
  readonly abort: AbortController;
  done?: Promise<RunSummary>;
  /** Resolves once the run (or its planning, or a reset) has let go of everything. */
  readonly settled: Promise<void>;
  readonly settle: () => void;
  resumable: boolean;
}

/** Well-known large collections, started first when no better size is known. */
const KNOWN_LARGE: Record<string, number> = {
  "app.bsky.feed.like": 30e6,
  "app.bsky.feed.post": 28e6,
  "app.bsky.actor.profile": 27e6,
  "app.bsky.graph.follow": 26e6,
  "app.bsky.feed.repost": 15e6,
  "chat.bsky.actor.declaration": 10e6,
  "app.bsky.graph.block": 8e6,
  "app.bsky.feed.threadgate": 3e6,
  "app.bsky.graph.listitem": 2e6,
  "app.bsky.graph.list": 1e6,
  "app.bsky.feed.postgate": 1e6,
};

/** Runs one backfill at a time. */
export class Backfiller {
  readonly #opts: BackfillerOptions;
  readonly #clock: Clock;
  #run?: ActiveRun;
  #last?: RunState;

  constructor(opts: BackfillerOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
  }

  /** True while a run is planning or paging. */
  get running(): boolean {
    return this.#run !== undefined;
  }

  /** The running run's live state, or the last one's. */
  get state(): RunState | undefined {
    return this.#run?.state ?? this.#last;
  }

  /** Plans and starts a run, returning once planning is done; throws BusyError if one is running. */
  async start(req: RunRequest): Promise<StartedRun> {
    const run = await this.begin(req);
    return { ...run, ...await run.planned };
  }

  /**
   * Starts a run and returns as soon as it is claimed, before planning (discovery can take a while).
   * Refuses, before anything is recorded, a catch-up that would restart completed collections on
   * another source without `confirmSourceSwitch`. Throws BusyError if a run is going here or in
   * another process.
   */
  async begin(req: RunRequest): Promise<BegunRun> {
    for (const c of req.collections ?? []) {
      if (!isNsid(c)) {
        throw new InputError(`collection ${JSON.stringify(c)} is not a valid NSID`, "collection");
      }
    }
    const hosts = this.#opts.sourceHosts;
    if (hosts && !sourceAllowed(req.source, hosts)) {
      throw new InputError(
        `source ${req.source.name} is not on the allow-list of source hosts ` +
          `(BACKFILL_SOURCE_HOSTS: ${hosts.join(", ")})`,
        "source",
      );
    }
    const mode: RunMode = req.catchUp ? "catch-up" : "full";
    const { run, lock } = await this.#claim("a backfill is already running");
    const state = new RunState({
      id: crypto.randomUUID().slice(0, 8),
      source: req.source.name,
      mode,
      startedAt: this.#clock.now(),
    });
    run.state = state;
    const signal = run.abort.signal;
    try {
      if (!signal.aborted) await this.#refuseUnconfirmedSwitch(req);
    } catch (err) {
      await this.#release(run, lock);
      throw err;
    }
    const { log, progress } = this.#opts;
    const planned = (async () => {
      signal.throwIfAborted();
      await progress.beginRun({ source: req.source.name, mode, collections: req.collections });
      const plan = await this.#plan(req, signal);
      state.planned(plan.collections, plan.queue.length);
      log.info("backfill started", {
        run: state.id,
        source: req.source.name,
        mode,
        collections: plan.collections,
        queued: plan.queue.length,
      });
      return plan;
    })();
    const done = planned.then(
      (plan) => this.#execute(req, plan.queue, state, signal),
      (err) => {
        if (!signal.aborted) throw err;
        // Stopped while planning: nothing was paged.
        return this.#summary(req, state, signal, 0, true);
      },
    ).then(async (summary) => {
      // A run ends unless a shutdown interrupted it: then a restarted server resumes it.
      // Bounded, so that a stop while Postgres is down still returns.
      if (!run.resumable || !summary.stopped) {
        await progress.endRun(AbortSignal.timeout(2_000)).catch(() => {});
      }
      return summary;
    }, async (err) => {
      state.error = errorMessage(err);
      await progress.endRun(AbortSignal.timeout(2_000)).catch(() => {});
      throw err;
    }).finally(async () => {
      state.endedAt = this.#clock.now();
      this.#last = state;
      await this.#release(run, lock);
    });
    // Callers handle these; a caller that only awaits one must not leave the other unhandled.
    planned.catch(() => {});
    done.catch(() => {});
    return {
      id: state.id,
      source: req.source.name,
      mode,
      planned: planned.then((p) => ({
        collections: p.collections,
        queued: p.queue.length,
        listError: p.listError,
      })),
      done,
    };
  }

  /** Throws ConfirmationError when a catch-up would restart completed collections on another source. */
  async #refuseUnconfirmedSwitch(req: RunRequest): Promise<void> {
    if (!req.catchUp || req.confirmSourceSwitch) return;
    const named = req.collections?.length ? new Set(req.collections) : undefined;
    const switching = (await this.#opts.progress.list()).filter((r) =>
      r.completedAt !== null && r.source !== req.source.name &&
      (named === undefined || named.has(r.collection))
    );
    if (switching.length === 0) return;
    const dids = switching.reduce((n, r) => n + r.imported, 0);
    const from = [...new Set(switching.map((r) => r.source))].sort();
    throw new ConfirmationError(
      `catch-up from ${req.source.name} would restart ${switching.length} completed collection(s) ` +
        `(${dids} DIDs) imported from ${
          from.join(", ")
        } from the beginning; nothing was changed. ` +
        `Repeat it with ${CONFIRM_SOURCE_SWITCH} to go ahead`,
      CONFIRM_SOURCE_SWITCH,
      { collections: switching.length, dids, from },
    );
  }

  /**
   * Stops the running backfill (or its planning); in-flight pages are checkpointed. With
   * `resumable`, as on shutdown, a restarted server picks the same run up again.
   */
  async stop(opts: { resumable?: boolean } = {}): Promise<boolean> {
    const run = this.#run;
    if (!run) return false;
    run.resumable = opts.resumable ?? false;
    run.abort.abort(new DOMException("backfill stopped", "AbortError"));
    await run.settled;
    return true;
  }

  /** The run a previous process left in flight, if any (see `stop({ resumable })`). */
  async interrupted(): Promise<RunIntent | undefined> {
    return await this.#opts.progress.interruptedRun();
  }

  /** Starts collections over from the beginning: new generation, zero counts, empty cursor. */
  async reset(collections: readonly string[]): Promise<{ reset: string[]; unknown: string[] }> {
    const { run, lock } = await this.#claim("cannot reset while a backfill is running");
    try {
      const reset: string[] = [], unknown: string[] = [];
      for (const c of collections) {
        const row = await this.#opts.progress.get(c);
        const cp = await this.#opts.index.getCheckpoint(c);
        if (!row && !cp) {
          unknown.push(c);
          continue;
        }
        const source = cp?.source ?? row!.source;
        await this.#opts.index.putCheckpoint(c, initialCheckpoint(source, cp?.gen));
        if (row) await this.#opts.progress.restart(c, source);
        reset.push(c);
      }
      return { reset, unknown };
    } finally {
      await this.#release(run, lock);
    }
  }

  /** Takes exclusivity in this process (synchronously, so concurrent calls see it) and across processes. */
  async #claim(busy: string): Promise<{ run: ActiveRun; lock?: RunLock }> {
    if (this.#run) throw new BusyError(busy);
    let settle!: () => void;
    const settled = new Promise<void>((r) => settle = r);
    const abort = new AbortController();
    const run: ActiveRun = { abort, settled, settle, resumable: false };
    this.#run = run;
    try {
      if (!this.#opts.lock) return { run };
      const lock = await this.#opts.lock((err) => {
        this.#opts.log.error("backfill stopped: run lock lost", { error: err.message });
        abort.abort(err);
      });
      if (!lock) {
        throw new BusyError("another process is running a backfill against this progress database");
      }
      return { run, lock };
    } catch (err) {
      await this.#release(run, undefined);
      throw err;
    }
  }

  async #release(run: ActiveRun, lock: RunLock | undefined): Promise<void> {
    await lock?.release().catch(() => {});
    if (this.#run === run) this.#run = undefined;
    run.settle();
  }

  async #plan(
    req: RunRequest,
    signal: AbortSignal,
  ): Promise<{ collections: number; queue: ProgressRow[]; listError?: string }> {
    const { progress, log } = this.#opts;
    let names: string[];
    let listError: string | undefined;
    if (req.collections && req.collections.length > 0) {
      names = [...new Set(req.collections)];
    } else {
      const found = await this.#opts.discover(signal);
      log.info("collections discovered", {
        total: found.collections.length,
        from_list: found.fromList,
        from_index: found.fromIndex,
      });
      names = found.collections;
      listError = found.listError;
    }
    await progress.seed(names, req.source.name);
    if (this.#opts.sourceSizes) {
      try {
        const sizes = await this.#opts.sourceSizes(this.#opts.clientFor(req.source), signal);
        const wanted = new Set(names);
        await progress.setEstimates(new Map([...sizes].filter(([c]) => wanted.has(c))));
      } catch (err) {
        log.debug("source sizes unavailable", { error: errorMessage(err) });
      }
    }
    const wanted = req.collections && req.collections.length > 0 ? new Set(names) : undefined;
    const all = await progress.list();
    if (listError !== undefined && names.length === 0 && all.length === 0) {
      // Not a success with nothing to do: a Job must fail when discovery did.
      throw new SourceError(
        `${listError}; the index holds no collections either, so there is nothing to backfill`,
        { retryable: true },
      );
    }
    const rows: ProgressRow[] = [];
    for (const r of all) {
      if (wanted && !wanted.has(r.collection)) continue;
      if (req.catchUp || r.completedAt === null || !(await this.#indexHolds(r))) rows.push(r);
    }
    rows.sort((a, b) => priority(b) - priority(a) || (a.collection < b.collection ? -1 : 1));
    return { collections: names.length, queue: rows, listError };
  }

  /** A row marked complete is only trusted when the index's own checkpoint agrees (it may be new or restored). */
  async #indexHolds(r: ProgressRow): Promise<boolean> {
    const cp = await this.#opts.index.getCheckpoint(r.collection);
    const ok = cp !== undefined && cp.done && cp.source === r.source;
    if (!ok) {
      this.#opts.log.warn("completed collection is not in the index; backfilling it again", {
        collection: r.collection,
      });
    }
    return ok;
  }

  #logSummary(state: RunState): void {
    const { didsPerSec, pagesPerSec } = state.rates(this.#clock.now());
    this.#opts.log.info("backfill progress", {
      source: state.source,
      finished: state.finished,
      queued: state.queued,
      active: [...state.active.keys()],
      failed: state.failed.length,
      imported: state.imported,
      new: state.new,
      dids_per_sec: Math.round(didsPerSec),
      pages_per_sec: Math.round(pagesPerSec * 10) / 10,
      page_limit: state.pageLimit,
    });
  }

  async #execute(
    req: RunRequest,
    queue: ProgressRow[],
    state: RunState,
    signal: AbortSignal,
  ): Promise<RunSummary> {
    const { log, progress, observer } = this.#opts;
    const client = this.#opts.clientFor(req.source);
    state.pageLimit = client.pageLimit(this.#opts.pageLimit);
    let next = 0, completed = 0;
    const worker = async () => {
      while (!signal.aborted && next < queue.length) {
        const row = queue[next++];
        const c = row.collection;
        state.active.set(c, { collection: c, startedAt: this.#clock.now(), imported: 0, pages: 0 });
        observer?.collectionEvent?.(c, "started");
        log.info("collection started", {
          collection: c,
          source: req.source.name,
          cursor: row.cursor !== "",
        });
        try {
          await progress.startAttempt(c);
          const out = await runCollection({
            collection: c,
            client,
            index: this.#opts.index,
            progress,
            pageLimit: this.#opts.pageLimit,
            pagePauseMs: this.#opts.pagePauseMs,
            catchUp: req.catchUp ?? false,
            priority: priority(row),
            clock: this.#clock,
            signal,
            onPage: (e) => {
              state.page(this.#clock.now(), c, e.imported, e.new, e.invalid);
              state.pageLimit = client.pageLimit(this.#opts.pageLimit);
              observer?.page?.(req.source.name, e.dids, e.imported, e.new, e.invalid);
              if (e.invalid > 0) {
                log.warn("skipped invalid DIDs", { collection: c, invalid: e.invalid });
              }
            },
          });
          completed++;
          const invalid = out.checkpoint.invalid ?? 0;
          if (out.fetched && invalid > 0) {
            state.flagged.push({ collection: c, invalid, imported: out.checkpoint.imported });
            log.warn("collection completed with invalid entries", { collection: c, invalid });
          }
          observer?.collectionEvent?.(c, "completed");
          log.info("collection finished", {
            collection: c,
            imported: out.checkpoint.imported,
            new: out.checkpoint.new,
            fetched: out.fetched,
          });
        } catch (err) {
          if (signal.aborted) break;
          const error = errorMessage(err);
          state.failed.push({ collection: c, error });
          observer?.collectionEvent?.(c, "failed");
          log.warn("collection failed", { collection: c, error });
          const delay = (this.#opts.retryDelayMs ?? defaultRetryDelay)(row.attempts + 1);
          await progress.fail(c, error, new Date(this.#clock.now() + delay)).catch((e) =>
            log.error("cannot record failure", { collection: c, error: errorMessage(e) })
          );
        } finally {
          state.active.delete(c);
          state.finished++;
        }
      }
    };
    const every = this.#opts.summaryEveryMs ?? 30_000;
    const ticker = every > 0 ? setInterval(() => this.#logSummary(state), every) : undefined;
    try {
      await Promise.all(
        Array.from({ length: Math.min(this.#opts.concurrency, queue.length) }, worker),
      );
    } finally {
      clearInterval(ticker);
    }
    const summary = this.#summary(
      req,
      state,
      signal,
      completed,
      completed + state.failed.length < queue.length,
    );
    log.info(summary.stopped ? "backfill stopped" : "backfill finished", {
      run: state.id,
      source: summary.source,
      completed,
      failed: state.failed.length,
      imported: summary.imported,
      new: summary.new,
      page_limit: summary.pageLimit,
      seconds: Math.round(summary.seconds),
    });
    return summary;
  }

  #summary(
    req: RunRequest,
    state: RunState,
    signal: AbortSignal,
    completed: number,
    unfinished: boolean,
  ): RunSummary {
    return {
      source: req.source.name,
      completed,
      failed: state.failed,
      stopped: signal.aborted && unfinished,
      stopReason: signal.aborted && !(signal.reason instanceof DOMException)
        ? errorMessage(signal.reason)
        : undefined,
      imported: state.imported,
      new: state.new,
      invalid: state.invalid,
      pageLimit: state.pageLimit,
      flagged: state.flagged,
      seconds: (this.#clock.now() - state.startedAt) / 1000,
    };
  }
}

/**
 * A collection's priority: its best-known size. The largest start first, and their requests go
 * first in the host limiter, so the run is not left waiting on one huge collection at the end.
 */
function priority(r: ProgressRow): number {
  return Math.max(r.estimatedTotal ?? 0, r.imported, KNOWN_LARGE[r.collection] ?? 0);
}

/** A failed collection is due again after 1 min, then 2, 4, … up to 6 h. */
const FAILED_COLLECTION_BACKOFF: Backoff = {
  minTimeout: 60_000,
  maxTimeout: 6 * 3600_000,
  jitter: 0,
};

function defaultRetryDelay(attempts: number): number {
  return backoffDelay(attempts, FAILED_COLLECTION_BACKOFF);
}

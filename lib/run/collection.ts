/** Backfills one collection: resume from its checkpoint, fetching and reading ahead of the writes. */
import {
  type Checkpoint,
  type IndexStore,
  initialCheckpoint,
  type PageLookup,
} from "../index/mod.ts";
import { Pager } from "../paging/mod.ts";
import type { ProgressRow, ProgressStore, RowCheckpoint } from "../progress/mod.ts";
import type { SourceClient } from "../source/mod.ts";
import type { Clock } from "../util/mod.ts";
import { StuckError } from "../util/mod.ts";

/** What a page did, reported as it becomes durable. */
export interface PageEvent {
  readonly collection: string;
  readonly dids: number;
  readonly imported: number;
  readonly new: number;
  readonly invalid: number;
  readonly checkpoint: Checkpoint;
}

/** Everything one collection's run needs. */
export interface CollectionJob {
  readonly collection: string;
  readonly client: SourceClient;
  readonly index: IndexStore;
  readonly progress: ProgressStore;
  readonly pageLimit: number;
  readonly pagePauseMs: number;
  /** Resume completed collections from their final cursor to pick up what is new. */
  readonly catchUp: boolean;
  /** Scheduling weight with the host limiter: the larger, the sooner its requests go. */
  readonly priority: number;
  readonly clock: Clock;
  readonly signal: AbortSignal;
  readonly onPage?: (e: PageEvent) => void;
}

/** How a collection's run ended. */
export interface CollectionOutcome {
  readonly collection: string;
  /** False when it was already complete and nothing was fetched. */
  readonly fetched: boolean;
  readonly checkpoint: Checkpoint;
}

/**
 * Runs one collection to completion. Page N+1 is requested as soon as page N's cursor arrives, while
 * up to two earlier pages are still to be written; page N+1 is written only after page N's batch
 * (with its checkpoint) is durable, so checkpoints stay in order and a saved cursor never runs ahead
 * of the DIDs it covers.
 */
export async function runCollection(job: CollectionJob): Promise<CollectionOutcome> {
  const { collection, client, index, progress } = job;
  const source = client.source.name;
  const start = await startingPoint(job, source);
  let cp = start.checkpoint;
  // Starting over (another source, or an index that lost the collection) changes nothing until the
  // source has served the first page: a mistyped or dead source must not wipe finished work.
  let restart = start.restart;
  if (cp.done && !job.catchUp) {
    await progress.complete(collection, rowCheckpoint(cp));
    return { collection, fetched: false, checkpoint: cp };
  }
  if (!restart) await progress.saveCheckpoint(collection, rowCheckpoint(cp));
  const pager = new Pager(cp.cursor);
  const mirror = new Mirror((row) => progress.saveCheckpoint(collection, row, job.signal));
  let writing: Promise<void> = Promise.resolve();
  // Pages fetched but not yet durable, oldest first. A page's lookup may predate their writes, so
  // their DIDs are what the write must not count again (`carried`; see IndexStore.applyPage).
  const unwritten: { lookup: Promise<PageLookup>; written: Promise<void> }[] = [];
  try {
    for (;;) {
      // Fetch ahead while up to WRITES_AHEAD pages wait to be written: the source, the index reads
      // and the index writes then all work at once, even for the last collection left.
      if (unwritten.length >= WRITES_AHEAD) await unwritten[0].written;
      const page = await client.listRepos(collection, pager.cursor, job.pageLimit, {
        signal: job.signal,
        priority: job.priority,
      });
      if (restart) {
        await progress.restart(collection, source);
        restart = false;
      }
      const step = pager.advance(page.dids.length + page.invalid, page.cursor);
      if (step.kind === "stuck") {
        throw new StuckError(`${collection}: ${step.reason}`, { collection, cursor: pager.cursor });
      }
      // Read the index for this page while earlier ones are still being written.
      const before = unwritten.map((p) => p.lookup);
      const lookup = index.lookup(collection, page.dids);
      lookup.catch(() => {});
      const done = step.kind === "done";
      const cursor = done ? step.finalCursor : step.cursor;
      const previous = writing;
      writing = (async () => {
        await previous;
        const ahead = await lookup;
        // Built once the pages before are written, from the checkpoint they left.
        const next = {
          source,
          gen: cp.gen,
          cursor,
          done,
          // Counted with the page it came in, so a replayed page does not count its entries twice.
          invalid: (cp.invalid ?? 0) + page.invalid,
        };
        const r = await index.applyPage(collection, page.dids, next, cp, {
          lookup: ahead,
          carried: union((await Promise.all(before)).map((l) => l.dids)),
        });
        cp = r.checkpoint;
        // Writes finish in order, so this page is the oldest unwritten one.
        unwritten.shift();
        const stuck = pager.noteImported(page.dids.length, r.imported);
        if (stuck) {
          throw new StuckError(`${collection}: ${stuck}`, { collection, cursor: next.cursor });
        }
        if (!done) mirror.save(rowCheckpoint(cp));
        job.onPage?.({
          collection,
          dids: page.dids.length,
          imported: r.imported,
          new: r.new,
          invalid: page.invalid,
          checkpoint: cp,
        });
      })();
      unwritten.push({ lookup, written: writing });
      // Handled here so a failed write cannot surface as an unhandled rejection while we fetch.
      writing.catch(() => {});
      if (done) break;
      if (job.pagePauseMs > 0) {
        // The original design's pause (README, Design): pages strictly one after another, each durable before the wait.
        await writing;
        await job.clock.sleep(job.pagePauseMs, job.signal);
      }
    }
    await writing;
    await mirror.flush();
  } catch (err) {
    // Whatever stopped us, the page already being written is finished and checkpointed first.
    await writing.catch(() => {});
    await mirror.flush().catch(() => {});
    throw err;
  }
  await progress.complete(collection, rowCheckpoint(cp));
  return { collection, fetched: true, checkpoint: cp };
}

/**
 * Decides where to start, with the index's checkpoint as the truth (it is written atomically with the
 * DIDs). A cursor is only ever sent to the source that issued it: a row or checkpoint from another
 * source starts over from the beginning, in a new generation so that counts stay exact. Starting
 * over is only decided here; nothing is written until the first page arrives (`restart`), and the
 * new checkpoint goes into the index in the same batch as that page.
 */
async function startingPoint(
  job: CollectionJob,
  source: string,
): Promise<{ checkpoint: Checkpoint; restart: boolean }> {
  const { collection, index, progress } = job;
  const cp = await index.getCheckpoint(collection);
  if (cp && cp.source === source) {
    return { checkpoint: cp.done && job.catchUp ? { ...cp, done: false } : cp, restart: false };
  }
  const row: ProgressRow | undefined = await progress.get(collection);
  const restart = cp !== undefined ||
    (row !== undefined && (row.source !== source || row.cursor !== "" || row.imported > 0));
  return { checkpoint: initialCheckpoint(source, cp?.gen), restart };
}

/** Pages that may wait to be written while the next is fetched. */
const WRITES_AHEAD = 2;

/** The DIDs of several pages as one set (most often there is one page, taken as it is). */
function union(sets: readonly ReadonlySet<string>[]): ReadonlySet<string> {
  if (sets.length === 1) return sets[0];
  const all = new Set<string>();
  for (const s of sets) for (const d of s) all.add(d);
  return all;
}

/**
 * Mirrors a collection's checkpoints to Postgres off the write path: the index's batch already holds
 * the truth, so the next page need not wait for Postgres. Saves stay in order and only the newest
 * waiting one is sent; a failed save fails the next page written, or the final flush.
 */
class Mirror {
  #latest: RowCheckpoint | undefined;
  #running: Promise<void> | undefined;
  #error: unknown;

  constructor(private readonly write: (row: RowCheckpoint) => Promise<void>) {}

  /** Queues `row` (replacing any queued one); throws the error of an earlier save. */
  save(row: RowCheckpoint): void {
    if (this.#error !== undefined) throw this.#error;
    this.#latest = row;
    this.#running ??= this.#drain();
  }

  /** Waits until every queued save is written; throws the error of a failed one. */
  async flush(): Promise<void> {
    await this.#running;
    if (this.#error !== undefined) throw this.#error;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#latest !== undefined) {
        const row = this.#latest;
        this.#latest = undefined;
        await this.write(row);
      }
    } catch (err) {
      this.#error = err;
    } finally {
      this.#running = undefined;
    }
  }
}

function rowCheckpoint(cp: Checkpoint): RowCheckpoint {
  return {
    source: cp.source,
    cursor: cp.cursor,
    imported: cp.imported,
    new: cp.new,
    invalid: cp.invalid ?? 0,
  };
}

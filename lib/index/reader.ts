/** A read-only view of the index for listings, opened beside the IndexStore that writes it. */
import { ClassicLevel, type Iterator } from "classic-level";
import { StoreError } from "../util/mod.ts";
import { DICT, END, rbcPrefix } from "./keys.ts";
import {
  type DidPage,
  listingRange,
  listingReadBytes,
  ListingSignal,
  readPage,
} from "./listings.ts";

/** Options for IndexReader.open(). */
export interface IndexReaderOptions {
  /** The directory of an index that an IndexStore in this process has open. */
  readonly path: string;
  /** That store's `listings.buffer`, so that its backfill pages let these listings go first. */
  readonly listings?: SharedArrayBuffer;
  /** A snapshot older than this is replaced after the listing that finds it (default 500 ms). */
  readonly refreshMs?: number;
  /** A snapshot older than this is replaced before a listing reads it (default 2,000 ms). */
  readonly maxAgeMs?: number;
  readonly now?: () => number;
  /**
   * Collects this thread's garbage (V8's `gc`, exposed by `--expose-gc`), called after every
   * COLLECT_AFTER snapshots closed: classic-level frees a closed iterator's last read only when its
   * object is collected, which a thread that only lists may not do for minutes.
   */
  readonly collect?: () => void;
}

/**
 * Closed snapshots between two collections. Each holds its last read (~230 KB after a 2000-DID
 * listing) until collected: 16 bound that to ~4 MB, a collection every ~8 s under steady listings.
 */
export const COLLECT_AFTER = 16;

type Snapshot = {
  readonly it: Iterator<ClassicLevel<string, string>, string, string>;
  born: number;
};

/**
 * Lists from a snapshot iterator kept across listings. LevelDB creates an iterator under its database
 * lock, which it holds while it deletes the files a compaction replaced: 100 ms and more under a
 * full-speed backfill. A listing that created its own would wait that long; this one seeks in the
 * snapshot, renewed between listings, so a listing may miss the last `maxAgeMs` of writes.
 */
export class IndexReader {
  readonly #db: ClassicLevel<string, string>;
  readonly #ids = new Map<string, string>();
  readonly #signal: ListingSignal;
  readonly #refreshMs: number;
  readonly #maxAgeMs: number;
  readonly #now: () => number;
  readonly #collect?: () => void;
  #closedSince = 0;
  #snap?: Snapshot;
  /** Listings share one iterator, so they take turns on it. */
  #turn: Promise<unknown> = Promise.resolve();
  #renewal?: ReturnType<typeof setTimeout>;
  #drop?: ReturnType<typeof setTimeout>;
  #closed = false;

  private constructor(db: ClassicLevel<string, string>, opts: IndexReaderOptions) {
    this.#db = db;
    this.#signal = new ListingSignal(opts.listings);
    this.#refreshMs = opts.refreshMs ?? 500;
    this.#maxAgeMs = opts.maxAgeMs ?? 2_000;
    this.#now = opts.now ?? (() => performance.now());
    this.#collect = opts.collect;
  }

  /** Opens the index at `path`, which an IndexStore in this process must hold open. */
  static async open(opts: IndexReaderOptions): Promise<IndexReader> {
    const db = new ClassicLevel<string, string>(opts.path, {
      keyEncoding: "utf8",
      valueEncoding: "utf8",
    });
    try {
      await db.open({ multithreading: true, createIfMissing: false });
    } catch (err) {
      throw new StoreError(
        `cannot open index directory ${opts.path} for listings: ${(err as Error).message}`,
        "index",
        { cause: err },
      );
    }
    return new IndexReader(db, opts);
  }

  /** Lists a collection's DIDs in key order, strictly after `after`, at most `limit`. */
  async listDids(collection: string, limit: number, after?: string): Promise<DidPage> {
    this.#signal.begin();
    try {
      const id = await this.#id(collection);
      if (id === undefined) return { dids: [], last: undefined };
      const prefix = rbcPrefix(id);
      return await this.#inTurn(() => {
        const snap = this.#snapshot();
        snap.it.seek(listingRange(prefix, after).from);
        return readPage(snap.it, prefix, limit, after);
      });
    } finally {
      this.#signal.end();
      this.#renewSoon();
      this.#dropWhenIdle();
    }
  }

  /** Closes the snapshot and this thread's handle on the index. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#renewal);
    clearTimeout(this.#drop);
    await this.#turn;
    await this.#snap?.it.close().catch(() => {});
    this.#snap = undefined;
    await this.#db.close();
  }

  async #id(collection: string): Promise<string | undefined> {
    let id = this.#ids.get(collection);
    if (id === undefined) {
      // Ids are assigned once and never change, so only hits are kept.
      id = await this.#db.get(DICT + collection);
      if (id !== undefined) this.#ids.set(collection, id);
    }
    return id;
  }

  #inTurn<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.#turn.then(fn);
    this.#turn = run.catch(() => {});
    return run;
  }

  #snapshot(): Snapshot {
    if (this.#snap === undefined || this.#now() - this.#snap.born > this.#maxAgeMs) this.#renew();
    return this.#snap!;
  }

  /** After the listing has answered: a renewal that waits for the database lock delays no listing in flight. */
  #renewSoon(): void {
    if (this.#renewal !== undefined || this.#snap === undefined) return;
    if (this.#now() - this.#snap.born <= this.#refreshMs) return;
    this.#renewal = setTimeout(() => {
      this.#inTurn(() => {
        this.#renewal = undefined;
        const snap = this.#snap;
        if (!this.#closed && snap !== undefined && this.#now() - snap.born > this.#refreshMs) {
          this.#renew();
        }
      });
    }, 0);
  }

  /**
   * A snapshot pins the files and memtables it reads: LevelDB deletes nothing a compaction replaced
   * while it lives. One no listing has used for maxAgeMs would be renewed before the next anyway.
   */
  #dropWhenIdle(): void {
    clearTimeout(this.#drop);
    this.#drop = setTimeout(() => this.#inTurn(() => this.#replace(undefined)), this.#maxAgeMs);
  }

  #renew(): void {
    const born = this.#now();
    // Creating an iterator takes the database lock: this is the call that may wait.
    const it = this.#db.iterator({
      gte: rbcPrefix(""),
      lt: rbcPrefix(END),
      // Sized for the largest page the XRPC endpoint asks for (2000 DIDs).
      highWaterMarkBytes: listingReadBytes(2_000),
    });
    this.#replace({ it, born });
  }

  /** Called between listings only: the old iterator is in no one's hands. */
  #replace(next: Snapshot | undefined): void {
    const old = this.#snap;
    this.#snap = next;
    if (old === undefined) return;
    old.it.close().catch(() => {}).then(() => {
      if (this.#collect === undefined || ++this.#closedSince < COLLECT_AFTER) return;
      this.#closedSince = 0;
      this.#collect();
    });
  }
}

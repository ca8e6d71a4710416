/** The collection index in LevelDB: collection→DID pairs ("rbc"), per-collection checkpoints and live state. */
import { ClassicLevel } from "classic-level";
import { InputError, sleep, StoreError } from "../util/mod.ts";
import {
  CKPT,
  compactDid,
  decodeId,
  DICT,
  encodeId,
  END,
  GAP_KEY,
  GHOST,
  ghostKey,
  IDENTITY_KEY,
  LAYOUT_VERSION,
  LIVE_CKPT,
  LIVE_COUNT,
  MAX_COLLECTIONS,
  parseTombstone,
  rbcPrefix,
  TOMB,
  tombKey,
  type Tombstone,
  tombstoneValue,
  VERSION_KEY,
} from "./keys.ts";
import {
  type DidPage,
  listingRange,
  listingReadBytes,
  ListingSignal,
  readPage,
} from "./listings.ts";
import {
  ChangeLog,
  DidFilter,
  type LiveCounts,
  type LiveResult,
  type LiveStep,
  PresentCache,
} from "./live.ts";
import { dropDidKeys, hasV1Keys, migrateIndex } from "./migrate.ts";
import { type Checkpoint, type DeletedMarks, nextCheckpoint, pairAction } from "./page.ts";
import { type Logger, silentLogger } from "../util/mod.ts";

/** What one page did to the index. */
export interface PageResult {
  readonly imported: number;
  readonly new: number;
  readonly checkpoint: Checkpoint;
}

/** What the index held for a page's DIDs, read ahead of the page's write. */
export interface PageLookup {
  /** The page's distinct DIDs, as a set (the next page's lookup takes it as `carried`). */
  readonly dids: ReadonlySet<string>;
  readonly unique: readonly string[];
  /** `unique` as stored in keys (see keys.ts). */
  readonly compact: readonly string[];
  readonly existing: readonly (string | undefined)[];
  /** The live change epoch the read saw (see ChangeLog). */
  readonly epoch?: number;
  /** For DIDs of deleted accounts (by position in `unique`): the tombstone, and a kept mark. */
  readonly suppressed?: ReadonlyMap<number, DeletedMarks>;
}

/**
 * Table files of 8 MiB rather than LevelDB's 2 MiB: LevelDB maps at most 1000 table files and reads
 * the rest into the heap, index and Bloom filter blocks included, so with 2 MiB files the anonymous
 * memory of a network-sized index (~150M pairs, ~4 GB) would grow with the index.
 */
export const DEFAULT_MAX_FILE_SIZE = 8 * 1024 * 1024;

/** Options for opening the index. */
export interface IndexStoreOptions {
  readonly path: string;
  /** LevelDB block cache in bytes. */
  readonly cacheSize?: number;
  readonly writeBufferSize?: number;
  /** Size LevelDB aims for when it writes a table file. */
  readonly maxFileSize?: number;
  /** Table files held open (each mapped while open), so the bound on the index's mapped pages. */
  readonly maxOpenFiles?: number;
  /** Told about a key-layout migration, which runs before open returns. */
  readonly log?: Logger;
  /** Index keys the live writer remembers as present (default 200,000). */
  readonly liveCacheKeys?: number;
  /**
   * Bytes of the filter of pairs written to collections this process created (see #fresh); default
   * 0, none: the service sizes it by mode (DEFAULTS.indexFreshFilterMb in lib/app/config.ts).
   */
  readonly freshFilterBytes?: number;
}

/** Past this estimated share of false "maybe"s, the fresh filter saves too few reads to keep. */
const FRESH_FILTER_GIVE_UP = 0.6;

/** The LevelDB options the index opens with (tests/bench_lsm.ts opens its probe with them too). */
export function levelOptions(
  opts: Omit<IndexStoreOptions, "path" | "log" | "liveCacheKeys" | "freshFilterBytes">,
): ConstructorParameters<typeof ClassicLevel<string, string>>[1] {
  return {
    keyEncoding: "utf8",
    valueEncoding: "utf8",
    cacheSize: opts.cacheSize ?? 16 * 1024 * 1024,
    writeBufferSize: opts.writeBufferSize ?? 8 * 1024 * 1024,
    maxFileSize: opts.maxFileSize ?? DEFAULT_MAX_FILE_SIZE,
    maxOpenFiles: opts.maxOpenFiles ?? 1000,
    // DIDs are random base32: Snappy saves almost nothing on them and costs CPU in every compaction.
    compression: false,
  };
}

/** How long after a listing backfill pages keep going one at a time (see #pageTurn). */
const LISTINGS_RECENT_MS = 2_000;
/** DIDs of a page written between chances for a listing to run (see #yieldToListings). */
const YIELD_EVERY = 2_000;

/** Index directories (real paths) an IndexStore holds open in this thread. */
const OPEN_HERE = new Set<string>();

/** The LevelDB-backed collection index. */
export class IndexStore {
  readonly #db: ClassicLevel<string, string>;
  readonly #writing = new Map<string, Promise<unknown>>();
  /** Listings in flight on any thread, which backfill pages let go first (see #pageTurn). */
  readonly listings = new ListingSignal();
  /** Backfill page reads and writes in flight, and pages waiting for a turn. */
  #pageOps = 0;
  readonly #pageWaiters: (() => void)[] = [];
  /** Collection → id and back; as many entries as collections, loaded at open. */
  readonly #ids: Map<string, string>;
  readonly #names: Map<string, string>;
  #assigning: Promise<unknown> = Promise.resolve();
  /** Tombstones older than this (ms) yield to a listing: live indexing had a gap after them. */
  #gapMs: number;
  /** Writes that need every collection (account deletions) wait here, and later writes wait on them. */
  #barrier: Promise<unknown> = Promise.resolve();
  readonly #filter: DidFilter;
  readonly #changes = new ChangeLog();
  readonly #present: PresentCache;
  readonly #liveCounts: Map<string, LiveCounts>;
  /**
   * Ids of the collections this process created. Such a collection started with no keys, and every
   * key since went in #freshPairs before its write, so a key the filter has never seen is absent and
   * a backfill page need not read it. Reads of absent keys are most of a backfill's LevelDB work, and
   * grow dearer as the tree deepens. After a restart the collections are not fresh: pages read all.
   */
  readonly #fresh = new Set<string>();
  #freshPairs: DidFilter | undefined;
  readonly #freshBytes: number;
  /** Keys backfill pages looked up: read from LevelDB, or answered absent by #freshPairs. */
  readonly #pageKeys = { read: 0, skipped: 0 };
  readonly path: string;
  readonly #real: string;
  /** Random, written when the index was created; progress records it to notice a lost index. */
  readonly identity: string;
  /** True when this open found an empty directory and created the index. */
  readonly created: boolean;

  private constructor(
    db: ClassicLevel<string, string>,
    path: string,
    real: string,
    layout: { ids: Map<string, string>; identity: string; created: boolean },
    gapMs: number,
    live: {
      filter: DidFilter;
      counts: Map<string, LiveCounts>;
      cacheKeys: number;
      freshBytes: number;
    },
  ) {
    this.#db = db;
    this.path = path;
    this.#real = real;
    this.#ids = layout.ids;
    this.#gapMs = gapMs;
    this.#names = new Map([...layout.ids].map(([name, id]) => [id, name]));
    this.#filter = live.filter;
    this.#liveCounts = live.counts;
    this.#present = new PresentCache(live.cacheKeys);
    this.#freshBytes = live.freshBytes;
    this.identity = layout.identity;
    this.created = layout.created;
  }

  /** Opens (creating if needed) the index at `path`; a directory held by another process is a StoreError. */
  static async open(opts: IndexStoreOptions): Promise<IndexStore> {
    try {
      await Deno.mkdir(opts.path, { recursive: true });
    } catch (err) {
      throw new StoreError(
        `cannot create index directory ${opts.path}: ${(err as Error).message}`,
        "index",
        { cause: err },
      );
    }
    // LevelDB's lock keeps other processes out; the handle is shared with this process's readers
    // (multithreading), so a second store here is refused by this set instead.
    const real = await Deno.realPath(opts.path);
    if (OPEN_HERE.has(real)) {
      throw new StoreError(`index directory ${opts.path} is already open in this process`, "index");
    }
    const db = new ClassicLevel<string, string>(opts.path, levelOptions(opts));
    OPEN_HERE.add(real);
    try {
      // Shared with the HTTP front's IndexReader, which lists from its own thread.
      await db.open({ multithreading: true });
    } catch (err) {
      OPEN_HERE.delete(real);
      const code = (err as { cause?: { code?: string } }).cause?.code;
      if (code === "LEVEL_LOCKED") {
        throw new StoreError(
          `index directory ${opts.path} is in use by another process (LevelDB lock held)`,
          "index",
          { cause: err },
        );
      }
      throw new StoreError(
        `cannot open index directory ${opts.path}: ${(err as Error).message}`,
        "index",
        {
          cause: err,
        },
      );
    }
    try {
      const layout = await prepareLayout(db, opts.path, opts.log ?? silentLogger);
      const live = await loadLive(db);
      return new IndexStore(db, opts.path, real, layout, Number(await db.get(GAP_KEY) ?? 0), {
        ...live,
        cacheKeys: opts.liveCacheKeys ?? 200_000,
        freshBytes: opts.freshFilterBytes ?? 0,
      });
    } catch (err) {
      await db.close();
      OPEN_HERE.delete(real);
      throw err;
    }
  }

  /** True while the database is open. */
  get isOpen(): boolean {
    return this.#db.status === "open";
  }

  /** Records one DID in one collection outside any page; tests use it to stand in for live
   * indexing (the live consumer writes in batches through applyLive). */
  async addCollection(did: string, collection: string): Promise<void> {
    await this.applyLive([{ kind: "add", collection, did }]);
  }

  /** Reads which of a page's DIDs the index already holds in a collection: the read half of applyPage. */
  lookup(collection: string, dids: readonly string[]): Promise<PageLookup> {
    return this.#pageTurn(() => this.#lookup(collection, dids));
  }

  async #lookup(collection: string, dids: readonly string[]): Promise<PageLookup> {
    const seen = new Set<string>();
    const byKey: [string, string][] = [];
    for (const did of dids) {
      if (seen.has(did)) continue;
      seen.add(did);
      byKey.push([compactDid(did), did]);
    }
    // In key order, LevelDB's reads and the write after them walk each table and the memtable
    // forwards instead of jumping about: a sorted page of 10,000 costs far less CPU than a shuffled one.
    byKey.sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
    const unique = byKey.map((p) => p[1]), compact = byKey.map((p) => p[0]);
    const epoch = this.#changes.epoch;
    const id = this.#ids.get(collection);
    const suppressed = await this.#suppressed(unique, id);
    // A collection without an id has no keys yet.
    if (id === undefined || unique.length === 0) {
      return { dids: seen, unique, compact, existing: new Array(unique.length), epoch, suppressed };
    }
    const prefix = rbcPrefix(id);
    const existing = await this.#readPairs(id, compact.map((d) => prefix + d));
    return { dids: seen, unique, compact, existing, epoch, suppressed };
  }

  /** Reads a page's keys in one collection, skipping those a fresh collection never wrote. */
  async #readPairs(id: string, keys: string[]): Promise<(string | undefined)[]> {
    const filter = this.#fresh.has(id) ? this.#freshPairs : undefined;
    if (filter === undefined) {
      this.#pageKeys.read += keys.length;
      return await this.#db.getMany(keys);
    }
    const at: number[] = [];
    for (let i = 0; i < keys.length; i++) if (filter.mayHave(keys[i])) at.push(i);
    this.#pageKeys.read += at.length;
    this.#pageKeys.skipped += keys.length - at.length;
    const out = new Array<string | undefined>(keys.length);
    if (at.length === 0) return out;
    const values = await this.#db.getMany(at.map((i) => keys[i]));
    at.forEach((i, k) => out[i] = values[k]);
    return out;
  }

  /** Notes a key about to be written, before the write (a read that starts later must not skip it). */
  #willWrite(id: string, key: string): void {
    if (this.#fresh.has(id)) this.#freshPairs!.add(key);
  }

  /** Drops the fresh filter once it says "maybe" too often to save reads. */
  #checkFresh(): void {
    if (this.#freshPairs !== undefined && this.#freshPairs.falseRate > FRESH_FILTER_GIVE_UP) {
      this.#fresh.clear();
      this.#freshPairs = undefined;
    }
  }

  /** Keys backfill pages looked up in the index: read from LevelDB, or known absent without a read. */
  get pageKeys(): Readonly<{ read: number; skipped: number }> {
    return { ...this.#pageKeys };
  }

  /** Tombstones and kept marks of the DIDs (by position) that may have one. */
  async #suppressed(
    dids: readonly string[],
    id: string | undefined,
  ): Promise<Map<number, DeletedMarks> | undefined> {
    if (this.#filter.count === 0) return undefined;
    const at: number[] = [];
    for (let i = 0; i < dids.length; i++) {
      if (this.#filter.mayHave(compactDid(dids[i]))) at.push(i);
    }
    if (at.length === 0) return undefined;
    const tombs = await this.#db.getMany(at.map((i) => tombKey(dids[i])));
    const ghosts = id === undefined
      ? []
      : await this.#db.getMany(at.map((i) => ghostKey(dids[i], id)));
    const out = new Map<number, DeletedMarks>();
    at.forEach((i, k) => {
      if (tombs[k] !== undefined || ghosts[k] !== undefined) {
        out.set(i, { tomb: tombs[k] !== undefined, ghost: ghosts[k] });
      }
    });
    return out.size > 0 ? out : undefined;
  }

  /** A read taken ahead of a write, brought up to date with what live indexing changed since. */
  async #refresh(collection: string, look: PageLookup): Promise<PageLookup> {
    const since = look.epoch === undefined ? undefined : this.#changes.since(look.epoch);
    if (since === undefined) return await this.#lookup(collection, look.unique);
    if (since.length === 0) return look;
    const id = this.#ids.get(collection);
    const prefix = id === undefined ? undefined : rbcPrefix(id);
    const stale: number[] = [];
    for (let i = 0; i < look.unique.length; i++) {
      const c = look.compact[i];
      const key = prefix === undefined ? undefined : prefix + c;
      if (since.some((e) => e.dids.has(c) || (key !== undefined && e.keys.has(key)))) stale.push(i);
    }
    if (stale.length === 0) return { ...look, epoch: since[since.length - 1].epoch };
    const again = await this.lookup(collection, stale.map((i) => look.unique[i]));
    const existing = [...look.existing];
    const suppressed = new Map(look.suppressed ?? []);
    // The fresh read comes back in key order; find each stale DID's place in it.
    const at = new Map(again.unique.map((did, k) => [did, k]));
    stale.forEach((i) => {
      const k = at.get(look.unique[i])!;
      existing[i] = again.existing[k];
      const s = again.suppressed?.get(k);
      if (s) suppressed.set(i, s);
      else suppressed.delete(i);
    });
    return { ...look, existing, epoch: again.epoch, suppressed };
  }

  /**
   * Writes one page from the source and its checkpoint in a single atomic batch. A DID counts as
   * imported unless this generation already counted it, so replayed or repeated pages count once.
   * A `lookup` done ahead of time may predate the previous page's write; `carried` lists that
   * page's DIDs, which the write marked, so they are not counted again.
   */
  applyPage(
    collection: string,
    dids: readonly string[],
    next: Omit<Checkpoint, "imported" | "new" | "pages">,
    prev: Checkpoint | undefined,
    ahead?: { lookup: PageLookup; carried: ReadonlySet<string> },
  ): Promise<PageResult> {
    return this.#serial(
      [collection],
      () => this.#pageTurn(() => this.#applyPage(collection, dids, next, prev, ahead)),
    );
  }

  async #applyPage(
    collection: string,
    dids: readonly string[],
    next: Omit<Checkpoint, "imported" | "new" | "pages">,
    prev: Checkpoint | undefined,
    ahead?: { lookup: PageLookup; carried: ReadonlySet<string> },
  ): Promise<PageResult> {
    const mark = String(next.gen);
    const look = ahead
      ? await this.#refresh(collection, ahead.lookup)
      : await this.#lookup(collection, dids);
    const { unique, compact, existing, suppressed } = look;
    const carried = ahead?.carried;
    const id = unique.length > 0 ? await this.#idFor(collection) : "";
    const prefix = rbcPrefix(id), suffix = "\x00" + id;
    // A chained batch marshals far cheaper than an array of operation objects.
    const batch = this.#db.batch();
    let imported = 0, newCount = 0;
    for (let i = 0; i < unique.length; i++) {
      if (i % YIELD_EVERY === YIELD_EVERY - 1) await this.#yieldToListings();
      const value = existing[i];
      const carry = carried?.has(unique[i]) ?? false;
      const action = pairAction(value, suppressed?.get(i), mark, carry, this.#gapMs);
      if (action === "skip") continue;
      const key = prefix + compact[i];
      switch (action) {
        case "count-deleted":
          imported++;
          batch.put(GHOST + compact[i] + suffix, mark);
          break;
        case "restore":
          this.#willWrite(id, key);
          batch.put(key, mark);
          batch.del(GHOST + compact[i] + suffix);
          break;
        case "list-tombstoned":
          imported++;
          this.#willWrite(id, key);
          batch.put(key, tombstoneValue({ ...parseTombstone(value)!, gen: mark }));
          break;
        case "add":
        case "mark":
          imported++;
          if (action === "add") newCount++;
          this.#willWrite(id, key);
          batch.put(key, mark);
      }
    }
    const checkpoint = nextCheckpoint(prev, next, imported, newCount);
    batch.put(CKPT + collection, JSON.stringify(checkpoint));
    this.#checkFresh();
    await batch.write();
    return { imported, new: newCount, checkpoint };
  }

  /** Reads a collection's checkpoint, if it has one. */
  async getCheckpoint(collection: string): Promise<Checkpoint | undefined> {
    const raw = await this.#db.get(CKPT + collection);
    return raw === undefined ? undefined : JSON.parse(raw) as Checkpoint;
  }

  /** Replaces a collection's checkpoint (used to start over, e.g. on reset or a new source). */
  putCheckpoint(collection: string, checkpoint: Checkpoint): Promise<void> {
    return this.#serial(
      [collection],
      () => this.#db.put(CKPT + collection, JSON.stringify(checkpoint)),
    );
  }

  /**
   * Applies live changes in order and saves `checkpoint` (the stream's cursor) under `stream` in the
   * same atomic batch. Only changes that alter the index count: an add the index already held
   * counts nothing, and a backfill generation mark is never overwritten. Every step is idempotent,
   * so a batch replayed after a crash (the stream resends from the saved cursor) changes nothing.
   */
  async applyLive(
    steps: readonly LiveStep[],
    checkpoint?: { readonly stream: string; readonly value: unknown },
  ): Promise<LiveResult> {
    const cols = new Set<string>();
    let all = false;
    for (const s of steps) {
      if (s.kind === "add" || s.kind === "remove" || s.kind === "kept") cols.add(s.collection);
      else if (s.kind === "delete-account") all = true;
      if (!s.did.startsWith("did:")) throw new InputError(`not a DID: ${JSON.stringify(s.did)}`);
    }
    for (const c of cols) await this.#idFor(c);
    return await this.#serial(all ? "all" : [...cols], () => this.#applyLive(steps, checkpoint));
  }

  async #applyLive(
    steps: readonly LiveStep[],
    checkpoint: { readonly stream: string; readonly value: unknown } | undefined,
  ): Promise<LiveResult> {
    // What the index holds for deleted accounts, and tombstones that adds and revivals may lift.
    const held = new Map<string, string[]>();
    const maybeTomb = new Set<string>();
    for (const s of steps) {
      const c = compactDid(s.did);
      if (s.kind === "delete-account" && !held.has(c)) {
        held.set(c, await this.#idsHolding(c));
      } else if ((s.kind === "add" || s.kind === "revive") && this.#filter.mayHave(c)) {
        maybeTomb.add(c);
      }
    }
    const tombed = new Set<string>();
    if (maybeTomb.size > 0) {
      const list = [...maybeTomb];
      const got = await this.#db.getMany(list.map((c) => TOMB + c));
      list.forEach((c, i) => got[i] !== undefined && tombed.add(c));
    }
    // Replay the steps over an overlay: final presence per pair, final tombstone per DID.
    const pairs = new Map<
      string,
      { present: boolean; collection: string; did: string; id: string; proof?: Tombstone }
    >();
    const byDid = new Map<string, Set<string>>();
    const tombs = new Map<string, string | null>();
    let accountsDeleted = 0, revived = 0;
    // Issue 13's counters: first-record adds (counted if the add is new) and kept deletes.
    const firstKeys = new Set<string>();
    const kept = new Map<string, Record<string, number>>();
    const lift = (c: string) => {
      if (tombs.has(c) ? tombs.get(c) !== null : tombed.has(c)) {
        tombs.set(c, null);
        revived++;
      }
    };
    const setPair = (c: string, id: string, present: boolean, proof?: Tombstone) => {
      const key = rbcPrefix(id) + c;
      pairs.set(key, { present, collection: this.#names.get(id)!, did: c, id, proof });
      // Only an account deletion later in the batch asks which keys a DID has.
      if (held.size === 0) return;
      let keys = byDid.get(c);
      if (!keys) byDid.set(c, keys = new Set());
      keys.add(key);
    };
    for (const s of steps) {
      const c = compactDid(s.did);
      switch (s.kind) {
        case "add":
          lift(c);
          setPair(c, this.#ids.get(s.collection)!, true);
          if (s.first) firstKeys.add(rbcPrefix(this.#ids.get(s.collection)!) + c);
          break;
        case "kept": {
          const byReason = kept.get(s.collection) ?? {};
          byReason[s.reason] = (byReason[s.reason] ?? 0) + 1;
          kept.set(s.collection, byReason);
          break;
        }
        case "remove":
          setPair(c, this.#ids.get(s.collection)!, false, { rev: s.rev, timeMs: s.timeMs });
          break;
        case "revive":
          lift(c);
          break;
        case "delete-account":
          for (const id of held.get(c) ?? []) setPair(c, id, false);
          for (const key of byDid.get(c) ?? []) pairs.get(key)!.present = false;
          tombs.set(c, JSON.stringify(s.tombstone));
          accountsDeleted++;
          break;
      }
    }
    // In key order, like a page's reads (see lookup).
    const unknown = [...pairs].filter(([k, p]) => !(p.present && this.#present.has(k)))
      .sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
    const values = await this.#db.getMany(unknown.map(([k]) => k));
    const stored = new Map(unknown.map(([k], i) => [k, values[i]]));
    const batch = this.#db.batch();
    const added = new Map<string, number>(), removed = new Map<string, number>();
    const byProof = new Map<string, number>(), byFirst = new Map<string, number>();
    const bump = (m: Map<string, number>, col: string) => m.set(col, (m.get(col) ?? 0) + 1);
    const changed = new Set<string>(), ghosts = new Set<string>();
    for (const [key, p] of pairs) {
      const raw = stored.has(key) ? stored.get(key) : "";
      // A proven delete's tombstone (issue 13) holds the key but not the pair.
      const value = parseTombstone(raw) === undefined ? raw : undefined;
      if (!p.present && p.proof) {
        // Proven gone: a tombstone with the commit's rev and time, keeping the generation mark.
        this.#willWrite(p.id, key);
        batch.put(key, tombstoneValue({ ...p.proof, gen: value || undefined }));
        if (value !== undefined) {
          bump(removed, p.collection);
          bump(byProof, p.collection);
        }
        changed.add(key);
      } else if (p.present && value === undefined) {
        this.#willWrite(p.id, key);
        batch.put(key, "");
        bump(added, p.collection);
        if (firstKeys.has(key)) bump(byFirst, p.collection);
        changed.add(key);
      } else if (!p.present && value !== undefined) {
        batch.del(key);
        // Keep the backfill's generation mark, so a replayed page still counts the DID once.
        if (value !== "") {
          batch.put(GHOST + p.did + "\x00" + p.id, value);
          ghosts.add(p.did);
        }
        removed.set(p.collection, (removed.get(p.collection) ?? 0) + 1);
        changed.add(key);
      }
    }
    for (const [c, t] of tombs) {
      if (t === null) batch.del(TOMB + c);
      else batch.put(TOMB + c, t);
    }
    const counts = new Map<string, LiveCounts>();
    for (const col of new Set([...added.keys(), ...removed.keys(), ...kept.keys()])) {
      const was = this.#liveCounts.get(col) ?? { added: 0, removed: 0 };
      const now: LiveCounts = {
        added: was.added + (added.get(col) ?? 0),
        removed: was.removed + (removed.get(col) ?? 0),
      };
      const proof = (was.removedByProof ?? 0) + (byProof.get(col) ?? 0);
      const first = (was.addedByFirstRecord ?? 0) + (byFirst.get(col) ?? 0);
      if (proof > 0) now.removedByProof = proof;
      if (first > 0) now.addedByFirstRecord = first;
      const keptNow = { ...was.deletesKept };
      for (const [reason, n] of Object.entries(kept.get(col) ?? {})) {
        keptNow[reason] = (keptNow[reason] ?? 0) + n;
      }
      if (Object.keys(keptNow).length > 0) now.deletesKept = keptNow;
      counts.set(col, now);
      batch.put(LIVE_COUNT + col, JSON.stringify(now));
    }
    if (checkpoint) batch.put(LIVE_CKPT + checkpoint.stream, JSON.stringify(checkpoint.value));
    await batch.write();
    for (const [key, p] of pairs) {
      if (p.present) this.#present.add(key);
      else this.#present.delete(key);
    }
    for (const [c, t] of tombs) if (t !== null) this.#filter.add(c);
    for (const c of ghosts) if (!tombs.get(c)) this.#filter.add(c);
    for (const [col, n] of counts) this.#liveCounts.set(col, n);
    this.#changes.record(changed, new Set(tombs.keys()));
    return { added, removed, accountsDeleted, revived };
  }

  /** The live checkpoint saved under `stream`, if any. */
  async liveCheckpoint(stream: string): Promise<unknown> {
    const raw = await this.#db.get(LIVE_CKPT + stream);
    return raw === undefined ? undefined : JSON.parse(raw);
  }

  /** Pairs live indexing added and removed, per collection, since the index began. */
  liveCounts(): ReadonlyMap<string, Readonly<LiveCounts>> {
    return this.#liveCounts;
  }

  /** The tombstone of a deleted account, if it has one. */
  async accountTombstone(did: string): Promise<unknown> {
    const raw = await this.#db.get(tombKey(did));
    return raw === undefined ? undefined : JSON.parse(raw);
  }

  /** The collection's id, assigned (durably, one assignment at a time) on its first write. */
  #idFor(collection: string): Promise<string> {
    const known = this.#ids.get(collection);
    if (known !== undefined) return Promise.resolve(known);
    const assigned = this.#assigning.then(async () => {
      const again = this.#ids.get(collection);
      if (again !== undefined) return again;
      if (this.#ids.size >= MAX_COLLECTIONS) {
        throw new StoreError(
          `index ${this.path} holds ${MAX_COLLECTIONS} collections, the most it can`,
          "index",
        );
      }
      const id = encodeId(this.#ids.size);
      // Synced: keys using the id must never outlive it, even across a power loss.
      await this.#db.put(DICT + collection, id, { sync: true });
      if (this.#freshBytes > 0) {
        // A new id has no keys yet (ids are numbered from the count of those stored).
        this.#freshPairs ??= new DidFilter({ fixedBits: this.#freshBytes * 8, hashes: 2 });
        this.#fresh.add(id);
      }
      this.#ids.set(collection, id);
      this.#names.set(id, collection);
      return id;
    });
    this.#assigning = assigned.catch(() => {});
    return assigned;
  }

  /**
   * Runs writes to a collection one at a time (each reads marks the one before wrote); a write to
   * several collections waits for all of them, and "all" for every collection.
   */
  #serial<T>(collections: readonly string[] | "all", fn: () => Promise<T>): Promise<T> {
    const waits: Promise<unknown>[] = [this.#barrier];
    if (collections === "all") waits.push(...this.#writing.values());
    else {
      for (const c of collections) {
        const w = this.#writing.get(c);
        if (w) waits.push(w);
      }
    }
    const before = waits.length === 1 ? waits[0] : Promise.all(waits);
    const result = before.then(fn, fn);
    const tail = result.then(() => {}, () => {});
    if (collections === "all") this.#barrier = tail;
    else for (const c of collections) this.#writing.set(c, tail);
    tail.then(() => {
      if (collections === "all") return;
      for (const c of collections) if (this.#writing.get(c) === tail) this.#writing.delete(c);
    });
    return result;
  }

  /**
   * Runs a backfill page's read or write in its turn at the index. Listings, on any thread, go
   * first: pages wait while one is in flight, and for a while after one they go one at a time, so
   * that a full-speed backfill, which would otherwise keep both cores busy, slows down instead of
   * the reads.
   */
  async #pageTurn<T>(fn: () => Promise<T>): Promise<T> {
    for (;;) {
      if (this.listings.inFlight > 0) {
        await this.listings.idle();
        continue;
      }
      if (!this.#listed() || this.#pageOps === 0) break;
      await new Promise<void>((resolve) => this.#pageWaiters.push(resolve));
    }
    this.#pageOps++;
    try {
      return await fn();
    } finally {
      this.#pageOps--;
      this.#pageWaiters.shift()?.();
    }
  }

  /** True for a while after a listing (see #pageTurn). */
  #listed(): boolean {
    return this.listings.recent(LISTINGS_RECENT_MS);
  }

  /** Between slices of a page's work while listings are served: a listing waiting to run goes first. */
  async #yieldToListings(): Promise<void> {
    if (this.#listed()) await sleep(0);
  }

  /** Lists a collection's DIDs in key order, strictly after `after`, at most `limit`. */
  async listDids(collection: string, limit: number, after?: string): Promise<DidPage> {
    const id = this.#ids.get(collection);
    if (id === undefined) return { dids: [], last: undefined };
    const prefix = rbcPrefix(id);
    const { from, to } = listingRange(prefix, after);
    this.listings.begin();
    const it = this.#db.iterator({ gt: from, lt: to, highWaterMarkBytes: listingReadBytes(limit) });
    try {
      return await readPage(it, prefix, limit, after);
    } finally {
      this.listings.end();
      // Not awaited: the page is complete, and the wait would be one more turn on a busy event loop.
      it.close().catch(() => {});
    }
  }

  /** True when the index holds `did` under `collection`. */
  async has(collection: string, did: string): Promise<boolean> {
    const id = this.#ids.get(collection);
    if (id === undefined) return false;
    const value = await this.#db.get(rbcPrefix(id) + compactDid(did));
    return value !== undefined && parseTombstone(value) === undefined;
  }

  /** Like `has`, but answered from the live writer's memory of present pairs when it can be. */
  async holds(collection: string, did: string): Promise<boolean> {
    const id = this.#ids.get(collection);
    if (id === undefined) return false;
    const key = rbcPrefix(id) + compactDid(did);
    if (this.#present.has(key)) return true;
    const value = await this.#db.get(key);
    return value !== undefined && parseTombstone(value) === undefined;
  }

  /**
   * `holds` for many DIDs of one collection in one read, as the live writer asks before it decides
   * whether a commit needs a proof. Pairs found present are remembered (so the write that follows
   * does not read them again), unless a live write changed them while the read was in flight.
   */
  async holdsMany(collection: string, dids: readonly string[]): Promise<boolean[]> {
    const out = new Array<boolean>(dids.length).fill(false);
    const id = this.#ids.get(collection);
    if (id === undefined) return out;
    const prefix = rbcPrefix(id);
    const at: number[] = [], keys: string[] = [];
    dids.forEach((did, i) => {
      const key = prefix + compactDid(did);
      if (this.#present.has(key)) out[i] = true;
      else at.push(i), keys.push(key);
    });
    if (keys.length === 0) return out;
    const epoch = this.#changes.epoch;
    const values = await this.#db.getMany(keys);
    const since = this.#changes.since(epoch);
    values.forEach((v, k) => {
      if (v === undefined || parseTombstone(v) !== undefined) return;
      out[at[k]] = true;
      if (since?.every((c) => !c.keys.has(keys[k]))) this.#present.add(keys[k]);
    });
    return out;
  }

  /** The tombstone of a pair a proven delete removed, if it has one. */
  async tombstone(collection: string, did: string): Promise<Tombstone | undefined> {
    const id = this.#ids.get(collection);
    if (id === undefined) return undefined;
    return parseTombstone(await this.#db.get(rbcPrefix(id) + compactDid(did)));
  }

  /**
   * Removes a pair that a commit proved gone (the repo's last record in the collection deleted),
   * leaving a tombstone with the commit's rev and time. Returns whether the index held the pair.
   */
  removeProven(collection: string, did: string, rev: string, timeMs: number): Promise<boolean> {
    return this.#serial([collection], async () => {
      const id = await this.#idFor(collection);
      const key = rbcPrefix(id) + compactDid(did);
      const value = await this.#db.get(key);
      const held = value !== undefined && parseTombstone(value) === undefined;
      this.#willWrite(id, key);
      await this.#db.put(key, tombstoneValue({ rev, timeMs }));
      this.#present.delete(key);
      this.#changes.record(new Set([key]), new Set());
      return held;
    });
  }

  /**
   * Records a gap in live indexing (the relay no longer held our cursor) at `timeMs`: tombstones
   * written before it may be stale, so a listing may re-add those pairs.
   */
  async markLiveGap(timeMs: number): Promise<void> {
    if (timeMs <= this.#gapMs) return;
    await this.#db.put(GAP_KEY, String(timeMs), { sync: true });
    this.#gapMs = timeMs;
  }

  /** The collections a DID appears in, in name order. */
  async collectionsOf(did: string): Promise<string[]> {
    const ids = await this.#idsHolding(compactDid(did));
    return ids.map((id) => this.#names.get(id)!).sort();
  }

  /** Ids of the collections that hold the (compacted) DID: one point lookup per collection. */
  async #idsHolding(compact: string): Promise<string[]> {
    const ids = [...this.#names.keys()];
    const values = await this.#db.getMany(ids.map((id) => rbcPrefix(id) + compact));
    return ids.filter((_, i) => values[i] !== undefined && parseTombstone(values[i]) === undefined);
  }

  /** Collections with at least one DID in the index, in name order. */
  async listCollections(): Promise<string[]> {
    const out: string[] = [];
    for (const [name, id] of [...this.#ids].sort((a, b) => a[0] < b[0] ? -1 : 1)) {
      const prefix = rbcPrefix(id);
      for await (const value of this.#db.values({ gt: prefix, lt: prefix + END })) {
        if (parseTombstone(value) !== undefined) continue;
        out.push(name);
        break;
      }
    }
    return out;
  }

  /** Approximate bytes on disk for the collection→DID range (cheap; from LevelDB's metadata). */
  async approximateSize(): Promise<number> {
    return await this.#db.approximateSize(rbcPrefix(""), rbcPrefix(END));
  }

  /** Closes the database; safe to call twice. */
  async close(): Promise<void> {
    if (this.#db.status === "open" || this.#db.status === "opening") await this.#db.close();
    OPEN_HERE.delete(this.#real);
  }
}

/** Brings a freshly opened database to the current layout, loads its collection ids and identity. */
async function prepareLayout(
  db: ClassicLevel<string, string>,
  path: string,
  log: Logger,
): Promise<{ ids: Map<string, string>; identity: string; created: boolean }> {
  const created = (await db.keys({ limit: 1 }).all()).length === 0;
  const version = await db.get(VERSION_KEY);
  if (version === "2") {
    log.info("index: dropping layout 2's DID→collection keys; open waits for it", { path });
    const started = performance.now();
    const dropped = await dropDidKeys(db);
    await db.put(VERSION_KEY, LAYOUT_VERSION, { sync: true });
    log.info("index: layout migration done", {
      path,
      dropped,
      ms: Math.round(performance.now() - started),
    });
  } else if (version !== undefined && version !== LAYOUT_VERSION) {
    throw new StoreError(
      `index ${path} has key layout version ${version}; this build reads version ${LAYOUT_VERSION}`,
      "index",
    );
  }
  // Version 1 keys also appear after a downgrade to an older build and back; they move the same way.
  if (await hasV1Keys(db)) {
    log.info("index: rewriting layout 1 keys to layout 3; open waits for it", { path });
    const started = performance.now();
    const moved = await migrateIndex(db);
    log.info("index: layout migration done", {
      path,
      moved,
      ms: Math.round(performance.now() - started),
    });
  }
  if (version === undefined) await db.put(VERSION_KEY, LAYOUT_VERSION, { sync: true });
  let identity = await db.get(IDENTITY_KEY);
  if (identity === undefined) {
    // Indexes made before identities existed get one too; they are not "created".
    identity = crypto.randomUUID();
    await db.put(IDENTITY_KEY, identity, { sync: true });
  }
  const ids = new Map<string, string>();
  const numbers = new Set<number>();
  for await (const [key, id] of db.iterator({ gt: DICT, lt: DICT + END })) {
    ids.set(key.slice(DICT.length), id);
    const n = decodeId(id);
    if (n !== undefined) numbers.add(n);
  }
  // New ids are numbered from the count, so the stored ones must be exactly 0..count-1.
  if (numbers.size !== ids.size || [...numbers].some((n) => n >= ids.size)) {
    throw new StoreError(
      `index ${path} has a damaged collection id table (${ids.size} entries, ids not 0..${
        ids.size - 1
      })`,
      "index",
    );
  }
  return { ids, identity, created };
}

/** Loads what the live writer keeps in memory: the tombstone filter and the per-collection counts. */
async function loadLive(
  db: ClassicLevel<string, string>,
): Promise<{ filter: DidFilter; counts: Map<string, LiveCounts> }> {
  const filter = new DidFilter();
  for await (const key of db.keys({ gt: TOMB, lt: TOMB + END })) filter.add(key.slice(TOMB.length));
  for await (const key of db.keys({ gt: GHOST, lt: GHOST + END })) {
    filter.add(key.slice(GHOST.length, key.indexOf("\x00", GHOST.length)));
  }
  const counts = new Map<string, LiveCounts>();
  for await (const [key, v] of db.iterator({ gt: LIVE_COUNT, lt: LIVE_COUNT + END })) {
    counts.set(key.slice(LIVE_COUNT.length), JSON.parse(v) as LiveCounts);
  }
  return { filter, counts };
}

/** The collection index in LevelDB: collection→DID ("rbc"), DID→collection ("cbr") and per-collection checkpoints. */
import { ClassicLevel } from "classic-level";
import { InputError, StoreError } from "../util/mod.ts";
import {
  cbrPrefix,
  CKPT,
  compactDid,
  decodeId,
  DICT,
  encodeId,
  END,
  expandDid,
  GAP_KEY,
  LAYOUT_VERSION,
  MAX_COLLECTIONS,
  parseTombstone,
  rbcPrefix,
  type Tombstone,
  tombstoneValue,
  VERSION_KEY,
} from "./keys.ts";
import { hasV1Keys, migrateIndex } from "./migrate.ts";
import { type Logger, silentLogger } from "../util/mod.ts";

/** Where a collection's backfill stands, written in the same batch as the page it covers. */
export interface Checkpoint {
  /** Source name that issued `cursor`. */
  readonly source: string;
  /** Bumped by a reset; a DID counts as imported once per generation. */
  readonly gen: number;
  /** Next cursor to request ("" = from the start); once `done`, the cursor of the last page. */
  readonly cursor: string;
  /** Distinct DIDs the source listed in this generation. */
  readonly imported: number;
  /** Of those, how many the index did not hold before. */
  readonly new: number;
  readonly pages: number;
  readonly done: boolean;
}

/** A checkpoint that starts a collection over from the beginning, in the generation after `prevGen`. */
export function freshCheckpoint(source: string, prevGen = 0): Checkpoint {
  return { source, gen: prevGen + 1, cursor: "", imported: 0, new: 0, pages: 0, done: false };
}

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
  /** `unique` as stored in keys (see index_keys.ts). */
  readonly compact: readonly string[];
  readonly existing: readonly (string | undefined)[];
}

/** One page of a collection's DIDs as listed from the index. */
export interface DidPage {
  readonly dids: string[];
  /** The last DID when more follow; pass it back as `after` for the next page. */
  readonly last?: string;
}

/** Options for opening the index. */
export interface IndexStoreOptions {
  readonly path: string;
  /** LevelDB block cache in bytes. */
  readonly cacheSize?: number;
  readonly writeBufferSize?: number;
  /** Told about a key-layout migration, which runs before open returns. */
  readonly log?: Logger;
}

/** The LevelDB-backed collection index. */
export class IndexStore {
  readonly #db: ClassicLevel<string, string>;
  readonly #writing = new Map<string, Promise<unknown>>();
  /** Collection → id and back; as many entries as collections, loaded at open. */
  readonly #ids: Map<string, string>;
  readonly #names: Map<string, string>;
  #assigning: Promise<unknown> = Promise.resolve();
  /** Tombstones older than this (ms) yield to a listing: live indexing had a gap after them. */
  #gapMs: number;
  readonly path: string;

  private constructor(
    db: ClassicLevel<string, string>,
    path: string,
    ids: Map<string, string>,
    gapMs: number,
  ) {
    this.#db = db;
    this.path = path;
    this.#ids = ids;
    this.#gapMs = gapMs;
    this.#names = new Map([...ids].map(([name, id]) => [id, name]));
  }

  /** Opens (creating if needed) the index at `path`; a directory held by another process is a StoreError. */
  static async open(opts: IndexStoreOptions): Promise<IndexStore> {
    await Deno.mkdir(opts.path, { recursive: true });
    const db = new ClassicLevel<string, string>(opts.path, {
      keyEncoding: "utf8",
      valueEncoding: "utf8",
      cacheSize: opts.cacheSize ?? 16 * 1024 * 1024,
      writeBufferSize: opts.writeBufferSize ?? 8 * 1024 * 1024,
    });
    try {
      await db.open();
    } catch (err) {
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
      const ids = await prepareLayout(db, opts.path, opts.log ?? silentLogger);
      return new IndexStore(db, opts.path, ids, Number(await db.get(GAP_KEY) ?? 0));
    } catch (err) {
      await db.close();
      throw err;
    }
  }

  /** True while the database is open. */
  get isOpen(): boolean {
    return this.#db.status === "open";
  }

  /** Records one DID in one collection, both directions (live indexing's path). */
  addCollection(did: string, collection: string): Promise<void> {
    if (!did.startsWith("did:")) {
      return Promise.reject(new InputError(`not a DID: ${JSON.stringify(did)}`));
    }
    return this.#serial(collection, async () => {
      const id = await this.#idFor(collection);
      const key = rbcPrefix(id) + compactDid(did);
      // Keep a backfill generation mark if there is one, so a later replay still counts once. A
      // tombstone gives way: a create after the proven delete means the repo has records again.
      const value = await this.#db.get(key);
      if (value !== undefined && parseTombstone(value) === undefined) return;
      await this.#db.batch([
        { type: "put", key, value: "" },
        { type: "put", key: cbrPrefix(did) + id, value: "" },
      ]);
    });
  }

  /** Reads which of a page's DIDs the index already holds in a collection: the read half of applyPage. */
  async lookup(collection: string, dids: readonly string[]): Promise<PageLookup> {
    const seen = new Set<string>();
    const unique: string[] = [], compact: string[] = [];
    for (const did of dids) {
      if (seen.has(did)) continue;
      seen.add(did);
      unique.push(did);
      compact.push(compactDid(did));
    }
    const id = this.#ids.get(collection);
    // A collection without an id has no keys yet.
    if (id === undefined || unique.length === 0) {
      return { dids: seen, unique, compact, existing: new Array(unique.length) };
    }
    const prefix = rbcPrefix(id);
    const existing = await this.#db.getMany(compact.map((d) => prefix + d));
    return { dids: seen, unique, compact, existing };
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
    return this.#serial(collection, async () => {
      const mark = String(next.gen);
      const { unique, compact, existing } = ahead?.lookup ??
        await this.lookup(collection, dids);
      const carried = ahead?.carried;
      const id = unique.length > 0 ? await this.#idFor(collection) : "";
      const prefix = rbcPrefix(id), suffix = "\x00" + id;
      // A chained batch marshals far cheaper than an array of operation objects.
      const batch = this.#db.batch();
      let imported = 0, fresh = 0;
      for (let i = 0; i < unique.length; i++) {
        const value = existing[i];
        if (value === mark || carried?.has(unique[i])) continue;
        const tomb = parseTombstone(value);
        if (tomb !== undefined && tomb.timeMs >= this.#gapMs) {
          // Proven gone after anything this source can know: listed, not re-added.
          if (tomb.gen === mark) continue;
          imported++;
          batch.put(prefix + compact[i], tombstoneValue({ ...tomb, gen: mark }));
          continue;
        }
        imported++;
        if (value === undefined || tomb !== undefined) fresh++;
        batch.put(prefix + compact[i], mark);
        batch.put("c" + compact[i] + suffix, "");
      }
      const sameGen = prev !== undefined && prev.gen === next.gen;
      const checkpoint: Checkpoint = {
        ...next,
        imported: (sameGen ? prev.imported : 0) + imported,
        new: (sameGen ? prev.new : 0) + fresh,
        pages: (sameGen ? prev.pages : 0) + 1,
      };
      batch.put(CKPT + collection, JSON.stringify(checkpoint));
      await batch.write();
      return { imported, new: fresh, checkpoint };
    });
  }

  /** Reads a collection's checkpoint, if it has one. */
  async getCheckpoint(collection: string): Promise<Checkpoint | undefined> {
    const raw = await this.#db.get(CKPT + collection);
    return raw === undefined ? undefined : JSON.parse(raw) as Checkpoint;
  }

  /** Replaces a collection's checkpoint (used to start over, e.g. on reset or a new source). */
  putCheckpoint(collection: string, checkpoint: Checkpoint): Promise<void> {
    return this.#serial(
      collection,
      () => this.#db.put(CKPT + collection, JSON.stringify(checkpoint)),
    );
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
      this.#ids.set(collection, id);
      this.#names.set(id, collection);
      return id;
    });
    this.#assigning = assigned.catch(() => {});
    return assigned;
  }

  /** Runs writes to one collection one at a time: each reads marks that the one before wrote. */
  #serial<T>(collection: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#writing.get(collection) ?? Promise.resolve();
    const result = before.then(fn, fn);
    const tail = result.then(() => {}, () => {});
    this.#writing.set(collection, tail);
    tail.then(() => {
      if (this.#writing.get(collection) === tail) this.#writing.delete(collection);
    });
    return result;
  }

  /** Lists a collection's DIDs in key order, strictly after `after`, at most `limit`. */
  async listDids(collection: string, limit: number, after?: string): Promise<DidPage> {
    const id = this.#ids.get(collection);
    if (id === undefined) return { dids: [], last: undefined };
    const prefix = rbcPrefix(id);
    const dids: string[] = [];
    let more = false;
    // Tombstones sit among the pairs; they are skipped (rare, so a page reads few extra keys).
    for await (
      const [key, value] of this.#db.iterator({
        gt: after === undefined ? prefix : prefix + compactDid(after),
        lt: prefix + END,
      })
    ) {
      if (parseTombstone(value) !== undefined) continue;
      if (dids.length === limit) {
        more = true;
        break;
      }
      dids.push(expandDid(key.slice(prefix.length)));
    }
    return { dids, last: more ? dids[dids.length - 1] : undefined };
  }

  /** True when the index holds `did` under `collection`. */
  async has(collection: string, did: string): Promise<boolean> {
    const id = this.#ids.get(collection);
    if (id === undefined) return false;
    const value = await this.#db.get(rbcPrefix(id) + compactDid(did));
    return value !== undefined && parseTombstone(value) === undefined;
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
    return this.#serial(collection, async () => {
      const id = await this.#idFor(collection);
      const key = rbcPrefix(id) + compactDid(did);
      const value = await this.#db.get(key);
      const held = value !== undefined && parseTombstone(value) === undefined;
      await this.#db.batch([
        { type: "put", key, value: tombstoneValue({ rev, timeMs }) },
        { type: "del", key: cbrPrefix(did) + id },
      ]);
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
    const prefix = cbrPrefix(did);
    const keys = await this.#db.keys({ gt: prefix, lt: prefix + END }).all();
    return keys.map((k) => this.#names.get(k.slice(prefix.length)) ?? "").filter((c) => c !== "")
      .sort();
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
  }
}

/** Brings a freshly opened database to the current layout and loads its collection ids. */
async function prepareLayout(
  db: ClassicLevel<string, string>,
  path: string,
  log: Logger,
): Promise<Map<string, string>> {
  const version = await db.get(VERSION_KEY);
  if (version !== undefined && version !== LAYOUT_VERSION) {
    throw new StoreError(
      `index ${path} has key layout version ${version}; this build reads version ${LAYOUT_VERSION}`,
      "index",
    );
  }
  // Version 1 keys also appear after a downgrade to an older build and back; they move the same way.
  if (await hasV1Keys(db)) {
    log.info("index: rewriting layout 1 keys to layout 2; open waits for it", { path });
    const started = performance.now();
    const moved = await migrateIndex(db);
    log.info("index: layout migration done", {
      path,
      moved,
      ms: Math.round(performance.now() - started),
    });
  }
  if (version === undefined) await db.put(VERSION_KEY, LAYOUT_VERSION, { sync: true });
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
  return ids;
}

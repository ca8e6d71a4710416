/** What the live writer keeps beside the index: types of its writes, and the in-memory helpers it needs. */

/** One change the live stream asks of the index, applied in order within a batch. */
export type LiveStep =
  /**
   * The repo has a record in the collection (a create or update). `first`: its commit proved it
   * the repo's first record there (issue 13), counted when the add is new to the index.
   */
  | {
    readonly kind: "add";
    readonly collection: string;
    readonly did: string;
    readonly first?: true;
  }
  /** The repo has no record left in the collection: a proven delete (issue 13), from its commit. */
  | {
    readonly kind: "remove";
    readonly collection: string;
    readonly did: string;
    readonly rev: string;
    readonly timeMs: number;
  }
  /** A delete op that changes nothing for want of proof (issue 13): only counted, by reason. */
  | {
    readonly kind: "kept";
    readonly collection: string;
    readonly did: string;
    readonly reason: string;
  }
  /** The account is deleted: every pair goes and a tombstone keeps the backfill from restoring it. */
  | { readonly kind: "delete-account"; readonly did: string; readonly tombstone: AccountTombstone }
  /** The account is active again: its tombstone, if any, is lifted. */
  | { readonly kind: "revive"; readonly did: string };

/** Why and when an account was deleted. */
export interface AccountTombstone {
  readonly status: string;
  /** Stream event time, ms since the epoch. */
  readonly time: number;
  readonly cursor: number;
}

/** Pairs live indexing added to and removed from one collection, since the index began. */
export interface LiveCounts {
  added: number;
  removed: number;
  /** Of `removed`: pairs a commit proved gone (the repo's last record deleted). */
  removedByProof?: number;
  /** Of `added`: pairs whose commit proved the repo's first record in the collection. */
  addedByFirstRecord?: number;
  /** Delete ops kept (nothing removed) for want of proof, by reason. */
  deletesKept?: Record<string, number>;
}

/** What one live batch did. */
export interface LiveResult {
  /** Pairs the index did not hold, per collection. */
  readonly added: ReadonlyMap<string, number>;
  /** Pairs the index held and no longer does, per collection. */
  readonly removed: ReadonlyMap<string, number>;
  readonly accountsDeleted: number;
  /** Tombstones lifted by a commit or an `active` account event. */
  readonly revived: number;
}

/**
 * A growable Bloom filter over compacted DIDs: never a false "no", about 1% false "maybe". Holds
 * every DID that has a tombstone or a kept generation mark, so the backfill reads those keys only
 * for the few DIDs that may have one.
 */
export class DidFilter {
  readonly #parts: { bits: Uint32Array; size: number; cap: number }[] = [];
  readonly #fixedBits: number | undefined;
  readonly #hashes: number;
  #count = 0;

  /**
   * `fixedBits`: one table of that many bits, which never grows, so false "maybe"s rise as it fills;
   * `hashes`: bits set per DID (default 7, best near 10 bits a DID; fewer suit a fuller table).
   */
  constructor(opts: { fixedBits?: number; hashes?: number } = {}) {
    this.#fixedBits = opts.fixedBits;
    this.#hashes = opts.hashes ?? 7;
  }

  /** The share of "maybe"s for DIDs never added, estimated from how full the filter is. */
  get falseRate(): number {
    let rate = 0;
    for (const part of this.#parts) {
      const m = part.bits.length * 32;
      rate += (1 - Math.exp(-this.#hashes * part.size / m)) ** this.#hashes;
    }
    return Math.min(1, rate);
  }

  /** How many DIDs were added. */
  get count(): number {
    return this.#count;
  }

  add(did: string): void {
    let part = this.#parts[this.#parts.length - 1];
    if (!part || part.size >= part.cap) {
      const cap = Math.max(1 << 16, (part?.cap ?? 0) * 2);
      part = this.#fixedBits === undefined
        ? { bits: new Uint32Array(Math.ceil(cap * 10 / 32)), size: 0, cap }
        : { bits: new Uint32Array(Math.ceil(this.#fixedBits / 32)), size: 0, cap: Infinity };
      this.#parts.push(part);
    }
    const m = part.bits.length * 32;
    const [h1, h2] = hashes(did);
    for (let i = 0; i < this.#hashes; i++) {
      const b = (h1 + Math.imul(i, h2)) >>> 0;
      const bit = b % m;
      part.bits[bit >>> 5] |= 1 << (bit & 31);
    }
    part.size++;
    this.#count++;
  }

  mayHave(did: string): boolean {
    if (this.#count === 0) return false;
    const [h1, h2] = hashes(did);
    for (const part of this.#parts) {
      const m = part.bits.length * 32;
      let all = true;
      for (let i = 0; i < this.#hashes && all; i++) {
        const bit = ((h1 + Math.imul(i, h2)) >>> 0) % m;
        all = (part.bits[bit >>> 5] & (1 << (bit & 31))) !== 0;
      }
      if (all) return true;
    }
    return false;
  }
}

function hashes(s: string): [number, number] {
  let a = 0x811c9dc5, b = 0x9747b28c;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  return [a >>> 0, (b | 1) >>> 0];
}

/** Index keys known to be present, so that repeated live writes skip the read; first in, first out. */
export class PresentCache {
  readonly #keys = new Set<string>();
  constructor(readonly max: number) {}
  has(key: string): boolean {
    return this.#keys.has(key);
  }
  add(key: string): void {
    if (this.#keys.has(key) || this.max === 0) return;
    if (this.#keys.size >= this.max) this.#keys.delete(this.#keys.values().next().value!);
    this.#keys.add(key);
  }
  delete(key: string): void {
    this.#keys.delete(key);
  }
}

/** What one live batch changed: rbc keys and DIDs whose tombstone changed. */
export interface LiveChange {
  readonly epoch: number;
  readonly keys: ReadonlySet<string>;
  readonly dids: ReadonlySet<string>;
}

/**
 * The last live changes, so that a backfill page whose index read was taken ahead of its write
 * re-reads just the DIDs live indexing touched in between (or everything, once that is too old).
 */
export class ChangeLog {
  #epoch = 0;
  readonly #entries: LiveChange[] = [];
  constructor(readonly keep = 256) {}

  get epoch(): number {
    return this.#epoch;
  }

  record(keys: ReadonlySet<string>, dids: ReadonlySet<string>): void {
    if (keys.size === 0 && dids.size === 0) return;
    this.#entries.push({ epoch: ++this.#epoch, keys, dids });
    if (this.#entries.length > this.keep) this.#entries.shift();
  }

  /** Changes after `epoch`, or undefined when some of them are no longer kept. */
  since(epoch: number): LiveChange[] | undefined {
    if (epoch === this.#epoch) return [];
    const first = this.#entries[0];
    if (!first || first.epoch > epoch + 1) return undefined;
    return this.#entries.filter((e) => e.epoch > epoch);
  }
}

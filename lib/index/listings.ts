/** Listing a collection's DIDs: the page read itself, and the signal that lets listings go first. */
import type { ClassicLevel, Iterator } from "classic-level";
import { sleep } from "../util/mod.ts";
import { compactDid, END, expandDid, parseTombstone } from "./keys.ts";

/** One page of a collection's DIDs as listed from the index. */
export interface DidPage {
  readonly dids: string[];
  /** The last DID when more follow; pass it back as `after` for the next page. */
  readonly last?: string;
}

/** The keys of a listing: strictly after `from`, before `to`. */
export function listingRange(prefix: string, after?: string): { from: string; to: string } {
  return { from: after === undefined ? prefix : prefix + compactDid(after), to: prefix + END };
}

/** LevelDB hands back at most this many bytes a read (16 KiB, ~550 pairs, by default). */
export function listingReadBytes(limit: number): number {
  return (limit + 16) * 64;
}

/**
 * Reads one page of the collection under `prefix` from an iterator at or before its first key;
 * keys outside the listing's range are skipped or end it, so the iterator may span more.
 */
export async function readPage(
  it: Iterator<ClassicLevel<string, string>, string, string>,
  prefix: string,
  limit: number,
  after?: string,
): Promise<DidPage> {
  const { from, to } = listingRange(prefix, after);
  const dids: string[] = [];
  let more = false;
  // A page in one or two reads: each read waits its turn on an event loop that may be busy, so an
  // entry-by-entry walk would wait that turn hundreds of times.
  read: for (;;) {
    // Tombstones sit among the pairs; they are skipped (rare, so a page reads few extra keys).
    const entries = await it.nextv(limit + 1 - dids.length + 16);
    if (entries.length === 0) break;
    for (const [key, value] of entries) {
      if (key <= from) continue;
      if (key >= to) break read;
      if (parseTombstone(value) !== undefined) continue;
      if (dids.length === limit) {
        more = true;
        break read;
      }
      dids.push(expandDid(key.slice(prefix.length)));
    }
  }
  return { dids, last: more ? dids[dids.length - 1] : undefined };
}

/** Milliseconds on a clock every thread of the process shares. */
function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Listings in flight and when the last one ended, in a SharedArrayBuffer: the HTTP front serves
 * listings on its own thread, and backfill pages on the main thread let them go first (IndexStore).
 */
export class ListingSignal {
  /** Hand this to the thread that lists; it wraps it in its own ListingSignal. */
  readonly buffer: SharedArrayBuffer;
  readonly #count: Int32Array;
  readonly #ended: BigInt64Array;
  readonly #now: () => number;

  constructor(buffer = new SharedArrayBuffer(16), now: () => number = wallMs) {
    this.buffer = buffer;
    this.#count = new Int32Array(buffer, 0, 1);
    this.#ended = new BigInt64Array(buffer, 8, 1);
    this.#now = now;
  }

  /** A listing starts. */
  begin(): void {
    Atomics.add(this.#count, 0, 1);
  }

  /** A listing ends: pages waiting in `idle()` go on. */
  end(): void {
    Atomics.store(this.#ended, 0, BigInt(Math.round(this.#now())));
    Atomics.sub(this.#count, 0, 1);
  }

  /** Listings in flight now, on any thread. */
  get inFlight(): number {
    return Atomics.load(this.#count, 0);
  }

  /** True while a listing is in flight or one ended less than `windowMs` ago. */
  recent(windowMs: number): boolean {
    return this.inFlight > 0 || this.#now() - Number(Atomics.load(this.#ended, 0)) < windowMs;
  }

  /** Resolves once no listing is in flight. */
  async idle(): Promise<void> {
    // Polled: Deno 2.9 aborts in classic-level's iterator destructor after an Atomics.waitAsync.
    while (this.inFlight > 0) await sleep(1);
  }
}

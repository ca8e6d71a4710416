/** Deterministic, compact worlds of collections and the DIDs seen in them, for the simulated relay. */

const B32 = "abcdefghijklmnopqrstuvwxyz234567";
// Every 10-bit value as two base32 characters, so a DID is 12 lookups.
const PAIRS = Array.from({ length: 1024 }, (_, v) => B32[v >> 5] + B32[v & 31]);

const LARGE_NAMES = [
  "app.bsky.feed.like",
  "app.bsky.feed.post",
  "app.bsky.actor.profile",
  "app.bsky.graph.follow",
  "app.bsky.feed.repost",
  "app.bsky.graph.block",
  "app.bsky.graph.listitem",
  "app.bsky.feed.threadgate",
  "app.bsky.graph.list",
  "app.bsky.feed.postgate",
  "chat.bsky.actor.declaration",
  "app.bsky.feed.generator",
  "app.bsky.graph.starterpack",
  "app.bsky.labeler.service",
];
const TAIL_AUTHORITIES = [
  "blue.flashes",
  "fyi.unravel.frontpage",
  "com.whtwnd.blog",
  "sh.tangled.repo",
  "events.smokesignal",
  "xyz.statusphere",
  "so.sprk.feed",
  "app.popsky",
  "community.lexicon.calendar",
  "place.stream",
  "pub.leaflet",
  "social.psky.chat",
  "my.skylights",
  "net.anisota.beta",
  "com.shinolabs.pinksea",
  "uk.skyblur",
  "org.example.garden",
  "dev.sim.lab",
];
const TAIL_NAMES = [
  "post",
  "entry",
  "profile",
  "status",
  "like",
  "follow",
  "item",
  "record",
  "note",
];

/** A seeded PRNG (mulberry32) returning floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** murmur3's finaliser: a bijection on uint32, which keeps DIDs from distinct ids distinct. */
export function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** FNV-1a of a string, for cursor tags and authority DIDs; not cryptographic, only binding. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The `did:plc:` DID of account `id` in a world with salt `salt`: 24 base32 chars, injective in `id`. */
export function formatDid(id: number, salt: number): string {
  const h1 = mix32(id ^ salt);
  const h2 = mix32(h1 + 0x9e3779b9);
  const h3 = mix32(h2 ^ 0x7f4a7c15);
  const h4 = mix32(h3 + 0x165667b1);
  // All 32 bits of h1 are kept (the last pair carries its low two bits), hence injective.
  return "did:plc:" + PAIRS[h1 >>> 22] + PAIRS[(h1 >>> 12) & 1023] + PAIRS[(h1 >>> 2) & 1023] +
    PAIRS[h2 >>> 22] + PAIRS[(h2 >>> 12) & 1023] + PAIRS[(h2 >>> 2) & 1023] +
    PAIRS[h3 >>> 22] + PAIRS[(h3 >>> 12) & 1023] + PAIRS[(h3 >>> 2) & 1023] +
    PAIRS[h4 >>> 22] + PAIRS[(h4 >>> 12) & 1023] + PAIRS[((h1 & 3) << 8) | ((h4 >>> 4) & 255)];
}

/** Options for `makeWorld`; every field has a modest default suited to tests. */
export interface WorldOptions {
  seed?: number;
  /** Total number of collections, large ones included (default 40). */
  collections?: number;
  /** DID counts of the large collections, largest first (default [20000, 12000, 8000, 5000, 2000]). */
  largeSizes?: number[];
  /** Tail collections hold 0..tailMax DIDs (default 60). */
  tailMax?: number;
  /** Share of tail collections that are empty (default 0.15). */
  emptyRate?: number;
  /** Size of the account pool that collections draw from (default 1.25 × the largest collection). */
  accounts?: number;
}

/** Totals over a world; `accounts` counts distinct DIDs. */
export interface WorldTotals {
  collections: number;
  entries: number;
  accounts: number;
}

/** Ids in first-seen order, grown by doubling. */
class IdColumn {
  constructor(public ids: Uint32Array, public length: number) {}
  push(id: number): void {
    if (this.length === this.ids.length) {
      const next = new Uint32Array(Math.max(16, this.ids.length * 2));
      next.set(this.ids);
      this.ids = next;
    }
    this.ids[this.length++] = id;
  }
}

/** Collections and their DIDs in first-seen order; DIDs are formatted on demand from compact ids. */
export class SimWorld {
  readonly #columns = new Map<string, IdColumn | string[]>();
  #nextId: number;

  constructor(readonly seed: number, accounts = 0) {
    this.#nextId = accounts;
  }

  /** Salt mixed into every DID, so worlds with different seeds hold different DIDs. */
  get salt(): number {
    return mix32(this.seed ^ 0x5eed5eed);
  }

  /** Collection NSIDs in creation order. */
  collections(): string[] {
    return [...this.#columns.keys()];
  }

  /** True when the world knows `collection` (even if it is empty). */
  has(collection: string): boolean {
    return this.#columns.has(collection);
  }

  /** Number of DIDs in `collection` (0 when unknown). */
  size(collection: string): number {
    return this.#columns.get(collection)?.length ?? 0;
  }

  /** The DID at `index` of `collection`, in first-seen order. */
  didAt(collection: string, index: number): string {
    const col = this.#columns.get(collection);
    if (!col || index < 0 || index >= col.length) {
      throw new RangeError(`no DID ${index} in ${collection}`);
    }
    return Array.isArray(col) ? col[index] : formatDid(col.ids[index], this.salt);
  }

  /** DIDs `start..end` (exclusive) of `collection`; `raw` says they came from explicit lists and may need escaping. */
  slice(collection: string, start: number, end: number): { dids: string[]; raw: boolean } {
    const col = this.#columns.get(collection);
    if (!col) return { dids: [], raw: false };
    end = Math.min(end, col.length);
    if (Array.isArray(col)) return { dids: col.slice(start, end), raw: true };
    const salt = this.salt;
    const dids = new Array<string>(Math.max(0, end - start));
    for (let i = start; i < end; i++) dids[i - start] = formatDid(col.ids[i], salt);
    return { dids, raw: false };
  }

  /** Every DID of `collection` in first-seen order. */
  dids(collection: string): string[] {
    return this.slice(collection, 0, this.size(collection)).dids;
  }

  /** Adds `count` new accounts at the end of `collection` (creating it if needed); returns their DIDs. */
  append(collection: string, count: number): string[] {
    let col = this.#columns.get(collection);
    if (!col) {
      col = new IdColumn(new Uint32Array(Math.max(16, count)), 0);
      this.#columns.set(collection, col);
    }
    const added: string[] = [];
    for (let i = 0; i < count; i++) {
      const id = this.#nextId++;
      const did = formatDid(id, this.salt);
      if (Array.isArray(col)) col.push(did);
      else col.push(id);
      added.push(did);
    }
    return added;
  }

  /** Number of account ids in use (ids are 0..accountCount-1). */
  get accountCount(): number {
    return this.#nextId;
  }

  /** The account ids of an id-based collection, in first-seen order (empty when unknown). */
  ids(collection: string): Uint32Array {
    const col = this.#columns.get(collection);
    if (col === undefined) return new Uint32Array();
    if (Array.isArray(col)) throw new TypeError(`${collection} holds explicit DIDs, not ids`);
    return col.ids.subarray(0, col.length);
  }

  /** Appends account `id` (new or existing) at the end of `collection`, creating it if needed. */
  addId(collection: string, id: number): void {
    let col = this.#columns.get(collection);
    if (!col) this.#columns.set(collection, col = new IdColumn(new Uint32Array(16), 0));
    if (Array.isArray(col)) throw new TypeError(`${collection} holds explicit DIDs, not ids`);
    col.push(id);
    if (id >= this.#nextId) this.#nextId = id + 1;
  }

  /** Sets a collection's content: compact ids or explicit strings (used by the builders). */
  setColumn(collection: string, content: Uint32Array | string[]): void {
    this.#columns.set(
      collection,
      Array.isArray(content) ? [...content] : new IdColumn(content, content.length),
    );
  }

  /** Collections, entries and distinct accounts. */
  totals(): WorldTotals {
    let entries = 0;
    const seenIds = new Uint8Array(Math.ceil(this.#nextId / 8) + 1);
    const seenStrings = new Set<string>();
    let accounts = 0;
    for (const col of this.#columns.values()) {
      entries += col.length;
      if (Array.isArray(col)) {
        for (const d of col) seenStrings.add(d);
        continue;
      }
      for (let i = 0; i < col.length; i++) {
        const id = col.ids[i];
        const bit = 1 << (id & 7);
        if (!(seenIds[id >>> 3] & bit)) {
          seenIds[id >>> 3] |= bit;
          accounts++;
        }
      }
    }
    return { collections: this.#columns.size, entries, accounts: accounts + seenStrings.size };
  }
}

/** Distinct ids from the pool 0..pool-1 in a shuffled-looking order (a random affine walk mod pool). */
function drawIds(pool: number, count: number, rand: () => number): Uint32Array {
  const out = new Uint32Array(count);
  if (count === 0) return out;
  let step = 1 + Math.floor(rand() * (pool - 1));
  while (gcd(step, pool) !== 1) step = (step % (pool - 1)) + 1;
  let id = Math.floor(rand() * pool);
  for (let k = 0; k < count; k++) {
    out[k] = id;
    id = (id + step) % pool;
  }
  return out;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Deterministic tail NSIDs: real-looking authorities and names, suffixed when they run out. */
function tailName(k: number, rand: () => number, taken: Set<string>): string {
  const auth = TAIL_AUTHORITIES[Math.floor(rand() * TAIL_AUTHORITIES.length)];
  const name = TAIL_NAMES[Math.floor(rand() * TAIL_NAMES.length)];
  const nsid = `${auth}.${name}`;
  // Base names carry no digits, so the suffixed form never collides.
  return taken.has(nsid) ? `${nsid}${k}` : nsid;
}

/** Builds a realistic world: a few huge collections, a long tail of tiny ones, accounts shared across them. */
export function makeWorld(opts: WorldOptions = {}): SimWorld {
  const seed = opts.seed ?? 1;
  const largeSizes = opts.largeSizes ?? [20000, 12000, 8000, 5000, 2000];
  const total = Math.max(opts.collections ?? 40, largeSizes.length);
  const tailMax = opts.tailMax ?? 60;
  const emptyRate = opts.emptyRate ?? 0.15;
  const biggest = Math.max(0, tailMax, ...largeSizes);
  const pool = Math.max(2, opts.accounts ?? Math.ceil(biggest * 1.25), biggest);
  const rand = seededRandom(seed);
  const world = new SimWorld(seed, pool);
  const taken = new Set<string>();
  largeSizes.forEach((size, i) => {
    const nsid = LARGE_NAMES[i] ?? `app.bsky.sim.big${i}`;
    taken.add(nsid);
    world.setColumn(nsid, drawIds(pool, size, rand));
  });
  for (let k = largeSizes.length; k < total; k++) {
    const nsid = tailName(k, rand, taken);
    taken.add(nsid);
    const size = rand() < emptyRate ? 0 : 1 + Math.floor(rand() * tailMax);
    world.setColumn(nsid, drawIds(pool, Math.min(size, tailMax), rand));
  }
  return world;
}

/** A world with explicit content, entries kept verbatim (invalid DIDs and duplicates included). */
export function worldFromLists(record: Record<string, string[]>, seed = 1): SimWorld {
  const world = new SimWorld(seed);
  for (const [nsid, dids] of Object.entries(record)) world.setColumn(nsid, dids);
  return world;
}

/** bsky.network's largest collections at 150M pairs (public estimates, issue 9), largest first. */
export const NETWORK_LARGE: readonly (readonly [string, number])[] = [
  ["app.bsky.feed.like", 30_000_000],
  ["app.bsky.feed.post", 28_000_000],
  ["app.bsky.actor.profile", 27_000_000],
  ["app.bsky.graph.follow", 26_000_000],
  ["app.bsky.feed.repost", 15_000_000],
  ["chat.bsky.actor.declaration", 10_000_000],
  ["app.bsky.graph.block", 8_000_000],
];
/** The network's pair count the sizes above belong to. */
export const NETWORK_PAIRS = 150_000_000;
/** Collections after the large ones, sharing what the large ones leave (~6M at full size). */
export const NETWORK_TAIL = 1_270;

/** Splits `total` over `n` ranks in proportion to 1/rank (Zipf, s = 1), exactly, largest first. */
export function zipfSizes(total: number, n: number): number[] {
  if (n <= 0) return [];
  let h = 0;
  for (let k = 1; k <= n; k++) h += 1 / k;
  const exact = Array.from({ length: n }, (_, i) => total / h / (i + 1));
  const sizes = exact.map(Math.floor);
  let left = total - sizes.reduce((a, b) => a + b, 0);
  // Largest remainders first; ties go to the larger collection, so the order stays descending.
  const order = exact.map((x, i) => [x - Math.floor(x), i] as const)
    .sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (let j = 0; left > 0; j = (j + 1) % n, left--) sizes[order[j][1]]++;
  return sizes;
}

/**
 * A world shaped like bsky.network scaled to `pairs` entries in all (exactly): the seven large
 * collections in their real proportions, then NETWORK_TAIL collections with a Zipf-sized tail, over
 * an account pool 1.25× the largest. Columns are Uint32Arrays: 150M pairs take ~600 MB.
 */
export function makeNetworkWorld(opts: { pairs: number; seed?: number }): SimWorld {
  const seed = opts.seed ?? 1;
  const scale = opts.pairs / NETWORK_PAIRS;
  const large = NETWORK_LARGE.map(([name, n]) => [name, Math.round(n * scale)] as const);
  const tailTotal = Math.max(0, opts.pairs - large.reduce((a, [, n]) => a + n, 0));
  const pool = Math.max(2, Math.ceil(large[0][1] * 1.25));
  const rand = seededRandom(seed);
  const world = new SimWorld(seed, pool);
  const taken = new Set<string>();
  for (const [nsid, size] of large) {
    taken.add(nsid);
    world.setColumn(nsid, drawIds(pool, size, rand));
  }
  zipfSizes(tailTotal, NETWORK_TAIL).forEach((size, k) => {
    const nsid = tailName(large.length + k, rand, taken);
    taken.add(nsid);
    world.setColumn(nsid, drawIds(pool, Math.min(size, pool), rand));
  });
  return world;
}

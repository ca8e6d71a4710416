/**
 * The index's key layout (version 3). Keys are short because LevelDB's CPU cost (memtable
 * comparisons, compaction, checksums) grows with key bytes: each collection gets a 3-character id,
 * and DIDs are stored compacted: "did:plc:" becomes one byte (0x01), other DIDs lose "did:".
 *
 * One key per pair. Layout 2 also kept a DID→collection key per pair; it doubled the writes and
 * the disk of a backfill, while the only reader (an account deletion, a few a second on the
 * network) is as well served by one point lookup per collection id, which the Bloom filters make
 * cheap for the collections a DID is not in.
 *
 *   r<cid><did'>        collection→DID ("rbc"); value = the backfill generation that wrote it, or "";
 *                       or a tombstone "~<rev>@<ms>[#<gen>]": a proven delete took the repo's last
 *                       record there (the pair is not listed; see tombstones below)
 *   k\0<collection>     the collection's backfill checkpoint (JSON)
 *   n\0<collection>     the collection's id
 *   v                   the layout version
 *   G                   time (ms) of the last gap in live indexing: older tombstones yield to listings
 *   l\0<stream url>     the live stream's checkpoint (JSON, with its cursor)
 *   m\0<collection>     pairs live indexing added and removed in the collection (JSON)
 *   d<did'>             a deleted account's tombstone (JSON): the backfill does not bring it back
 *   g<did'>\0<cid>      the backfill generation that counted a pair of a deleted account
 *   i                   the index's identity (random, made when the index is created)
 */

/** The layout this code reads and writes. */
export const LAYOUT_VERSION = "3";
/** Layout 2: layout 3 plus a DID→collection key per pair, under this prefix; dropped on open. */
export const V2_CBR = "c";
export const VERSION_KEY = "v";
export const IDENTITY_KEY = "i";
export const CKPT = "k\x00";
export const DICT = "n\x00";
export const GAP_KEY = "G";
export const LIVE_CKPT = "l\x00";
export const LIVE_COUNT = "m\x00";
export const TOMB = "d";
export const GHOST = "g";
/** Sorts after every character a DID or an id can hold, so `prefix + END` bounds a prefix range. */
export const END = "\uffff";

const ID_BASE = 127;
/** Ids are 3 characters in 0x01..0x7f: never NUL (the ghost keys' separator), one byte each in UTF-8. */
export const MAX_COLLECTIONS = ID_BASE ** 3;

/** Encodes collection number `n` (0 ≤ n < MAX_COLLECTIONS) as its fixed-width id. */
export function encodeId(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n >= MAX_COLLECTIONS) {
    throw new RangeError(`collection number out of range: ${n}`);
  }
  return String.fromCharCode(
    1 + Math.floor(n / (ID_BASE * ID_BASE)),
    1 + Math.floor(n / ID_BASE) % ID_BASE,
    1 + n % ID_BASE,
  );
}

/** Decodes an id made by encodeId; undefined for anything else. */
export function decodeId(id: string): number | undefined {
  if (id.length !== 3) return undefined;
  let n = 0;
  for (let i = 0; i < 3; i++) {
    const c = id.charCodeAt(i);
    if (c < 1 || c > ID_BASE) return undefined;
    n = n * ID_BASE + c - 1;
  }
  return n;
}

/**
 * A DID as stored in keys. The two atproto methods keep DID order (plc, then web); any other
 * method sorts after plc, among web by name (so did:key, which came before plc in layout 1, now
 * comes after it). Anything that is not a DID maps to a string starting with NUL, which no stored
 * DID does, so looking it up finds nothing; writers take only validated DIDs.
 */
export function compactDid(did: string): string {
  if (did.startsWith("did:plc:")) return "\x01" + did.slice(8);
  return did.startsWith("did:") ? did.slice(4) : "\x00" + did;
}

/** The DID a compacted one came from. */
export function expandDid(stored: string): string {
  return stored.charCodeAt(0) === 1 ? "did:plc:" + stored.slice(1) : "did:" + stored;
}

/** Prefix of a collection's rbc keys. */
export function rbcPrefix(id: string): string {
  return "r" + id;
}

/** Version 1 keys (`r\0<collection>\0<did>`, `c\0<did>\0<collection>`), read only to migrate. */
export const V1 = { RBC: "r\x00", CBR: "c\x00" } as const;

/** Splits a version 1 rbc key into its collection and DID; undefined if it is not one. */
export function parseV1Rbc(key: string): { collection: string; did: string } | undefined {
  if (!key.startsWith(V1.RBC)) return undefined;
  const sep = key.indexOf("\x00", V1.RBC.length);
  if (sep < 0) return undefined;
  return { collection: key.slice(V1.RBC.length, sep), did: key.slice(sep + 1) };
}

/** A tombstoned pair: the commit that proved the repo's last record in the collection gone. */
export interface Tombstone {
  /** The repo rev of that commit. */
  readonly rev: string;
  /** Its time, ms since the epoch. */
  readonly timeMs: number;
  /** The backfill generation that last counted the pair as listed, if any. */
  readonly gen?: string;
}

/** The rbc value of a tombstone. */
export function tombstoneValue(t: Tombstone): string {
  return `~${t.rev}@${t.timeMs}${t.gen === undefined ? "" : "#" + t.gen}`;
}

/** The tombstone an rbc value holds; undefined for a live pair's value (or no value). */
export function parseTombstone(value: string | undefined): Tombstone | undefined {
  if (value === undefined || value.charCodeAt(0) !== 0x7e) return undefined;
  const at = value.indexOf("@");
  const hash = value.indexOf("#", at);
  const timeMs = Number(value.slice(at + 1, hash < 0 ? undefined : hash));
  const rev = value.slice(1, at);
  return hash < 0 ? { rev, timeMs } : { rev, timeMs, gen: value.slice(hash + 1) };
}

/** Key of a deleted account's tombstone. */
export function tombKey(did: string): string {
  return TOMB + compactDid(did);
}

/** Key of the generation mark kept for a pair of a deleted account. */
export function ghostKey(did: string, id: string): string {
  return GHOST + compactDid(did) + "\x00" + id;
}

/**
 * A lean DAG-CBOR reader for the firehose's hot path: reads the few fields a `#commit` needs (seq,
 * repo, rev, time, ops' action and path) and skips the rest, blocks and CIDs included, without
 * building objects. Anything it does not expect makes it give up (`undefined`); the caller then
 * decodes the frame fully with @atcute/cbor, so its answers never differ from the full decoder's.
 */

/** A `#commit` frame's fields as the scanner read them; `body` is where the body starts. */
export interface ScannedCommit {
  readonly body: number;
  readonly seq: number;
  readonly repo: string;
  readonly rev: string | undefined;
  readonly time: string | undefined;
  readonly ops: { action: string; path: string }[];
}

class GiveUp extends Error {}
const GIVE_UP = new GiveUp();

// Keys, as the bytes of their text.
const K_OP = bytes("op"), K_T = bytes("t"), T_COMMIT = bytes("#commit");
const K_SEQ = bytes("seq"), K_REPO = bytes("repo"), K_REV = bytes("rev"), K_TIME = bytes("time");
const K_OPS = bytes("ops"), K_ACTION = bytes("action"), K_PATH = bytes("path");

function bytes(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Reads a `#commit` frame, or undefined when it is anything else or not as expected. */
export function scanCommit(frame: Uint8Array): ScannedCommit | undefined {
  try {
    return scan(frame);
  } catch (err) {
    if (err instanceof GiveUp || err instanceof RangeError || err instanceof TypeError) {
      return undefined;
    }
    throw err;
  }
}

function scan(b: Uint8Array): ScannedCommit | undefined {
  const r = { b, p: 0 };
  // Header: {op: 1, t: "#commit"}, in either order.
  let n = mapLen(r);
  let op = false, commit = false;
  while (n-- > 0) {
    const k = keyRange(r);
    if (eq(b, k, K_OP)) op = head(r, 0) === 1;
    else if (eq(b, k, K_T)) commit = eq(b, strRange(r), T_COMMIT);
    else skip(r, 0);
  }
  if (!op || !commit) return undefined;
  const body = r.p;
  n = mapLen(r);
  let seq: number | undefined, repo: string | undefined;
  let rev: string | undefined, time: string | undefined;
  let ops: { action: string; path: string }[] | undefined;
  while (n-- > 0) {
    const k = keyRange(r);
    if (eq(b, k, K_SEQ)) seq = head(r, 0);
    else if (eq(b, k, K_REPO)) repo = str(r);
    else if (eq(b, k, K_REV)) rev = str(r);
    else if (eq(b, k, K_TIME)) time = str(r);
    else if (eq(b, k, K_OPS)) ops = scanOps(r);
    else skip(r, 0);
  }
  if (r.p !== b.length || seq === undefined || repo === undefined || ops === undefined) {
    return undefined;
  }
  return { body, seq, repo, rev, time, ops };
}

function scanOps(r: { b: Uint8Array; p: number }): { action: string; path: string }[] {
  let n = arrLen(r);
  const ops: { action: string; path: string }[] = [];
  while (n-- > 0) {
    let m = mapLen(r);
    let action: string | undefined, path: string | undefined;
    while (m-- > 0) {
      const k = keyRange(r);
      if (eq(r.b, k, K_ACTION)) action = str(r);
      else if (eq(r.b, k, K_PATH)) path = str(r);
      else skip(r, 0);
    }
    if (action === undefined || path === undefined) throw GIVE_UP;
    ops.push({ action, path });
  }
  return ops;
}

/** The argument of the next item, which must have major type `major`; advances past the head. */
function head(r: { b: Uint8Array; p: number }, major: number): number {
  const ib = r.b[r.p++];
  if (ib >> 5 !== major) throw GIVE_UP;
  return arg(r, ib & 31);
}

function arg(r: { b: Uint8Array; p: number }, info: number): number {
  const b = r.b;
  if (info < 24) return info;
  let v: number;
  if (info === 24) v = b[r.p];
  else if (info === 25) v = (b[r.p] << 8) | b[r.p + 1];
  else if (info === 26) {
    v = ((b[r.p] << 24) >>> 0) + ((b[r.p + 1] << 16) | (b[r.p + 2] << 8) | b[r.p + 3]);
  } else if (info === 27) {
    const hi = ((b[r.p] << 24) >>> 0) + ((b[r.p + 1] << 16) | (b[r.p + 2] << 8) | b[r.p + 3]);
    const lo = ((b[r.p + 4] << 24) >>> 0) + ((b[r.p + 5] << 16) | (b[r.p + 6] << 8) | b[r.p + 7]);
    if (hi >= 0x200000) throw GIVE_UP;
    v = hi * 0x100000000 + lo;
  } else throw GIVE_UP;
  r.p += 1 << (info - 24);
  if (r.p > b.length || v === undefined || Number.isNaN(v)) throw GIVE_UP;
  return v;
}

function mapLen(r: { b: Uint8Array; p: number }): number {
  return head(r, 5);
}

function arrLen(r: { b: Uint8Array; p: number }): number {
  return head(r, 4);
}

/** A text string's [start, end) in the buffer. */
function strRange(r: { b: Uint8Array; p: number }): number {
  const len = head(r, 3);
  const start = r.p;
  r.p += len;
  if (r.p > r.b.length) throw GIVE_UP;
  rangeEnd = r.p;
  return start;
}

let rangeEnd = 0;

function keyRange(r: { b: Uint8Array; p: number }): number {
  return strRange(r);
}

/** Whether the string at [start, rangeEnd) is `key`. */
function eq(b: Uint8Array, start: number, key: Uint8Array): boolean {
  if (rangeEnd - start !== key.length) return false;
  for (let i = 0; i < key.length; i++) if (b[start + i] !== key[i]) return false;
  return true;
}

function str(r: { b: Uint8Array; p: number }): string {
  const start = strRange(r), end = rangeEnd, b = r.b;
  if (end - start <= 64) {
    let ascii = true;
    for (let i = start; i < end; i++) {
      if (b[i] >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      return String.fromCharCode.apply(null, b.subarray(start, end) as unknown as number[]);
    }
  }
  return utf8.decode(b.subarray(start, end));
}

/** Skips one item (tags, nesting and all); floats and indefinite lengths are not DAG-CBOR. */
function skip(r: { b: Uint8Array; p: number }, depth: number): void {
  if (depth > 64) throw GIVE_UP;
  const ib = r.b[r.p++];
  const major = ib >> 5, info = ib & 31;
  if (major === 7) {
    if (info >= 20 && info <= 22) return; // false, true, null
    throw GIVE_UP;
  }
  const v = arg(r, info);
  switch (major) {
    case 0:
    case 1:
      return;
    case 2:
    case 3:
      r.p += v;
      if (r.p > r.b.length) throw GIVE_UP;
      return;
    case 4:
      for (let i = 0; i < v; i++) skip(r, depth + 1);
      return;
    case 5:
      for (let i = 0; i < v; i++) {
        strRange(r);
        skip(r, depth + 1);
      }
      return;
    case 6:
      // Only tag 42 (a CID: a byte string after a zero byte) is DAG-CBOR.
      if (v !== 42 || r.b[r.p] >> 5 !== 2) throw GIVE_UP;
      skip(r, depth + 1);
      return;
  }
}

/**
 * Commits for the simulated firehose. A CommitProducer turns one account's writes into a `#commit`
 * body; the simple one here puts a signed-looking commit block and the record blocks in a real CAR
 * with real CIDs, without an MST (a producer that keeps each repo as a real MST can replace it).
 */
import { createHash } from "node:crypto";
import { writeCarStream } from "@atcute/car";
import { encode, toBytes } from "@atcute/cbor";
import { type CidLink, fromCidLink, fromDigest, toCidLink } from "@atcute/cid";

/** One write of a commit. */
export interface CommitWrite {
  readonly action: "create" | "update" | "delete";
  readonly collection: string;
  readonly rkey: string;
  /** The record, for create and update. */
  readonly record?: Record<string, unknown>;
}

/** A `#commit` body without `seq` (the stream numbers it), in the shape the lexicon gives. */
export interface CommitBody {
  readonly repo: string;
  readonly rev: string;
  readonly since: string | null;
  readonly commit: CidLink;
  /** CAR bytes. */
  readonly blocks: Uint8Array;
  readonly ops: readonly { action: string; path: string; cid: CidLink | null; prev?: CidLink }[];
  readonly prevData?: CidLink;
  readonly time: string;
  readonly tooBig: boolean;
  readonly rebase: boolean;
  readonly blobs: readonly unknown[];
}

/** Makes commits; swap in another (e.g. one keeping real MSTs) through the stream's options. */
export interface CommitProducer {
  commit(
    did: string,
    writes: readonly CommitWrite[],
    time: string,
  ): CommitBody | Promise<CommitBody>;
}

/** The CID of a DAG-CBOR block (sha-256, synchronous). */
export function cidOf(bytes: Uint8Array): CidLink {
  const digest = createHash("sha256").update(bytes).digest();
  return toCidLink(fromDigest(0x71, new Uint8Array(digest.buffer, digest.byteOffset, 32)));
}

const S32 = "234567abcdefghijklmnopqrstuvwxyz";

/** A TID (13 base32-sortable characters) from microseconds and a clock id. */
export function tid(micros: number, clockId = 0): string {
  let n = BigInt(Math.floor(micros)) << 10n | BigInt(clockId & 1023);
  let s = "";
  for (let i = 0; i < 13; i++) {
    s = S32[Number(n & 31n)] + s;
    n >>= 5n;
  }
  return s;
}

/** Commit block and record blocks in a CAR, per-repo revs; no MST, so no proof of deletes. */
export class SimpleCommitProducer implements CommitProducer {
  readonly #last = new Map<string, { rev: string; data: CidLink; micros: number }>();

  async commit(did: string, writes: readonly CommitWrite[], time: string): Promise<CommitBody> {
    const prev = this.#last.get(did);
    const micros = Math.max(Date.parse(time) * 1000, (prev?.micros ?? 0) + 1);
    const rev = tid(micros);
    const blocks: { cid: CidLink; bytes: Uint8Array }[] = [];
    const ops = writes.map((w) => {
      const path = `${w.collection}/${w.rkey}`;
      if (w.action === "delete" || !w.record) return { action: w.action, path, cid: null };
      const bytes = encode(w.record);
      const cid = cidOf(bytes);
      blocks.push({ cid, bytes });
      return { action: w.action, path, cid };
    });
    // A stand-in for the MST root: the hash of what changed, chained to the previous one.
    const data = cidOf(encode({ prev: prev?.data ?? null, ops }));
    const commitBytes = encode({
      did,
      version: 3,
      data,
      rev,
      prev: null,
      sig: toBytes(new Uint8Array(64)),
    });
    const commit = cidOf(commitBytes);
    const entries = [{ cid: commit, bytes: commitBytes }, ...blocks].map((b) => ({
      cid: fromCidLink(b.cid).bytes,
      data: b.bytes,
    }));
    const car = await Array.fromAsync(writeCarStream([commit], entries));
    this.#last.set(did, { rev, data, micros });
    return {
      repo: did,
      rev,
      since: prev?.rev ?? null,
      commit,
      blocks: concat(car),
      ops,
      prevData: prev?.data,
      time,
      tooBig: false,
      rebase: false,
      blobs: [],
    };
  }
}

/** The byte arrays one after another. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * A simulated account's repo: a real MST of real records (DAG-CBOR blocks, `@atcute/mst`), committed
 * the way a PDS does and described as a sync v1.1 `#commit` body. The CAR carries the commit, the new
 * records, the new MST nodes and, for every op, the nodes that prove its key and the keys next to it
 * (the reference PDS's "covering proof"), so a consumer can invert the ops and check `prevData`.
 * Options withhold or corrupt those blocks, or drop `prevData`, to make commits that prove nothing.
 *
 * Commits are signed with one fixed P-256 sim key (`SIM_SIGNING_KEY`); the consumer does not check
 * signatures (it trusts its relay for them), but the commit object has the real shape.
 */
import { writeCarStream } from "@atcute/car";
import { encode, toBytes } from "@atcute/cbor";
import * as CID from "@atcute/cid";
import { P256PrivateKey } from "@atcute/crypto";
import { MemoryBlockStore, mstDiff, MSTNode, NodeStore, NodeWrangler } from "@atcute/mst";
import * as TID from "@atcute/tid";
import { widenBufferPool } from "../util/mod.ts";

/** A CID link as the sim emits it (a `CidLinkWrapper`: encodes as a CID, reads as `$link`). */
export type SimLink = CID.CidLink;

/** One write in a commit. A create without `rkey` gets a fresh TID; a record defaults to a small one. */
export type SimWrite =
  | { action: "create"; collection: string; rkey?: string; record?: Record<string, unknown> }
  | { action: "update"; collection: string; rkey: string; record?: Record<string, unknown> }
  | { action: "delete"; collection: string; rkey: string };

/** One op of a `#commit` (sync v1.1: `prev` on updates and deletes). */
export interface SimOp {
  action: "create" | "update" | "delete";
  path: string;
  cid: SimLink | null;
  prev?: SimLink;
}

/** A `#commit` body without `seq` (the stream that sends it numbers it). */
export interface SimCommitBody {
  repo: string;
  rev: string;
  since: string | null;
  commit: SimLink;
  /** The CAR; a frame encoder wraps it with `toBytes` so DAG-CBOR writes a byte string. */
  blocks: Uint8Array;
  ops: SimOp[];
  prevData?: SimLink;
  time: string;
  tooBig: false;
  rebase: false;
  blobs: never[];
}

/**
 * How complete the commit's proof is:
 * - `full`: what sync v1.1 requires (default);
 * - `diff-only`: only new blocks, as pre-v1.1 PDSs sent (sometimes enough, often not);
 * - `withheld`: no MST nodes at all;
 * - `corrupted`: the new root node's bytes altered (its CID kept);
 * - `no-prev-data`: full blocks but no `prevData` and no op `prev` (a pre-v1.1 commit);
 * - `wrong-prev-data`: `prevData` names a tree the ops do not invert to.
 */
export type ProofMode =
  | "full"
  | "diff-only"
  | "withheld"
  | "corrupted"
  | "no-prev-data"
  | "wrong-prev-data";

/** Every proof mode. */
export const PROOF_MODES: readonly ProofMode[] = [
  "full",
  "diff-only",
  "withheld",
  "corrupted",
  "no-prev-data",
  "wrong-prev-data",
];

/** Options for one commit. */
export interface CommitOptions {
  proof?: ProofMode;
  /** The commit's `time` (ISO 8601); default: the repo's clock. Revs never go backwards. */
  time?: string;
}

/** The fixed private key (P-256, raw scalar) every sim repo signs with. Test tooling only. */
export const SIM_SIGNING_KEY = new Uint8Array([
  0x3b,
  0x1f,
  0x9a,
  0x62,
  0x0d,
  0x47,
  0xc5,
  0x88,
  0x21,
  0x6e,
  0xa4,
  0x13,
  0x5c,
  0xf0,
  0x7d,
  0x92,
  0x4e,
  0xb3,
  0x08,
  0x6a,
  0xd1,
  0x35,
  0x7f,
  0xc2,
  0x19,
  0x84,
  0xe6,
  0x2b,
  0x50,
  0x9d,
  0x03,
  0x77,
]);

let signer: Promise<P256PrivateKey> | undefined;
const simSigner = () => signer ??= P256PrivateKey.importRaw(SIM_SIGNING_KEY);

/** Options for a repo. */
export interface SimRepoOptions {
  /** Wall clock in ms for revs, rkeys and `time` (default `Date.now`). */
  now?: () => number;
  /** Sign commits with the sim key (default true); unsigned commits carry a zero signature. */
  sign?: boolean;
}

const EMPTY = MSTNode.empty();

widenBufferPool();

/** A block store that can note the blocks added while a commit is built. */
class LoggedStore extends MemoryBlockStore {
  puts: Set<string> | undefined;
  override put(cid: string, bytes: Uint8Array<ArrayBuffer>): Promise<void> {
    if (this.puts !== undefined && !this.blocks.has(cid)) this.puts.add(cid);
    return super.put(cid, bytes);
  }
}

/** One account's repo, its records and its commit history head (see the module doc). */
export class SimRepo {
  readonly did: string;
  readonly #now: () => number;
  readonly #sign: boolean;
  readonly #store = new LoggedStore();
  /** MST root (`data`) of the last commit; the empty node before the first. */
  #data: string | null = null;
  #rev: string | null = null;
  #lastUs = 0;
  #seq = 0;
  readonly #records = new Map<string, string>(); // path → record CID
  readonly #recordRefs = new Map<string, number>(); // record CID → paths holding it
  readonly #counts = new Map<string, number>(); // collection → records

  constructor(did: string, options: SimRepoOptions = {}) {
    this.did = did;
    this.#now = options.now ?? Date.now;
    this.#sign = options.sign ?? true;
  }

  /** The rev of the last commit, or null before the first. */
  get rev(): string | null {
    return this.#rev;
  }

  /** The MST root CID of the last commit, or null before the first. */
  get data(): string | null {
    return this.#data;
  }

  /** Records per collection (only collections with at least one): the sim's truth. */
  collections(): Map<string, number> {
    return new Map(this.#counts);
  }

  /** True when the repo holds at least one record in `collection`. */
  hasRecordIn(collection: string): boolean {
    return this.#counts.has(collection);
  }

  /** The record keys held in `collection`, in MST order. */
  rkeys(collection: string): string[] {
    const prefix = collection + "/";
    const out: string[] = [];
    for (const path of this.#records.keys()) {
      if (path.startsWith(prefix)) out.push(path.slice(prefix.length));
    }
    return out.sort();
  }

  /** Number of records in the repo. */
  get size(): number {
    return this.#records.size;
  }

  /** Blocks held (current MST nodes and records): old versions are dropped at each commit. */
  get blockCount(): number {
    return this.#store.blocks.size;
  }

  /** A fresh record key (a TID after every earlier one of this repo). */
  nextRkey(): string {
    return TID.create(this.#tick(), 0);
  }

  /** Every (path, record CID) in the MST, read from the tree itself (for checks against the truth). */
  async treeEntries(): Promise<[string, string][]> {
    const out: [string, string][] = [];
    await this.#walk((node) => {
      for (let i = 0; i < node.keys.length; i++) out.push([node.keys[i], node.values[i].$link]);
    });
    return out.sort(([a], [b]) => (a < b ? -1 : 1));
  }

  /** The number of MST nodes in the current tree. */
  async treeNodeCount(): Promise<number> {
    let n = 0;
    await this.#walk(() => n++);
    return n;
  }

  async #walk(visit: (node: MSTNode) => void): Promise<void> {
    if (this.#data === null) return;
    const ns = this.#nodes();
    const walk = async (cid: string | null): Promise<void> => {
      if (cid === null) return;
      const node = await ns.get(cid);
      visit(node);
      for (const sub of node.subtrees) await walk(sub?.$link ?? null);
    };
    await walk(this.#data);
  }

  /** Applies `writes` as one commit and returns its `#commit` body. Throws on a write that cannot apply. */
  async commit(writes: readonly SimWrite[], options: CommitOptions = {}): Promise<SimCommitBody> {
    const mode = options.proof ?? "full";
    const time = options.time ?? new Date(this.#now()).toISOString();
    if (writes.length === 0) throw new Error(`commit for ${this.did} has no writes`);
    const ns = this.#nodes();
    const wrangler = new NodeWrangler(ns);
    this.#store.puts = new Set();
    if (this.#data === null) await ns.put(EMPTY); // the first commit's "before": no records
    const before = this.#data ?? (await EMPTY.cid()).$link;
    let root = before;

    const ops: SimOp[] = [];
    const newRecords = new Map<string, Uint8Array<ArrayBuffer>>();
    const paths = new Set<string>();
    for (const write of writes) {
      const rkey = write.action === "create" ? write.rkey ?? this.nextRkey() : write.rkey;
      const path = `${write.collection}/${rkey}`;
      if (paths.has(path)) throw new Error(`commit for ${this.did} writes ${path} twice`);
      paths.add(path);
      const prev = this.#records.get(path);
      if (write.action === "create" && prev !== undefined) {
        throw new Error(`create of ${path} in ${this.did}: the record exists`);
      }
      if (write.action !== "create" && prev === undefined) {
        throw new Error(`${write.action} of ${path} in ${this.did}: no such record`);
      }
      if (write.action === "delete") {
        root = await wrangler.deleteRecord(root, path);
        ops.push({ action: "delete", path, cid: null, prev: link(prev!) });
        continue;
      }
      const bytes = encode(
        write.record ?? { $type: write.collection, createdAt: time, n: ++this.#seq },
      );
      const cid = CID.toString(await CID.create(CID.CODEC_DCBOR, bytes));
      newRecords.set(cid, bytes);
      root = await wrangler.putRecord(root, path, link(cid));
      ops.push(
        write.action === "create"
          ? { action: "create", path, cid: link(cid) }
          : { action: "update", path, cid: link(cid), prev: link(prev!) },
      );
    }

    const rev = TID.create(this.#tick(Date.parse(time)), 0);
    const unsigned = { did: this.did, version: 3, data: link(root), rev, prev: null };
    const sig = this.#sign ? await (await simSigner()).sign(encode(unsigned)) : new Uint8Array(64);
    const commitBytes = encode({ ...unsigned, sig: toBytes(sig) });
    const commitCid = CID.toString(await CID.create(CID.CODEC_DCBOR, commitBytes));

    // Blocks: the commit, the new records, the new MST nodes, and each op's covering proof.
    const [created, removed] = await mstDiff(ns, before, root);
    created.add(root);
    const proof = new Set<string>();
    for (const op of ops) await coveringProof(ns, root, op.path, proof);
    const blocks = new Map<string, Uint8Array>([[commitCid, commitBytes], ...newRecords]);
    const mstBlocks = mode === "withheld"
      ? new Set<string>()
      : mode === "diff-only"
      ? created
      : created.union(proof);
    for (const cid of mstBlocks) blocks.set(cid, (await this.#store.get(cid))!);
    if (mode === "corrupted") {
      const bytes = blocks.get(root)!.slice();
      bytes[bytes.length - 1] ^= 0x01;
      blocks.set(root, bytes);
    }
    const car = await carOf(commitCid, blocks);

    // The truth moves on; blocks no longer reachable (old nodes, nodes of intermediate trees,
    // replaced records) are dropped.
    const garbage = removed.union(this.#store.puts.difference(created));
    this.#store.puts = undefined;
    await this.#store.deleteMany([...garbage.difference(created)]);
    for (const op of ops) {
      const collection = op.path.slice(0, op.path.indexOf("/"));
      const old = this.#records.get(op.path);
      if (old !== undefined) this.#unref(old);
      if (op.action === "delete") {
        this.#records.delete(op.path);
        const n = this.#counts.get(collection)! - 1;
        if (n === 0) this.#counts.delete(collection);
        else this.#counts.set(collection, n);
        continue;
      }
      const cid = op.cid!.$link;
      this.#records.set(op.path, cid);
      this.#recordRefs.set(cid, (this.#recordRefs.get(cid) ?? 0) + 1);
      await this.#store.put(cid, newRecords.get(cid)!);
      if (op.action === "create") {
        this.#counts.set(collection, (this.#counts.get(collection) ?? 0) + 1);
      }
    }
    const since = this.#rev;
    this.#data = root;
    this.#rev = rev;

    const legacy = mode === "no-prev-data";
    return {
      repo: this.did,
      rev,
      since,
      commit: link(commitCid),
      blocks: car,
      ops: legacy ? ops.map(({ action, path, cid }) => ({ action, path, cid })) : ops,
      ...(legacy ? {} : { prevData: link(mode === "wrong-prev-data" ? flipped(before) : before) }),
      time,
      tooBig: false,
      rebase: false,
      blobs: [],
    };
  }

  #nodes(): NodeStore {
    // A fresh node cache per use: thousands of repos each keeping an LRU of 1024 nodes would not fit.
    return new NodeStore(this.#store);
  }

  #unref(cid: string): void {
    const n = (this.#recordRefs.get(cid) ?? 0) - 1;
    if (n > 0) {
      this.#recordRefs.set(cid, n);
      return;
    }
    this.#recordRefs.delete(cid);
    void this.#store.delete(cid);
  }

  /** Microseconds for the next TID: the clock, but always after the last one handed out. */
  #tick(ms = this.#now()): number {
    this.#lastUs = Math.max(ms * 1000, this.#lastUs + 1);
    return this.#lastUs;
  }
}

function link(cid: string): SimLink {
  return CID.toCidLink(CID.fromString(cid));
}

/** A CID of no tree: `cid` with one bit of its digest flipped. */
function flipped(cid: string): string {
  const digest = CID.fromString(cid).digest.contents.slice();
  digest[0] ^= 0x80;
  return CID.toString(CID.fromDigest(CID.CODEC_DCBOR, digest));
}

/**
 * Adds to `out` the MST nodes that prove `key`'s value (or absence) in the tree at `root` and the
 * keys immediately before and after it: its search path, and where `key` sits in a node, the inner
 * spines of the subtrees on either side of it.
 */
async function coveringProof(
  ns: NodeStore,
  root: string,
  key: string,
  out: Set<string>,
): Promise<void> {
  let cid: string | null = root;
  while (cid !== null) {
    out.add(cid);
    const node: MSTNode = await ns.get(cid);
    const i = node.lowerBound(key);
    if (i < node.keys.length && node.keys[i] === key) {
      await spine(ns, node.subtrees[i]?.$link ?? null, "right", out);
      await spine(ns, node.subtrees[i + 1]?.$link ?? null, "left", out);
      return;
    }
    cid = node.subtrees[i]?.$link ?? null;
  }
}

async function spine(
  ns: NodeStore,
  cid: string | null,
  side: "left" | "right",
  out: Set<string>,
): Promise<void> {
  while (cid !== null) {
    out.add(cid);
    const node: MSTNode = await ns.get(cid);
    const next = side === "left" ? node.subtrees[0] : node.subtrees[node.subtrees.length - 1];
    cid = next?.$link ?? null;
  }
}

async function carOf(root: string, blocks: Map<string, Uint8Array>): Promise<Uint8Array> {
  const entries = [...blocks].map(([cid, data]) => ({ cid: CID.fromString(cid).bytes, data }));
  const chunks = await Array.fromAsync(writeCarStream([link(root)], entries));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** The rkey of the one record a repo gets in each collection its history seeds (a TID from 2023). */
export const SEED_RKEY = "3jzfcijpj2z2a";

/** Options for a set of repos. */
export interface SimReposOptions extends SimRepoOptions {
  /** The collections an account already had records in before the stream began (its history). */
  history?: (did: string) => Iterable<string>;
}

/**
 * Every simulated account's repo, created when first written. An account's history (records made
 * before the stream began, as its listing in the world says) is committed first and never sent, so
 * the stream's first commit for it already has `since` and `prevData`. Queries answer for accounts
 * not written yet from their history alone.
 */
export class SimRepos {
  readonly #repos = new Map<string, SimRepo>();
  /** Each account's history, read once: the first question about an account fixes it. */
  readonly #history = new Map<string, readonly string[]>();
  readonly #opts: SimReposOptions;

  constructor(opts: SimReposOptions = {}) {
    this.#opts = opts;
  }

  #historyOf(did: string): readonly string[] {
    let h = this.#history.get(did);
    if (h === undefined) this.#history.set(did, h = [...new Set(this.#opts.history?.(did) ?? [])]);
    return h;
  }

  /** True when the account holds at least one record in `collection`. */
  holds(did: string, collection: string): boolean {
    const repo = this.#repos.get(did);
    return repo ? repo.hasRecordIn(collection) : this.#historyOf(did).includes(collection);
  }

  /** The account's record keys in `collection`. */
  rkeys(did: string, collection: string): string[] {
    const repo = this.#repos.get(did);
    if (repo) return repo.rkeys(collection);
    return this.holds(did, collection) ? [SEED_RKEY] : [];
  }

  /** The repos written so far (accounts never written are as their history says). */
  written(): ReadonlyMap<string, SimRepo> {
    return this.#repos;
  }

  /** Commits `writes` to the account's repo (seeding its history first); the `#commit` body. */
  async commit(
    did: string,
    writes: readonly SimWrite[],
    time?: string,
    options: CommitOptions = {},
  ): Promise<SimCommitBody> {
    let repo = this.#repos.get(did);
    if (!repo) {
      repo = new SimRepo(did, this.#opts);
      const seed = this.#historyOf(did).map((collection): SimWrite => ({
        action: "create",
        collection,
        rkey: SEED_RKEY,
      }));
      const past = time === undefined ? undefined : new Date(Date.parse(time) - 1).toISOString();
      if (seed.length > 0) await repo.commit(seed, { time: past });
      this.#repos.set(did, repo);
    }
    return await repo.commit(writes, { ...options, time: time ?? options.time });
  }
}

/**
 * What a sync v1.1 `#commit` proves by itself about the repo's collections: after inverting its ops
 * on the blocks it carries and checking the result against `prevData`, whether a delete left the
 * repo with no record in the collection, and whether a create was the repo's first record there.
 *
 * Pure: no I/O, nothing kept between calls. Signatures are not checked here: the consumer trusts its
 * relay for them (and for account status). The proof rests on the commit CID the relay vouched for:
 * every block read is hashed against its CID, so the trees walked are the commit's own.
 *
 * The MST work is `@atcute/mst`'s: its NodeStore loads (and checks) nodes from the commit's blocks,
 * its NodeWrangler inverts the ops, its NodeWalker finds a key's neighbours.
 */
import { hash } from "node:crypto";
import { fromUint8Array } from "@atcute/car";
import { type Bytes, decode, fromBytes } from "@atcute/cbor";
import * as CID from "@atcute/cid";
import {
  type BlockMap,
  isMstKey,
  MemoryBlockStore,
  MissingBlockError,
  MSTNode,
  NodeStore,
  NodeWalker,
  NodeWrangler,
  OverlayBlockStore,
  type ReadonlyBlockStore,
} from "@atcute/mst";
import { widenBufferPool } from "../util/mod.ts";

/** Why a commit proved nothing; the consumer counts deletes kept (not removed) by these. */
export type ProofReason =
  | "no_prev_data" // pre-v1.1: no `prevData`, or an update/delete op without `prev`
  | "too_big" // the producer said the blocks are incomplete
  | "missing_blocks" // a block the proof needs is not in the CAR
  | "bad_block" // the CAR is unreadable, or a block does not hash to its CID or does not decode
  | "not_inverting" // the ops disagree with the tree, or the inverted tree is not `prevData`
  | "malformed"; // the op list itself is invalid (unknown action, bad path, duplicate path, …)

/** Every reason, in a fixed order (for counters and tables). */
export const PROOF_REASONS: readonly ProofReason[] = [
  "no_prev_data",
  "too_big",
  "missing_blocks",
  "bad_block",
  "not_inverting",
  "malformed",
];

/**
 * The parts of a decoded `#commit` body the proof reads. CIDs are taken as `@atcute/cbor` decodes
 * them (objects with `$link`) and are checked here, so a decoder may pass its fields on unchecked.
 */
export interface ProofInput {
  repo: string;
  rev?: string;
  commit: unknown;
  /** The CAR: raw bytes, or the `Bytes` wrapper `@atcute/cbor` decodes a byte string to. */
  blocks: Uint8Array | Bytes;
  ops: readonly { action: string; path: string; cid?: unknown; prev?: unknown }[];
  prevData?: unknown;
  tooBig?: boolean;
}

/** What one op proved. */
export interface OpVerdict {
  action: "create" | "update" | "delete";
  path: string;
  collection: string;
  /** delete: the repo has no record left in `collection` after this commit. */
  lastInCollection: boolean;
  /** create: the repo had no record in `collection` before this commit. */
  firstInCollection: boolean;
}

/** The outcome: proven verdicts per op, or the reason nothing is proven. */
export type CommitProof =
  | {
    proven: true;
    ops: OpVerdict[];
    /** Collections the repo left in this commit (a delete took its last record there). */
    emptied: string[];
    /** Collections the repo entered in this commit (a create made its first record there). */
    entered: string[];
  }
  | { proven: false; reason: ProofReason; detail: string };

/** The CID of the empty MST node: what a repo with no records has as its `data`. */
export const EMPTY_TREE_CID: Promise<string> = MSTNode.empty().cid().then((c) => c.$link);

class Unproven extends Error {
  constructor(readonly reason: ProofReason, message: string) {
    super(message);
  }
}

/** Checks a `#commit` against itself and says, per op, what it proves (see the module doc). */
export async function proveCommit(input: ProofInput): Promise<CommitProof> {
  try {
    return await prove(input);
  } catch (err) {
    return unproven(err);
  }
}

/** Any failure is doubt: the library throws plain errors on trees that are not well-formed MSTs. */
function unproven(err: unknown): CommitProof & { proven: false } {
  if (err instanceof Unproven) return { proven: false, reason: err.reason, detail: err.message };
  if (err instanceof MissingBlockError) {
    return { proven: false, reason: "missing_blocks", detail: `block ${err.cid} is not carried` };
  }
  return { proven: false, reason: "bad_block", detail: String((err as Error)?.message ?? err) };
}

interface Op {
  action: "create" | "update" | "delete";
  path: string;
  collection: string;
  cid: string | null;
  prev: string | null;
}

function parseOps(input: ProofInput): Op[] {
  const seen = new Set<string>();
  const ops: Op[] = [];
  for (const raw of input.ops) {
    const { action, path } = raw;
    if (action !== "create" && action !== "update" && action !== "delete") {
      throw new Unproven("malformed", `op action ${JSON.stringify(action)} is not known`);
    }
    if (typeof path !== "string" || !isMstKey(path)) {
      throw new Unproven("malformed", `op path ${JSON.stringify(path)} is not a repo path`);
    }
    if (seen.has(path)) throw new Unproven("malformed", `op path ${path} appears twice`);
    seen.add(path);
    const cid = linkOf(raw.cid);
    const prev = linkOf(raw.prev);
    if (action !== "delete" && cid === null) {
      throw new Unproven("malformed", `${action} of ${path} has no cid`);
    }
    if (action === "delete" && cid !== null) {
      throw new Unproven("malformed", `delete of ${path} has a cid`);
    }
    if (action === "create" && prev !== null) {
      throw new Unproven("malformed", `create of ${path} has a prev`);
    }
    if (action !== "create" && prev === null) {
      throw new Unproven("no_prev_data", `${action} of ${path} has no prev (pre-v1.1 op)`);
    }
    ops.push({ action, path, collection: path.slice(0, path.indexOf("/")), cid, prev });
  }
  return ops;
}

function linkOf(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  const link = (v as { $link?: unknown }).$link;
  if (typeof link !== "string") throw new Unproven("malformed", `CID ${String(v)} is not a link`);
  return link;
}

/** A commit's blocks opened: the root they name and a store over them. */
interface Opened {
  readonly car: CarBlocks;
  readonly data: string;
  readonly ns: NodeStore;
}

function open(input: ProofInput): Opened {
  const commitCid = linkOf(input.commit);
  if (commitCid === null) throw new Unproven("malformed", "commit has no commit CID");
  const car = new CarBlocks(
    input.blocks instanceof Uint8Array ? input.blocks : fromBytes(input.blocks),
  );
  const data = commitData(car, commitCid, input);
  // The nodes an inversion builds over the commit's blocks.
  return { car, data, ns: new NodeStore(new OverlayBlockStore(new MemoryBlockStore(), car)) };
}

async function prove(input: ProofInput): Promise<CommitProof> {
  const prevData = linkOf(input.prevData);
  // Returned, not thrown: a pre-v1.1 stream sends no prevData on any commit, and a throw costs.
  if (prevData === null) {
    return { proven: false, reason: "no_prev_data", detail: "commit has no prevData (pre-v1.1)" };
  }
  if (input.tooBig) throw new Unproven("too_big", "commit is marked tooBig");
  const ops = parseOps(input);
  const { ns, data } = open(input);

  // Forward check: the new tree holds what the ops say it holds.
  for (const op of ops) {
    const found = (await seek(ns, data, op.path)).value;
    if (found !== op.cid) {
      throw new Unproven(
        "not_inverting",
        `${op.action} of ${op.path}: the tree holds ${found ?? "nothing"}, the op says ${
          op.cid ?? "nothing"
        }`,
      );
    }
  }

  // Invert every op; paths are distinct, so the order does not change the result.
  const wrangler = new NodeWrangler(ns);
  let root = data;
  for (const op of ops) {
    root = op.action === "create"
      ? await wrangler.deleteRecord(root, op.path)
      : await wrangler.putRecord(root, op.path, { $link: op.prev! });
  }
  if (root !== prevData) {
    throw new Unproven("not_inverting", `inverted tree is ${root}, prevData is ${prevData}`);
  }

  const verdicts: OpVerdict[] = [];
  const emptied = new Set<string>();
  const entered = new Set<string>();
  for (const op of ops) {
    let lastInCollection = false;
    let firstInCollection = false;
    if (op.action === "delete") {
      lastInCollection = !(await neighbourIn(ns, data, op.path, op.collection));
      if (lastInCollection) emptied.add(op.collection);
    } else if (op.action === "create") {
      firstInCollection = !(await neighbourIn(ns, prevData, op.path, op.collection));
      if (firstInCollection) entered.add(op.collection);
    }
    verdicts.push({
      action: op.action,
      path: op.path,
      collection: op.collection,
      lastInCollection,
      firstInCollection,
    });
  }
  return { proven: true, ops: verdicts, emptied: [...emptied], entered: [...entered] };
}

/** Reads and checks the commit object; returns its MST root. */
function commitData(car: CarBlocks, commitCid: string, input: ProofInput): string {
  const bytes = car.read(commitCid);
  if (bytes === null) {
    throw new Unproven("missing_blocks", `commit block ${commitCid} is not carried`);
  }
  let commit: Record<string, unknown>;
  try {
    commit = decode(bytes);
  } catch (err) {
    throw new Unproven("bad_block", `commit block ${commitCid} does not decode: ${err}`);
  }
  const data = commit?.data as { $link?: unknown } | undefined;
  if (commit?.version !== 3 || typeof data?.$link !== "string") {
    throw new Unproven("bad_block", `commit block ${commitCid} is not a v3 commit object`);
  }
  if (commit.did !== input.repo) {
    throw new Unproven("not_inverting", `commit is for ${commit.did}, the event for ${input.repo}`);
  }
  if (input.rev !== undefined && commit.rev !== input.rev) {
    throw new Unproven("not_inverting", `commit rev is ${commit.rev}, the event says ${input.rev}`);
  }
  return data.$link as string;
}

/**
 * Walks the tree at `root` down to where `key` is or would be (a NodeWalker, which checks each
 * subtree's height on the way): its value if present, and the keys on either side of it. The
 * keys next to a key all lie on its search path, so only that path is read.
 */
async function seek(
  ns: NodeStore,
  root: string,
  key: string,
): Promise<{ value: string | null; below: string; above: string }> {
  const walker = await NodeWalker.create(ns, root);
  while (true) {
    while (walker.rpath < key) walker.right();
    if (walker.rpath === key) {
      return { value: walker.rval!.$link, below: walker.lpath, above: walker.rpath };
    }
    if (walker.subtree === null) return { value: null, below: walker.lpath, above: walker.rpath };
    await walker.down();
  }
}

/** True when a key next to `key` (absent from the tree at `root`) is in `collection`. */
async function neighbourIn(
  ns: NodeStore,
  root: string,
  key: string,
  collection: string,
): Promise<boolean> {
  const { value, below, above } = await seek(ns, root, key);
  if (value !== null) {
    throw new Unproven("not_inverting", `${key} is in the tree it should be absent from`);
  }
  const prefix = collection + "/";
  return below.startsWith(prefix) || above.startsWith(prefix);
}

const EMPTY_NODE_CID = await EMPTY_TREE_CID;
widenBufferPool();
const EMPTY_NODE_BYTES = await MSTNode.empty().serialize();

const sha256 = (bytes: Uint8Array): Uint8Array => hash("sha256", bytes, "buffer");

/** The CAR's blocks as a read-only block store; each block is hashed against its CID when first read. */
class CarBlocks implements ReadonlyBlockStore {
  readonly #blocks = new Map<
    string,
    { cid: CID.Cid; bytes: Uint8Array<ArrayBuffer>; checked: boolean }
  >();

  constructor(car: Uint8Array) {
    try {
      for (const entry of fromUint8Array(car)) {
        this.#blocks.set(CID.toString(entry.cid), {
          cid: entry.cid,
          bytes: entry.bytes as Uint8Array<ArrayBuffer>,
          checked: false,
        });
      }
    } catch (err) {
      throw new Unproven("bad_block", `blocks are not a readable CAR: ${err}`);
    }
  }

  /** A carried block's bytes, checked; null when not carried. */
  read(cid: string): Uint8Array<ArrayBuffer> | null {
    const block = this.#blocks.get(cid);
    if (block === undefined) return null;
    if (!block.checked) {
      const { codec, digest } = block.cid;
      if (codec !== CID.CODEC_DCBOR && codec !== CID.CODEC_RAW) {
        throw new Unproven("bad_block", `block ${cid} has codec ${codec}`);
      }
      if (!sameBytes(sha256(block.bytes), digest.contents)) {
        throw new Unproven("bad_block", `block ${cid} does not hash to its CID`);
      }
      block.checked = true;
    }
    return block.bytes;
  }

  /** As `read`; the empty node, which a commit that empties the repo need not carry, is known. */
  get(cid: string): Promise<Uint8Array<ArrayBuffer> | null> {
    const bytes = this.read(cid);
    return Promise.resolve(bytes ?? (cid === EMPTY_NODE_CID ? EMPTY_NODE_BYTES : null));
  }

  getMany(cids: string[]): Promise<{ found: BlockMap; missing: string[] }> {
    const found: BlockMap = new Map();
    const missing: string[] = [];
    for (const cid of cids) {
      const bytes = this.read(cid) ?? (cid === EMPTY_NODE_CID ? EMPTY_NODE_BYTES : null);
      if (bytes === null) missing.push(cid);
      else found.set(cid, bytes);
    }
    return Promise.resolve({ found, missing });
  }

  has(cid: string): Promise<boolean> {
    return Promise.resolve(this.#blocks.has(cid));
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

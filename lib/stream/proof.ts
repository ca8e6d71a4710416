/**
 * What a sync v1.1 `#commit` proves by itself about the repo's collections: after inverting its ops
 * on the blocks it carries and checking the result against `prevData`, whether a delete left the
 * repo with no record in the collection, and whether a create was the repo's first record there.
 *
 * Pure: no I/O, nothing kept between calls. Signatures are not checked here: the consumer trusts its
 * relay for them (and for account status). The proof rests on the commit CID the relay vouched for:
 * every block read is hashed against its CID, so the trees walked are the commit's own.
 */
import { hash } from "node:crypto";
import { fromUint8Array } from "@atcute/car";
import { type Bytes, decode, fromBytes } from "@atcute/cbor";
import * as CID from "@atcute/cid";
import { getKeyHeight, isMstKey, isNodeData, MSTNode } from "@atcute/mst";

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
    if (err instanceof Unproven) return { proven: false, reason: err.reason, detail: err.message };
    throw err;
  }
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

async function prove(input: ProofInput): Promise<CommitProof> {
  const prevData = linkOf(input.prevData);
  if (prevData === null) throw new Unproven("no_prev_data", "commit has no prevData (pre-v1.1)");
  if (input.tooBig) throw new Unproven("too_big", "commit is marked tooBig");
  const ops = parseOps(input);
  const commitCid = linkOf(input.commit);
  if (commitCid === null) throw new Unproven("malformed", "commit has no commit CID");

  const tree = new Tree(
    input.blocks instanceof Uint8Array ? input.blocks : fromBytes(input.blocks),
  );
  const data = commitData(tree, commitCid, input);

  // Forward check: the new tree holds what the ops say it holds.
  for (const op of ops) {
    const found = tree.lookup(data, op.path);
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
  let root = data;
  for (const op of ops) {
    root = op.action === "create"
      ? await tree.remove(root, op.path)
      : await tree.insert(root, op.path, { $link: op.prev! });
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
      lastInCollection = !tree.neighbourIn(data, op.path, op.collection);
      if (lastInCollection) emptied.add(op.collection);
    } else if (op.action === "create") {
      firstInCollection = !tree.neighbourIn(prevData, op.path, op.collection);
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
function commitData(tree: Tree, commitCid: string, input: ProofInput): string {
  const bytes = tree.block(commitCid);
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

/** An MST node as the proof uses it. */
interface Node {
  readonly keys: readonly string[];
  readonly values: readonly CID.CidLink[];
  readonly subtrees: readonly (CID.CidLink | null)[];
}

const link = (cid: string): CID.CidLink => CID.toCidLink(CID.fromString(cid));

/**
 * Encodes nodes with the library's serializer, skipping `MSTNode.create`'s hashing of every key to
 * check its height (the proof computes heights from the root and hashes only the ops' keys).
 */
class BuiltNode extends MSTNode {
  static of(node: Node): BuiltNode {
    return new BuiltNode(node.keys, node.values, node.subtrees);
  }
}

const sha256 = (bytes: Uint8Array): Uint8Array => hash("sha256", bytes, "buffer");

/**
 * The commit's blocks and the nodes built while inverting it. Blocks are hashed against their CIDs
 * when first read, so every node walked belongs to the tree the commit CID names. Insertion and
 * removal follow the MST spec (and `@atcute/mst`'s NodeWrangler, which the tests compare against):
 * a key lives at the level given by its hash; inserting splits the subtree it falls in, removing
 * merges the subtrees on either side of it.
 */
class Tree {
  readonly #blocks = new Map<string, { cid: CID.Cid; bytes: Uint8Array; checked: boolean }>();
  readonly #nodes = new Map<string, Node>();

  constructor(car: Uint8Array) {
    try {
      for (const entry of fromUint8Array(car)) {
        this.#blocks.set(CID.toString(entry.cid), {
          cid: entry.cid,
          bytes: entry.bytes,
          checked: false,
        });
      }
    } catch (err) {
      throw new Unproven("bad_block", `blocks are not a readable CAR: ${err}`);
    }
  }

  /** A carried block's bytes, hashed against its CID on first read; null when not carried. */
  block(cid: string): Uint8Array | null {
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

  node(cid: string): Node {
    let node = this.#nodes.get(cid);
    if (node !== undefined) return node;
    const bytes = this.block(cid);
    if (bytes === null) {
      if (cid === EMPTY_NODE_CID) node = { keys: [], values: [], subtrees: [null] };
      else throw new Unproven("missing_blocks", `MST node ${cid} is not carried`);
    } else {
      node = decodeNode(cid, bytes);
    }
    this.#nodes.set(cid, node);
    return node;
  }

  /** Stores a built node; returns its CID, or null for a node with nothing in it. */
  async #put(node: Node): Promise<CID.CidLink | null> {
    if (node.keys.length === 0 && node.subtrees[0] === null) return null;
    const bytes = await BuiltNode.of(node).serialize();
    const link = CID.toCidLink(CID.fromDigest(CID.CODEC_DCBOR, sha256(bytes)));
    this.#nodes.set(link.$link, node);
    return link;
  }

  /** The height of the tree at `root` (its top node's level). */
  async #rootHeight(root: string): Promise<number> {
    let depth = 0;
    let node = this.node(root);
    while (node.keys.length === 0 && node.subtrees[0] !== null) {
      node = this.node(node.subtrees[0].$link);
      depth++;
    }
    return node.keys.length === 0 ? 0 : (await this.#keyHeight(node.keys[0])) + depth;
  }

  readonly #keyHeights = new Map<string, number>();
  async #keyHeight(key: string): Promise<number> {
    let h = this.#keyHeights.get(key);
    if (h === undefined) this.#keyHeights.set(key, h = await getKeyHeight(key));
    return h;
  }

  /** The value at `key` in the tree at `root`, or null. */
  lookup(root: string, key: string): string | null {
    let cid: string | null = root;
    while (cid !== null) {
      const node = this.node(cid);
      const i = lowerBound(node.keys, key);
      if (node.keys[i] === key) return node.values[i].$link;
      cid = node.subtrees[i]?.$link ?? null;
    }
    return null;
  }

  /**
   * True when a key next to `key` (absent from the tree at `root`) is in `collection`. The keys next
   * to an absent key all lie on its search path, so only that path is read.
   */
  neighbourIn(root: string, key: string, collection: string): boolean {
    let below: string | undefined;
    let above: string | undefined;
    let cid: string | null = root;
    while (cid !== null) {
      const node = this.node(cid);
      const i = lowerBound(node.keys, key);
      if (node.keys[i] === key) {
        throw new Unproven("not_inverting", `${key} is in the tree it should be absent from`);
      }
      if (i > 0) below = node.keys[i - 1];
      if (i < node.keys.length) above = node.keys[i];
      cid = node.subtrees[i]?.$link ?? null;
    }
    const prefix = collection + "/";
    return (below?.startsWith(prefix) ?? false) || (above?.startsWith(prefix) ?? false);
  }

  /** Inserts (or replaces) `key` in the tree at `root`; returns the new root's CID. */
  async insert(root: string, key: string, value: CID.CidLink): Promise<string> {
    const h = await this.#keyHeight(key);
    const rootNode = this.node(root);
    if (rootNode.keys.length === 0 && rootNode.subtrees[0] === null) {
      return (await this.#put({ keys: [key], values: [value], subtrees: [null, null] }))!.$link;
    }
    let height = await this.#rootHeight(root);
    let top: CID.CidLink | null = link(root);
    while (height < h) {
      // The key sits above the tree: grow it with key-less levels.
      top = await this.#put({ keys: [], values: [], subtrees: [top] });
      height++;
    }
    return (await this.#insertAt(top!.$link, height, key, h, value))!.$link;
  }

  async #insertAt(
    cid: string | null,
    height: number,
    key: string,
    h: number,
    value: CID.CidLink,
  ): Promise<CID.CidLink | null> {
    const node = cid === null ? EMPTY_NODE : this.node(cid);
    const i = lowerBound(node.keys, key);
    if (h < height) {
      const child = await this.#insertAt(
        node.subtrees[i]?.$link ?? null,
        height - 1,
        key,
        h,
        value,
      );
      return await this.#put({ ...node, subtrees: node.subtrees.with(i, child) });
    }
    if (node.keys[i] === key) {
      return await this.#put({ ...node, values: node.values.with(i, value) });
    }
    const [left, right] = await this.#split(node.subtrees[i], key, height - 1);
    return await this.#put({
      keys: node.keys.toSpliced(i, 0, key),
      values: node.values.toSpliced(i, 0, value),
      subtrees: node.subtrees.toSpliced(i, 1, left, right),
    });
  }

  /** The subtree at `link` cut at `key` into the part below it and the part above it. */
  async #split(
    link: CID.CidLink | null,
    key: string,
    height: number,
  ): Promise<[CID.CidLink | null, CID.CidLink | null]> {
    if (link === null) return [null, null];
    const node = this.node(link.$link);
    const i = lowerBound(node.keys, key);
    const [left, right] = await this.#split(node.subtrees[i], key, height - 1);
    return [
      await this.#put({
        keys: node.keys.slice(0, i),
        values: node.values.slice(0, i),
        subtrees: [...node.subtrees.slice(0, i), left],
      }),
      await this.#put({
        keys: node.keys.slice(i),
        values: node.values.slice(i),
        subtrees: [right, ...node.subtrees.slice(i + 1)],
      }),
    ];
  }

  /** Removes `key` from the tree at `root`; returns the new root's CID. */
  async remove(root: string, key: string): Promise<string> {
    const h = await this.#keyHeight(key);
    let top = await this.#removeAt(root, await this.#rootHeight(root), key, h);
    // Key-less levels left at the top are trimmed.
    while (top !== null) {
      const node = this.node(top.$link);
      if (node.keys.length > 0 || node.subtrees[0] === null) break;
      top = node.subtrees[0];
    }
    return top?.$link ?? EMPTY_NODE_CID;
  }

  async #removeAt(
    cid: string,
    height: number,
    key: string,
    h: number,
  ): Promise<CID.CidLink | null> {
    const node = this.node(cid);
    const unchanged = () => node.keys.length === 0 && node.subtrees[0] === null ? null : link(cid);
    if (h > height) return unchanged();
    const i = lowerBound(node.keys, key);
    if (h < height) {
      const sub = node.subtrees[i];
      if (sub === null) return unchanged();
      const child = await this.#removeAt(sub.$link, height - 1, key, h);
      return await this.#put({ ...node, subtrees: node.subtrees.with(i, child) });
    }
    if (node.keys[i] !== key) return unchanged();
    const merged = await this.#merge(node.subtrees[i], node.subtrees[i + 1], height - 1);
    return await this.#put({
      keys: node.keys.toSpliced(i, 1),
      values: node.values.toSpliced(i, 1),
      subtrees: node.subtrees.toSpliced(i, 2, merged),
    });
  }

  /** One subtree holding both `a`'s keys and `b`'s (all of `a`'s sort first). */
  async #merge(
    a: CID.CidLink | null,
    b: CID.CidLink | null,
    height: number,
  ): Promise<CID.CidLink | null> {
    if (a === null) return b;
    if (b === null) return a;
    const left = this.node(a.$link);
    const right = this.node(b.$link);
    const mid = await this.#merge(left.subtrees.at(-1)!, right.subtrees[0], height - 1);
    return await this.#put({
      keys: [...left.keys, ...right.keys],
      values: [...left.values, ...right.values],
      subtrees: [...left.subtrees.slice(0, -1), mid, ...right.subtrees.slice(1)],
    });
  }
}

const EMPTY_NODE: Node = { keys: [], values: [], subtrees: [null] };
const EMPTY_NODE_CID = await EMPTY_TREE_CID;

function lowerBound(keys: readonly string[], key: string): number {
  let i = 0;
  while (i < keys.length && keys[i] < key) i++;
  return i;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Decodes an MST node block (structure, key compression and key order checked). */
function decodeNode(cid: string, bytes: Uint8Array): Node {
  let data: unknown;
  try {
    data = decode(bytes);
  } catch (err) {
    throw new Unproven("bad_block", `MST node ${cid} does not decode: ${err}`);
  }
  if (!isNodeData(data)) throw new Unproven("bad_block", `block ${cid} is not an MST node`);
  const keys: string[] = [];
  const values: CID.CidLink[] = [];
  const subtrees: (CID.CidLink | null)[] = [data.l];
  let prev = "";
  for (const e of data.e) {
    if (!Number.isInteger(e.p) || e.p < 0 || e.p > prev.length) {
      throw new Unproven("bad_block", `MST node ${cid} has a bad key prefix length ${e.p}`);
    }
    const key = prev.slice(0, e.p) + UTF8.decode(fromBytes(e.k));
    if (key <= prev || !isMstKey(key)) {
      throw new Unproven("bad_block", `MST node ${cid} has key ${key} out of order or invalid`);
    }
    keys.push(key);
    values.push(e.v);
    subtrees.push(e.t);
    prev = key;
  }
  return { keys, values, subtrees };
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

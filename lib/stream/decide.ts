/**
 * Issue 13 on the firehose path: what a `#commit`'s own blocks decide for its deletes (remove the
 * pair only when the proof shows the repo's last record in the collection went) and for its creates
 * (whether a new pair is the repo's first record there). Nothing else depends on the proof.
 */
import type { LiveEvent } from "./event.ts";
import { type ProofReason, proveCommit } from "./proof.ts";

/** A decision on one delete op: remove the pair, or keep it (the default without a proof). */
export type DeleteVerdict = "remove" | "keep";

/** What a commit decided. */
export interface CommitDecision {
  /** Per op, in order: a delete's verdict; undefined for creates and updates. */
  readonly deletes: readonly (DeleteVerdict | undefined)[];
  /** Why the commit's deletes are kept for want of proof, when they are. */
  readonly reason?: KeptReason;
  /** Collections whose create the commit proved to be the repo's first record there. */
  readonly entered: ReadonlySet<string>;
}

/** Why a delete is kept without proof: the proof's reasons, or a Jetstream (which has no blocks). */
export type KeptReason = ProofReason | "jetstream";

type Commit = Extract<LiveEvent, { type: "commit" }>;

/**
 * Decides a commit. The proof runs only when it can change something: the commit deletes, or it
 * creates in a collection where the index does not hold the pair yet (`holds`, usually answered
 * from memory). Otherwise the answer is that nothing is removed and no first record is proven.
 */
export async function decideCommit(
  ev: Commit,
  holds: (collection: string, did: string) => Promise<boolean>,
): Promise<CommitDecision> {
  const deletes = ev.ops.some((o) => o.action === "delete");
  if (!ev.firehose) {
    return {
      deletes: ev.ops.map((o) => o.action === "delete" ? "keep" : undefined),
      reason: deletes ? "jetstream" : undefined,
      entered: NONE,
    };
  }
  let needed = deletes;
  for (const op of ev.ops) {
    if (needed) break;
    if (op.action === "create" && !(await holds(op.collection, ev.did))) needed = true;
  }
  if (!needed) return { deletes: ev.ops.map(() => undefined), entered: NONE };
  const proof = await proveCommit(ev.firehose);
  if (!proof.proven) {
    return {
      deletes: ev.ops.map((o) => o.action === "delete" ? "keep" : undefined),
      reason: deletes ? proof.reason : undefined,
      entered: NONE,
    };
  }
  // The decoder's ops and the proof's are the same list, in the same order.
  const emptied = new Set(proof.emptied);
  return {
    deletes: ev.ops.map((o) =>
      o.action !== "delete" ? undefined : emptied.has(o.collection) ? "remove" : "keep"
    ),
    entered: new Set(proof.entered),
  };
}

const NONE: ReadonlySet<string> = new Set();

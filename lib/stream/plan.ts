/** The one code path after decoding: what a stream event changes in the index, as LiveSteps. */
import type { LiveStep } from "../index/mod.ts";
import { isNsid } from "../util/mod.ts";
import type { CommitDecision } from "./decide.ts";
import type { LiveEvent, LiveOp } from "./event.ts";

/** Counts of what planning saw, for status and metrics. */
export interface PlanCounts {
  commits: number;
  ops: number;
  /** Ops whose collection is not a valid NSID: counted, never written. */
  invalidOps: number;
  /** Delete ops that changed nothing (no proof said the collection was left empty). */
  deletesKept: number;
  /** Delete ops that removed the pair. */
  deletesRemoved: number;
  /** Account events by status ("active" when the account is active). */
  accounts: Record<string, number>;
}

/** Fresh zero counts. */
export function newPlanCounts(): PlanCounts {
  return {
    commits: 0,
    ops: 0,
    invalidOps: 0,
    deletesKept: 0,
    deletesRemoved: 0,
    accounts: {},
  };
}

/**
 * Appends what `ev` changes to `steps`:
 * - a create or update adds (collection, repo);
 * - a delete removes the pair only when the commit's proof says the repo's last record in the
 *   collection went (issue 13, `decision`); otherwise it changes nothing, and when the proof was
 *   missing (or the stream is a Jetstream) it is counted by reason;
 * - a create the proof shows to be the repo's first record in the collection is marked so;
 * - an account whose status is `deleted` leaves every collection (and gets a tombstone);
 * - an account that is active again has its tombstone lifted;
 * - takendown, suspended, deactivated and other statuses change nothing: they can be reversed,
 *   and the stream would not resend the records when they are.
 */
export function planEvent(
  ev: LiveEvent,
  steps: LiveStep[],
  counts: PlanCounts,
  decision?: CommitDecision,
): void {
  if (ev.type === "commit") {
    counts.commits++;
    ev.ops.forEach((op: LiveOp, i) => {
      counts.ops++;
      if (!isNsid(op.collection)) {
        counts.invalidOps++;
        return;
      }
      if (op.action !== "delete") {
        const first = op.action === "create" && decision?.entered.has(op.collection);
        steps.push(
          first
            ? { kind: "add", collection: op.collection, did: ev.did, first }
            : { kind: "add", collection: op.collection, did: ev.did },
        );
      } else if (decision?.deletes[i] === "remove") {
        counts.deletesRemoved++;
        steps.push({
          kind: "remove",
          collection: op.collection,
          did: ev.did,
          rev: ev.firehose?.rev ?? "",
          timeMs: ev.timeMs,
        });
      } else {
        counts.deletesKept++;
        if (decision?.reason) {
          steps.push({
            kind: "kept",
            collection: op.collection,
            did: ev.did,
            reason: decision.reason,
          });
        }
      }
    });
  } else if (ev.type === "account") {
    const status = ev.active ? "active" : ev.status ?? "inactive";
    counts.accounts[status] = (counts.accounts[status] ?? 0) + 1;
    if (ev.active) steps.push({ kind: "revive", did: ev.did });
    else if (ev.status === "deleted") {
      steps.push({
        kind: "delete-account",
        did: ev.did,
        tombstone: { status: "deleted", time: ev.timeMs, cursor: ev.cursor },
      });
    }
  }
}

/** The one event shape both live streams decode into; after decoding there is one code path. */

/** One record operation of a commit. */
export interface LiveOp {
  readonly action: "create" | "update" | "delete";
  readonly collection: string;
  readonly rkey: string;
}

/**
 * A firehose `#commit` body as sent (sync v1.1 fields included), kept for the delete proof of
 * issue 13: `blocks` is the CAR, `ops[].cid`/`prev` are CID links.
 */
export interface FirehoseCommit {
  readonly seq: number;
  readonly repo: string;
  readonly rev: string;
  readonly since?: string | null;
  readonly commit: unknown;
  readonly blocks: Uint8Array;
  readonly ops: readonly { action: string; path: string; cid: unknown; prev?: unknown }[];
  readonly prevData?: unknown;
  readonly time: string;
  readonly tooBig?: boolean;
  readonly rebase?: boolean;
}

/** What a stream message decodes to. `cursor` is the firehose seq or Jetstream time_us. */
export type LiveEvent =
  | {
    readonly type: "commit";
    readonly cursor: number;
    /** Event time, ms since the epoch (NaN when the stream sent none we could read). */
    readonly timeMs: number;
    readonly did: string;
    readonly ops: readonly LiveOp[];
    /** The raw firehose body; absent on a Jetstream, which carries no blocks. */
    readonly firehose?: FirehoseCommit;
  }
  | {
    readonly type: "account";
    readonly cursor: number;
    readonly timeMs: number;
    readonly did: string;
    readonly active: boolean;
    readonly status?: string;
  }
  | {
    readonly type: "skip";
    /** Present when the skipped event still moves the cursor on (e.g. `#identity`). */
    readonly cursor?: number;
    readonly timeMs?: number;
    readonly kind: SkipKind;
    readonly detail?: string;
  }
  | { readonly type: "info"; readonly name: string; readonly message?: string }
  | { readonly type: "error"; readonly error: string; readonly message?: string };

/** Why an event was counted and skipped. */
export type SkipKind = "identity" | "sync" | "unknown" | "malformed" | "op";

/** Skip kinds, for counters that list every kind (even at zero). */
export const SKIP_KINDS: readonly SkipKind[] = ["identity", "sync", "unknown", "malformed", "op"];

/** A malformed-message event with what was wrong. */
export function malformed(detail: string, cursor?: number): LiveEvent {
  return cursor === undefined
    ? { type: "skip", kind: "malformed", detail }
    : { type: "skip", kind: "malformed", detail, cursor };
}

/** A safe, non-negative integer cursor (seq or time_us), or undefined. */
export function cursorOf(v: unknown): number | undefined {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

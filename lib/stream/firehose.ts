/** Decodes a relay's `com.atproto.sync.subscribeRepos` frames (two DAG-CBOR objects) into LiveEvents. */
import { decode, decodeFirst, fromBytes, isBytes } from "@atcute/cbor";
import { isDid } from "../util/syntax.ts";
import { cursorOf, type FirehoseCommit, type LiveEvent, type LiveOp, malformed } from "./event.ts";

type Rec = Record<string, unknown>;

function isRec(v: unknown): v is Rec {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Decodes one binary WebSocket message of a firehose. Never throws: bad frames are `malformed`. */
export function decodeFirehoseFrame(frame: Uint8Array): LiveEvent {
  let header: unknown, body: unknown;
  try {
    const [h, rest] = decodeFirst(frame);
    header = h;
    body = decode(rest);
  } catch (err) {
    return malformed(`not two DAG-CBOR objects: ${(err as Error).message}`);
  }
  if (!isRec(header) || !isRec(body)) return malformed("header or body is not a map");
  if (header.op === -1) {
    return {
      type: "error",
      error: typeof body.error === "string" ? body.error : "unknown",
      message: typeof body.message === "string" ? body.message : undefined,
    };
  }
  if (header.op !== 1 || typeof header.t !== "string") {
    return malformed(`bad header ${JSON.stringify(header).slice(0, 80)}`);
  }
  const seq = cursorOf(body.seq);
  switch (header.t) {
    case "#commit":
      return commit(body, seq);
    case "#account":
      return account(body, seq);
    case "#tombstone":
      // Retired from the lexicon; it meant the account was deleted.
      if (seq === undefined || !isDid(body.did)) return malformed("bad #tombstone", seq);
      return {
        type: "account",
        cursor: seq,
        timeMs: timeOf(body.time),
        did: body.did,
        active: false,
        status: "deleted",
      };
    case "#identity":
    case "#handle":
      return { type: "skip", kind: "identity", cursor: seq, timeMs: timeOf(body.time) };
    case "#sync":
      return { type: "skip", kind: "sync", cursor: seq, timeMs: timeOf(body.time) };
    case "#info":
      return {
        type: "info",
        name: typeof body.name === "string" ? body.name : "unknown",
        message: typeof body.message === "string" ? body.message : undefined,
      };
    default:
      return { type: "skip", kind: "unknown", cursor: seq, detail: header.t.slice(0, 64) };
  }
}

function commit(body: Rec, seq: number | undefined): LiveEvent {
  if (seq === undefined) return malformed("#commit without a valid seq");
  if (!isDid(body.repo)) return malformed("#commit with an invalid repo DID", seq);
  if (!Array.isArray(body.ops)) return malformed("#commit without ops", seq);
  const ops: LiveOp[] = [];
  for (const op of body.ops) {
    const parsed = isRec(op) ? parseOp(op.action, op.path) : undefined;
    if (parsed === undefined) return malformed("#commit with a malformed op", seq);
    ops.push(parsed);
  }
  // The body was decoded for this event alone: its blocks become bytes in place, not in a copy.
  body.blocks = isBytes(body.blocks) ? fromBytes(body.blocks) : new Uint8Array();
  return {
    type: "commit",
    cursor: seq,
    timeMs: timeOf(body.time),
    did: body.repo,
    ops,
    firehose: body as unknown as FirehoseCommit,
  };
}

function account(body: Rec, seq: number | undefined): LiveEvent {
  if (seq === undefined) return malformed("#account without a valid seq");
  if (!isDid(body.did) || typeof body.active !== "boolean") {
    return malformed("#account without did or active", seq);
  }
  return {
    type: "account",
    cursor: seq,
    timeMs: timeOf(body.time),
    did: body.did,
    active: body.active,
    status: typeof body.status === "string" ? body.status : undefined,
  };
}

/** Splits an op's `collection/rkey` path; undefined when the op is not one. */
export function parseOp(action: unknown, path: unknown): LiveOp | undefined {
  if (action !== "create" && action !== "update" && action !== "delete") return undefined;
  if (typeof path !== "string") return undefined;
  const slash = path.indexOf("/");
  if (slash <= 0 || slash === path.length - 1) return undefined;
  return { action, collection: path.slice(0, slash), rkey: path.slice(slash + 1) };
}

/** An RFC 3339 time as ms since the epoch; NaN when absent or unreadable. */
export function timeOf(v: unknown): number {
  return typeof v === "string" ? Date.parse(v) : NaN;
}

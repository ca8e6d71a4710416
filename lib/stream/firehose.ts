/** Decodes a relay's `com.atproto.sync.subscribeRepos` frames (two DAG-CBOR objects) into LiveEvents. */
import { decode, decodeFirst, fromBytes, isBytes } from "@atcute/cbor";
import { isDid } from "../util/syntax.ts";
import { cursorOf, type FirehoseCommit, type LiveEvent, type LiveOp, malformed } from "./event.ts";
import { scanCommit, type ScannedCommit } from "./scan.ts";

type Rec = Record<string, unknown>;

function isRec(v: unknown): v is Rec {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Decodes one binary WebSocket message of a firehose. Never throws: bad frames are `malformed`. */
export function decodeFirehoseFrame(frame: Uint8Array): LiveEvent {
  const scanned = scanCommit(frame);
  if (scanned !== undefined) {
    const ev = scannedCommit(frame, scanned);
    if (ev !== undefined) return ev;
  }
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
  const blocks = isBytes(body.blocks) ? fromBytes(body.blocks) : new Uint8Array();
  return {
    type: "commit",
    cursor: seq,
    timeMs: timeOf(body.time),
    did: body.repo,
    ops,
    firehose: { ...body, blocks } as unknown as FirehoseCommit,
  };
}

/**
 * A commit the scanner read, when it is valid as it stands; undefined sends the frame to the full
 * decoder (which then says what is wrong). The body's blocks and CIDs are decoded on first use.
 */
function scannedCommit(frame: Uint8Array, s: ScannedCommit): LiveEvent | undefined {
  const seq = cursorOf(s.seq);
  if (seq === undefined || !isDid(s.repo)) return undefined;
  const ops: LiveOp[] = [];
  for (const op of s.ops) {
    const parsed = parseOp(op.action, op.path);
    if (parsed === undefined) return undefined;
    ops.push(parsed);
  }
  return {
    type: "commit",
    cursor: seq,
    timeMs: timeOf(s.time),
    did: s.repo,
    ops,
    firehose: new LazyCommit(frame.subarray(s.body), s),
  };
}

/** A firehose commit body whose blocks, CIDs and ops are decoded only when read (for a proof). */
class LazyCommit implements FirehoseCommit {
  readonly #body: Uint8Array;
  readonly seq: number;
  readonly repo: string;
  readonly time: string;
  #full?: FirehoseCommit;

  constructor(body: Uint8Array, s: ScannedCommit) {
    this.#body = body;
    this.seq = s.seq;
    this.repo = s.repo;
    this.time = s.time ?? "";
    this.#rev = s.rev;
  }

  readonly #rev: string | undefined;
  get rev(): string {
    return this.#rev ?? this.#decoded().rev;
  }
  get since(): string | null | undefined {
    return this.#decoded().since;
  }
  get commit(): unknown {
    return this.#decoded().commit;
  }
  get blocks(): Uint8Array {
    return this.#decoded().blocks;
  }
  get ops(): FirehoseCommit["ops"] {
    return this.#decoded().ops;
  }
  get prevData(): unknown {
    return this.#decoded().prevData;
  }
  get tooBig(): boolean | undefined {
    return this.#decoded().tooBig;
  }
  get rebase(): boolean | undefined {
    return this.#decoded().rebase;
  }

  #decoded(): FirehoseCommit {
    if (this.#full) return this.#full;
    let body: Rec;
    try {
      const v = decode(this.#body);
      body = isRec(v) ? v : {};
    } catch {
      // The scanner skipped what the decoder rejects (a bad CID): nothing here can prove anything.
      body = {};
    }
    const blocks = isBytes(body.blocks) ? fromBytes(body.blocks) : new Uint8Array();
    this.#full = {
      ...body,
      ops: Array.isArray(body.ops) ? body.ops : [],
      blocks,
    } as unknown as FirehoseCommit;
    return this.#full;
  }
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

/** Table tests for lib/stream/firehose.ts: every frame kind of a subscribeRepos stream. */
import { assert, assertEquals } from "./_assert.ts";
import { encode, toBytes } from "@atcute/cbor";
import { decodeFirehoseFrame } from "../lib/stream/firehose.ts";

const DID = "did:plc:abcdefghijklmnopqrstuvwx";
const TIME = "2026-01-02T03:04:05.678Z";

function frame(header: unknown, body: unknown): Uint8Array {
  const h = encode(header), b = encode(body);
  const out = new Uint8Array(h.length + b.length);
  out.set(h);
  out.set(b, h.length);
  return out;
}
Deno.test("decodeFirehoseFrame: every frame kind, table", () => {
  const commit = {
    seq: 7,
    repo: DID,
    rev: "3k",
    since: null,
    commit: { $link: "bafyreia5xxnki3wd4qqthjqgoje7eas2uafyi77zfqsto3pje4afxkamuy" },
    blocks: toBytes(new Uint8Array([1, 2, 3])),
    ops: [
      { action: "create", path: "app.bsky.feed.like/3k1", cid: null },
      { action: "delete", path: "app.bsky.feed.post/3k2", cid: null },
    ],
    time: TIME,
    tooBig: false,
    rebase: false,
    blobs: [],
  };
  const cases: [string, Uint8Array, Record<string, unknown>][] = [
    ["commit", frame({ op: 1, t: "#commit" }, commit), {
      type: "commit",
      cursor: 7,
      did: DID,
      timeMs: Date.parse(TIME),
    }],
    [
      "account deleted",
      frame({ op: 1, t: "#account" }, {
        seq: 8,
        did: DID,
        time: TIME,
        active: false,
        status: "deleted",
      }),
      { type: "account", cursor: 8, active: false, status: "deleted" },
    ],
    ["legacy tombstone", frame({ op: 1, t: "#tombstone" }, { seq: 9, did: DID, time: TIME }), {
      type: "account",
      status: "deleted",
      cursor: 9,
    }],
    ["identity", frame({ op: 1, t: "#identity" }, { seq: 10, did: DID, time: TIME }), {
      type: "skip",
      kind: "identity",
      cursor: 10,
    }],
    ["sync", frame({ op: 1, t: "#sync" }, { seq: 11, did: DID, time: TIME }), {
      type: "skip",
      kind: "sync",
      cursor: 11,
    }],
    ["unknown type", frame({ op: 1, t: "#later" }, { seq: 12 }), {
      type: "skip",
      kind: "unknown",
      cursor: 12,
    }],
    ["info", frame({ op: 1, t: "#info" }, { name: "OutdatedCursor" }), {
      type: "info",
      name: "OutdatedCursor",
    }],
    ["error", frame({ op: -1 }, { error: "FutureCursor", message: "m" }), {
      type: "error",
      error: "FutureCursor",
    }],
    ["garbage", new TextEncoder().encode("hello"), { type: "skip", kind: "malformed" }],
    ["truncated", frame({ op: 1, t: "#commit" }, commit).subarray(0, 30), {
      type: "skip",
      kind: "malformed",
    }],
    ["empty", new Uint8Array(), { type: "skip", kind: "malformed" }],
    ["bad header", frame([1, 2], {}), { type: "skip", kind: "malformed" }],
    ["commit without seq", frame({ op: 1, t: "#commit" }, { ...commit, seq: -1 }), {
      type: "skip",
      kind: "malformed",
    }],
    ["commit with a bad DID", frame({ op: 1, t: "#commit" }, { ...commit, repo: "nope" }), {
      type: "skip",
      kind: "malformed",
      cursor: 7,
    }],
    [
      "commit with a bad op",
      frame({ op: 1, t: "#commit" }, { ...commit, ops: [{ action: "create", path: "x" }] }),
      { type: "skip", kind: "malformed", cursor: 7 },
    ],
    ["account without active", frame({ op: 1, t: "#account" }, { seq: 8, did: DID }), {
      type: "skip",
      kind: "malformed",
      cursor: 8,
    }],
  ];
  for (const [name, bytes, want] of cases) {
    const got = decodeFirehoseFrame(bytes) as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(want)) assertEquals(got[k], v, `${name}: ${k}`);
  }
  const c = decodeFirehoseFrame(frame({ op: 1, t: "#commit" }, commit));
  assert(c.type === "commit");
  assertEquals(c.ops, [
    { action: "create", collection: "app.bsky.feed.like", rkey: "3k1" },
    { action: "delete", collection: "app.bsky.feed.post", rkey: "3k2" },
  ]);
  assertEquals([...c.firehose!.blocks], [1, 2, 3]);
});

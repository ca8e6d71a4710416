/** Table tests for the live stream's decoders and URL parser. */
import { assert, assertEquals } from "./_assert.ts";
import { encode, toBytes } from "@atcute/cbor";
import { decodeFirehoseFrame } from "../lib/stream/firehose.ts";
import { decodeJetstreamMessage } from "../lib/stream/jetstream.ts";
import { parseStreamUrl } from "../lib/stream/url.ts";
import { InputError } from "../lib/util/mod.ts";

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

Deno.test("decodeJetstreamMessage: every kind, table", () => {
  const us = 1_700_000_000_123_456;
  const cases: [string, string, Record<string, unknown>][] = [
    [
      "create",
      JSON.stringify({
        did: DID,
        time_us: us,
        kind: "commit",
        commit: {
          rev: "r",
          operation: "create",
          collection: "a.b.c",
          rkey: "k",
          record: {},
          cid: "x",
        },
      }),
      { type: "commit", cursor: us, did: DID, timeMs: us / 1000 },
    ],
    [
      "delete",
      JSON.stringify({
        did: DID,
        time_us: us,
        kind: "commit",
        commit: { rev: "r", operation: "delete", collection: "a.b.c", rkey: "k" },
      }),
      { type: "commit" },
    ],
    [
      "account",
      JSON.stringify({
        did: DID,
        time_us: us,
        kind: "account",
        account: { active: false, did: DID, seq: 1, time: TIME, status: "deleted" },
      }),
      { type: "account", active: false, status: "deleted", cursor: us },
    ],
    ["identity", JSON.stringify({ did: DID, time_us: us, kind: "identity", identity: {} }), {
      type: "skip",
      kind: "identity",
      cursor: us,
    }],
    ["unknown", JSON.stringify({ did: DID, time_us: us, kind: "later" }), {
      type: "skip",
      kind: "unknown",
      cursor: us,
    }],
    ["not JSON", "{", { type: "skip", kind: "malformed" }],
    ["array", "[]", { type: "skip", kind: "malformed" }],
    ["no time", JSON.stringify({ did: DID, kind: "commit" }), { type: "skip", kind: "malformed" }],
    ["bad did", JSON.stringify({ did: "x", time_us: us, kind: "commit" }), {
      type: "skip",
      kind: "malformed",
      cursor: us,
    }],
    [
      "bad op",
      JSON.stringify({
        did: DID,
        time_us: us,
        kind: "commit",
        commit: { operation: "move", collection: "a.b.c", rkey: "k" },
      }),
      { type: "skip", kind: "malformed", cursor: us },
    ],
    ["account without active", JSON.stringify({ did: DID, time_us: us, kind: "account" }), {
      type: "skip",
      kind: "malformed",
    }],
  ];
  for (const [name, text, want] of cases) {
    const got = decodeJetstreamMessage(text) as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(want)) assertEquals(got[k], v, `${name}: ${k}`);
  }
});

Deno.test("parseStreamUrl: firehose and Jetstream by path; everything else refused, table", () => {
  const ok: [string, string, string][] = [
    [
      "wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos",
      "firehose",
      "wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos",
    ],
    [
      "ws://127.0.0.1:2750/xrpc/com.atproto.sync.subscribeRepos/",
      "firehose",
      "ws://127.0.0.1:2750/xrpc/com.atproto.sync.subscribeRepos",
    ],
    [
      " wss://jetstream2.us-east.bsky.network/subscribe ",
      "jetstream",
      "wss://jetstream2.us-east.bsky.network/subscribe",
    ],
    ["wss://proxy.example/relay/subscribe", "jetstream", "wss://proxy.example/relay/subscribe"],
  ];
  for (const [input, kind, url] of ok) {
    const e = parseStreamUrl(input);
    assertEquals([e.kind, e.url], [kind, url], input);
  }
  const bad = [
    "",
    "bsky.network",
    "https://bsky.network/xrpc/com.atproto.sync.subscribeRepos",
    "wss://bsky.network/",
    "wss://bsky.network/xrpc/com.atproto.sync.listRepos",
    "wss://u:p@bsky.network/subscribe",
    "wss://bsky.network/subscribe?cursor=5",
    "wss://bsky.network/subscribe#x",
    "wss://" + "a".repeat(600) + "/subscribe",
    "ws://[::1/subscribe",
  ];
  for (const input of bad) {
    let err: unknown;
    try {
      parseStreamUrl(input);
    } catch (e) {
      err = e;
    }
    assert(err instanceof InputError && err.field === "LIVE_STREAM_URL", input);
  }
});

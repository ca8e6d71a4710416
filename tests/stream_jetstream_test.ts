/** Table tests for lib/stream/jetstream.ts: every kind of Jetstream message. */
import { assertEquals } from "./_assert.ts";
import { decodeJetstreamMessage } from "../lib/stream/jetstream.ts";

const DID = "did:plc:abcdefghijklmnopqrstuvwx";
const TIME = "2026-01-02T03:04:05.678Z";

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

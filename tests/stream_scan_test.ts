/** The firehose scanner reads what the full DAG-CBOR decoder reads, and gives up on the rest. */
import { assert, assertEquals } from "./_assert.ts";
import { decode, decodeFirst, encode, toBytes } from "@atcute/cbor";
import { scanCommit } from "../lib/stream/scan.ts";
import { decodeFirehoseFrame } from "../lib/stream/firehose.ts";
import { makeWorld, startSimRelay } from "../lib/sim/mod.ts";

const DID = "did:plc:abcdefghijklmnopqrstuvwx";

function frame(header: unknown, body: unknown, tail: number[] = []): Uint8Array {
  const h = encode(header), b = encode(body);
  const out = new Uint8Array(h.length + b.length + tail.length);
  out.set(h);
  out.set(b, h.length);
  out.set(tail, h.length + b.length);
  return out;
}

Deno.test("scanCommit: agrees with the full decoder on every sim frame", async () => {
  const relay = await startSimRelay({ world: makeWorld({ seed: 3 }), stream: { seed: 3 } });
  try {
    await relay.stream.generate(1500);
    let scanned = 0;
    for (const f of relay.stream.frames()) {
      const s = scanCommit(f);
      let full: [unknown, unknown] | undefined;
      try {
        const [h, rest] = decodeFirst(f);
        full = [h, decode(rest)];
      } catch { /* malformed */ }
      const h = full?.[0] as { op?: number; t?: string } | undefined;
      if (h?.op !== 1 || h.t !== "#commit") {
        assertEquals(s, undefined, "only commits are scanned");
        continue;
      }
      assert(s !== undefined, "a sim commit is scanned");
      scanned++;
      const body = full![1] as Record<string, unknown>;
      assertEquals(
        { seq: s.seq, repo: s.repo, rev: s.rev, time: s.time, ops: s.ops },
        {
          seq: body.seq,
          repo: body.repo,
          rev: body.rev,
          time: body.time,
          ops: (body.ops as { action: string; path: string }[]).map((o) => ({
            action: o.action,
            path: o.path,
          })),
        },
      );
      // The lazily decoded body is the full decoder's.
      const ev = decodeFirehoseFrame(f);
      assert(ev.type === "commit");
      assertEquals(ev.firehose!.ops, body.ops);
      assertEquals(ev.firehose!.commit, body.commit);
      assertEquals(ev.firehose!.prevData, body.prevData);
    }
    assert(scanned > 1000, `${scanned} commits scanned`);
  } finally {
    await relay.close();
  }
});

Deno.test("scanCommit: gives up on what it does not expect, table", () => {
  const body = {
    seq: 5,
    repo: DID,
    rev: "3k",
    time: "2026-01-02T03:04:05.678Z",
    blocks: toBytes(new Uint8Array([1])),
    ops: [{ action: "create", path: "a.b.c/1", cid: null }],
  };
  const cases: [string, Uint8Array, boolean][] = [
    ["a commit", frame({ op: 1, t: "#commit" }, body), true],
    ["header keys in the other order", frame({ t: "#commit", op: 1 }, body), true],
    ["an error frame", frame({ op: -1 }, { error: "FutureCursor" }), false],
    ["another type", frame({ op: 1, t: "#account" }, body), false],
    ["trailing bytes", frame({ op: 1, t: "#commit" }, body, [0]), false],
    ["a float", frame({ op: 1, t: "#commit" }, { ...body, x: 1.5 }), false],
    ["truncated", frame({ op: 1, t: "#commit" }, body).slice(0, 40), false],
    ["no ops", frame({ op: 1, t: "#commit" }, { ...body, ops: undefined }), false],
    [
      "an op without a path",
      frame({ op: 1, t: "#commit" }, { ...body, ops: [{ action: "create" }] }),
      false,
    ],
    ["empty", new Uint8Array(), false],
  ];
  for (const [name, bytes, ok] of cases) {
    const s = scanCommit(bytes);
    assertEquals(s !== undefined, ok, name);
    if (ok) assertEquals(s!.ops, [{ action: "create", path: "a.b.c/1" }], name);
  }
});

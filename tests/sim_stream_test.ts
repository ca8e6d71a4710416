/** The simulated relay's firehose and Jetstream: replay by cursor, growth, faults, real CBOR and CAR. */
import { fromUint8Array } from "@atcute/car";
import { assert, assertEquals } from "./_assert.ts";
import { makeWorld, startSimRelay } from "../lib/sim/mod.ts";
import { decodeFirehoseFrame } from "../lib/stream/firehose.ts";
import { collect, until } from "./_helpers.ts";

Deno.test("sim firehose: replay by cursor, real CAR blocks, account deletions and faults", async () => {
  const relay = await startSimRelay({ world: makeWorld({ seed: 3 }), stream: { seed: 3 } });
  try {
    await relay.stream.generate(3000);
    const ws = relay.url.replace("http", "ws") + "/xrpc/com.atproto.sync.subscribeRepos";
    const all = await collect(`${ws}?cursor=0`, (e) => e.length >= 3000);
    const kinds = new Set<string>(all.events.map((e) => e.type === "skip" ? e.kind : e.type));
    for (const k of ["commit", "account", "identity", "sync", "unknown", "malformed"]) {
      assert(kinds.has(k), `a ${k} event among ${[...kinds]}`);
    }
    let last = 0;
    for (let i = 0; i < all.events.length; i++) {
      const e = all.events[i];
      if (e.type !== "commit") continue;
      assert(e.cursor > last, "seqs increase");
      last = e.cursor;
      // The CAR's root is the commit block, and each create's record block is in it.
      const car = fromUint8Array(e.firehose!.blocks);
      const cids = new Set([...car].map((b) => b.cid.bytes.join(",")));
      assertEquals(car.roots[0].$link, (e.firehose!.commit as { $link: string }).$link);
      for (const op of e.firehose!.ops) {
        if (op.action === "delete") continue;
        const link = op.cid as { bytes: Uint8Array };
        assert(cids.has(link.bytes.join(",")), "record block present");
      }
    }
    const deleted = all.events.filter((e) => e.type === "account" && e.status === "deleted");
    assertEquals(deleted.length, relay.stream.deletedDids().length);
    // A deleted account stays listed by the source but leaves the truth.
    const gone = (deleted[0] as { did: string }).did;
    const col = relay.world.collections().find((c) => relay.world.dids(c).includes(gone));
    if (col) assert(!relay.stream.truth(col).includes(gone), "deleted account left the truth");

    // Resuming from a cursor sends exactly what followed it.
    const commits = all.events.filter((e) => e.type === "commit");
    const mid = commits[Math.floor(commits.length / 2)].cursor;
    const rest = await collect(`${ws}?cursor=${mid}`, (e) => e.some((x) => x.type === "commit"));
    const first = rest.events.find((e) => e.type === "commit")!;
    assert(first.type === "commit" && first.cursor > mid, "resumes after the cursor");
    assertEquals(
      first.cursor,
      commits.find((e) => e.cursor > mid)!.cursor,
    );

    // A cursor from the future is an error frame, then close.
    const future = await collect(`${ws}?cursor=${relay.stream.lastSeq + 100}`, () => false);
    assert(future.events[0].type === "error" && future.events[0].error === "FutureCursor");
  } finally {
    await relay.close();
  }
});

Deno.test("sim firehose: an old cursor gets OutdatedCursor, then the oldest events held", async () => {
  const relay = await startSimRelay({
    world: makeWorld({ seed: 4 }),
    stream: { seed: 4, backlog: 500 },
  });
  try {
    await relay.stream.generate(1200);
    const ws = relay.url.replace("http", "ws") + "/xrpc/com.atproto.sync.subscribeRepos";
    const got = await collect(`${ws}?cursor=1`, (e) => e.length >= 2);
    assert(got.events[0].type === "info" && got.events[0].name === "OutdatedCursor");
    const next = got.events.find((e) => e.type !== "info" && "cursor" in e && e.cursor);
    assert(next !== undefined && "cursor" in next && next.cursor! >= relay.stream.oldestSeq);
  } finally {
    await relay.close();
  }
});

Deno.test("sim streams: live growth reaches connected firehose and Jetstream subscribers", async () => {
  const relay = await startSimRelay({ world: makeWorld({ seed: 5 }), stream: { seed: 5 } });
  try {
    const base = relay.url.replace("http", "ws");
    const before = relay.world.totals().entries;
    const fh = collect(`${base}/xrpc/com.atproto.sync.subscribeRepos`, (e) => e.length >= 200);
    const js = collect(`${base}/subscribe`, (e) => e.length >= 200);
    await until(() => relay.stream.stats.connections >= 2, { what: "both subscribers connected" });
    relay.stream.setRate(2000);
    relay.stream.start();
    const [f, j] = await Promise.all([fh, js]);
    relay.stream.stop();
    assert(f.events.filter((e) => e.type === "commit").length > 100);
    assert(j.events.filter((e) => e.type === "commit").length > 100);
    assert(relay.world.totals().entries > before, "new pairs join the source's listing");
    // Jetstream replays from a time_us cursor, inclusive.
    const firstJ = j.events.find((e) => e.type === "commit")!;
    assert(firstJ.type === "commit");
    const again = await collect(
      `${base}/subscribe?cursor=${firstJ.cursor}`,
      (e) => e.some((x) => x.type === "commit"),
    );
    const replayed = again.events.find((e) => e.type === "commit")!;
    assert(replayed.type === "commit" && replayed.cursor === firstJ.cursor);
  } finally {
    await relay.close();
  }
});

Deno.test("sim streams: hang and drop faults", async () => {
  const relay = await startSimRelay({ world: makeWorld({ seed: 6 }), stream: { seed: 6 } });
  try {
    await relay.stream.generate(300);
    const ws = relay.url.replace("http", "ws") + "/xrpc/com.atproto.sync.subscribeRepos";
    relay.stream.setFaults({ dropAfter: 10 });
    const dropped = await collect(`${ws}?cursor=0`, () => false);
    assert(dropped.events.length <= 10 && dropped.closed !== undefined, "dropped after 10");
    relay.stream.setFaults({ dropAfter: undefined, hang: true });
    let quiet = true;
    const hung = collect(`${ws}?cursor=0`, () => {
      quiet = false;
      return true;
    }, 800).catch((e) => e);
    const r = await hung;
    assert(r instanceof Error && quiet, "a hung stream sends nothing");
  } finally {
    await relay.close();
  }
});

Deno.test("sim stream: held events enter the log at the release rate, stamped when released", async () => {
  const relay = await startSimRelay({ world: makeWorld({ seed: 5 }), stream: { seed: 5 } });
  try {
    await relay.stream.hold(300);
    assertEquals(relay.stream.lastSeq > 0, true);
    assertEquals(relay.stream.frames().length, 0, "nothing in the log before the release");
    assertEquals(relay.stream.held, 300);
    const t0 = Date.now();
    await relay.stream.release(3000);
    const t1 = Date.now();
    assertEquals(relay.stream.held, 0);
    const frames = relay.stream.frames();
    assertEquals(frames.length, 300);
    // 300 events at 3,000/s take about 100 ms: not all at once.
    assert(t1 - t0 >= 90, `released in ${t1 - t0} ms`);
    let timed = 0;
    for (const f of frames) {
      const ev = decodeFirehoseFrame(f);
      if (ev.type !== "commit" && ev.type !== "account") continue;
      assert(ev.timeMs >= t0 - 5 && ev.timeMs <= t1 + 5, `time ${ev.timeMs} in [${t0}, ${t1}]`);
      timed++;
    }
    assert(timed > 250, `${timed} events with a time`);
  } finally {
    await relay.close();
  }
});

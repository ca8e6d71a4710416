/** The live consumer against the simulated firehose and Jetstream, into a real LevelDB index. */
import { assert, assertEquals } from "./_assert.ts";
import { backfillFixture, indexDids, saveLiveCursor, testIndex, until } from "./_helpers.ts";
import { makeWorld, type SimRelay, startSimRelay } from "../lib/sim/mod.ts";
import { LiveConsumer, type LiveConsumerOptions, parseStreamUrl } from "../lib/stream/mod.ts";
import { IndexStore } from "../lib/index/mod.ts";
import { silentLogger } from "../lib/util/mod.ts";

/** Every collection of the world, index vs the stream's truth. */
async function assertIndexIsTruth(index: IndexStore, relay: SimRelay): Promise<void> {
  for (const c of relay.world.collections()) {
    const want = relay.stream.truth(c).sort();
    const got = (await indexDids(index, c)).sort();
    assertEquals(got.length, want.length, `${c}: ${got.length} in the index, ${want.length} true`);
    assertEquals(got, want, c);
  }
}

/** Runs a consumer until its durable cursor reaches the stream's last event. */
async function runToEnd(
  opts: LiveConsumerOptions,
  relay: SimRelay,
  signal: AbortSignal,
): Promise<{ live: LiveConsumer; running: Promise<void> }> {
  const live = await LiveConsumer.open(opts);
  const running = live.run(signal);
  const last = opts.endpoint.kind === "firehose" ? relay.stream.lastSeq : relay.stream.lastTimeUs;
  await until(() => live.checkpoint.cursor >= last, {
    timeoutMs: 60_000,
    what: `the consumer to reach ${last}`,
  });
  return { live, running };
}

for (const kind of ["firehose", "jetstream"] as const) {
  Deno.test(`live consumer (${kind}): after a backfill, the stream makes the index the truth`, async () => {
    await using f = await backfillFixture({
      label: "live_consumer",
      relay: {
        world: makeWorld({ seed: 11, largeSizes: [3000, 2000, 1000], collections: 12 }),
        stream: { seed: 11 },
      },
    });
    const { relay, index, backfiller } = f;
    const ac = new AbortController();
    f.defer(() => ac.abort());
    const run = await backfiller.start({ source: f.source });
    await run.done;
    await relay.stream.generate(4000);
    const path = kind === "firehose" ? "/xrpc/com.atproto.sync.subscribeRepos" : "/subscribe";
    const endpoint = parseStreamUrl(relay.url.replace("http", "ws") + path);
    const consumer = await LiveConsumer.open({ endpoint, index, log: silentLogger });
    assert(consumer.status().catch_up_needed, "a first start needs a backfill");
    // No saved cursor means "from now": replay the backlog as if the cursor were 0.
    await index.applyLive([], {
      stream: endpoint.url,
      value: { ...consumer.checkpoint, cursor: 0 },
    });
    const { live, running } = await runToEnd(
      { endpoint, index, log: silentLogger, flushMs: 20 },
      relay,
      ac.signal,
    );
    await assertIndexIsTruth(index, relay);
    const s = live.status();
    assert(s.connected, "connected");
    assert(s.pairs_added > 0, "pairs added");
    assertEquals(s.accounts_deleted, relay.stream.deletedDids().length);
    assert(s.pairs_removed > 0, "deleted accounts removed pairs");
    assert(s.skipped.malformed > 0, "malformed frames counted");
    assert(s.skipped.identity > 0 && s.skipped.unknown > 0, "identity and unknown counted");
    if (kind === "firehose") assert(s.skipped.sync > 0, "sync counted");
    // Deleted accounts have tombstones; the backfill does not bring them back.
    const before = new Map<string, number>();
    for (const c of relay.world.collections()) {
      const cp = await index.getCheckpoint(c);
      before.set(c, cp?.imported ?? 0);
    }
    const again = await backfiller.start({ source: f.source, catchUp: true });
    await again.done;
    await assertIndexIsTruth(index, relay);
    for (const c of relay.world.collections()) {
      // `imported` still counts every DID the source listed, deleted accounts included.
      assertEquals((await index.getCheckpoint(c))?.imported ?? 0, relay.world.size(c), c);
    }
    ac.abort();
    await running;
  });
}

Deno.test("live consumer: reconnects after drops and a silent socket, resuming from the cursor", async () => {
  const relay = await startSimRelay({ world: makeWorld({ seed: 12 }), stream: { seed: 12 } });
  const { index, cleanup } = await testIndex();
  const ac = new AbortController();
  try {
    const endpoint = parseStreamUrl(
      relay.url.replace("http", "ws") + "/xrpc/com.atproto.sync.subscribeRepos",
    );
    await saveLiveCursor(index, endpoint, 0);
    await relay.stream.generate(1500);
    relay.stream.setFaults({ dropAfter: 400 });
    const live = await LiveConsumer.open({
      endpoint,
      index,
      log: silentLogger,
      flushMs: 10,
      reconnectBaseMs: 10,
      reconnectMaxMs: 50,
      idleTimeoutMs: 1_000,
    });
    const running = live.run(ac.signal);
    await until(() => live.checkpoint.cursor >= relay.stream.lastSeq, {
      timeoutMs: 30_000,
      what: "all events",
    });
    assert(live.status().reconnects >= 3, `reconnects: ${live.status().reconnects}`);
    // A socket that stays open but says nothing is dead after the idle timeout.
    relay.stream.setFaults({ dropAfter: undefined, hang: true });
    const r = live.status().reconnects;
    await until(() => live.status().reconnects > r, {
      timeoutMs: 10_000,
      what: "an idle reconnect",
    });
    assert(/no message/.test(live.status().last_error ?? ""), live.status().last_error ?? "");
    relay.stream.setFaults({ hang: false });
    await relay.stream.generate(200);
    await until(() => live.checkpoint.cursor >= relay.stream.lastSeq, {
      timeoutMs: 30_000,
      what: "the new events",
    });
    ac.abort();
    await running;
  } finally {
    ac.abort();
    await relay.close();
    await cleanup();
  }
});

Deno.test("live consumer: OutdatedCursor is counted and marks a catch-up as needed", async () => {
  const relay = await startSimRelay({
    world: makeWorld({ seed: 13 }),
    stream: { seed: 13, backlog: 300 },
  });
  const { index, cleanup } = await testIndex();
  const ac = new AbortController();
  try {
    const endpoint = parseStreamUrl(
      relay.url.replace("http", "ws") + "/xrpc/com.atproto.sync.subscribeRepos",
    );
    await saveLiveCursor(index, endpoint, 1);
    await relay.stream.generate(1000);
    const live = await LiveConsumer.open({ endpoint, index, log: silentLogger, flushMs: 10 });
    assert(!live.status().catch_up_needed);
    const running = live.run(ac.signal);
    await until(() => live.checkpoint.cursor >= relay.stream.lastSeq, {
      timeoutMs: 30_000,
      what: "all events",
    });
    const s = live.status();
    assertEquals(s.outdated_cursor, 1);
    assert(s.catch_up_needed && /OutdatedCursor/.test(s.catch_up_reason ?? ""));
    // Durable: a restart still knows.
    ac.abort();
    await running;
    const again = await LiveConsumer.open({ endpoint, index, log: silentLogger });
    assert(again.status().catch_up_needed, "still needed after a restart");
    await again.catchUpDone(Date.now());
    assert(!again.status().catch_up_needed, "cleared by a catch-up");
  } finally {
    ac.abort();
    await relay.close();
    await cleanup();
  }
});

for (const kind of ["firehose", "jetstream"] as const) {
  Deno.test(`live consumer (${kind}): killed before its first batch, a restart loses nothing`, async () => {
    await using f = await backfillFixture({
      label: "live_crash",
      relay: {
        world: makeWorld({ seed: 14, largeSizes: [2000, 1000], collections: 8 }),
        stream: { seed: 14 },
      },
    });
    const { relay, index } = f;
    const ac = new AbortController();
    f.defer(() => ac.abort());
    await (await f.backfiller.start({ source: f.source })).done;
    await index.close();
    const path = kind === "firehose" ? "/xrpc/com.atproto.sync.subscribeRepos" : "/subscribe";
    const url = relay.url.replace("http", "ws") + path;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./live_crash_child.ts", import.meta.url).pathname,
        url,
        index.path,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    f.defer(async () => {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
    });
    // The child's last status line.
    let last = { connected: false, events: 0 };
    const reading = (async () => {
      let buf = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        const lines = buf.split("\n");
        buf = lines.pop()!;
        if (lines.length > 0) last = JSON.parse(lines[lines.length - 1]);
      }
    })();
    await until(() => last.connected, { timeoutMs: 30_000, what: "the child to connect" });
    await relay.stream.generate(1500);
    await until(() => last.events >= 1000, {
      timeoutMs: 30_000,
      what: "the child to take 1,000 events",
    });
    child.kill("SIGKILL");
    await child.status;
    await reading;
    // The events it had taken are in no batch; the start it made durable replays them.
    const reopened = await IndexStore.open({ path: index.path });
    f.defer(() => reopened.close());
    const endpoint = parseStreamUrl(url);
    const saved = await reopened.liveCheckpoint(endpoint.url) as { cursor: number } | undefined;
    assert(saved !== undefined && saved.cursor >= 0, `a durable start: ${JSON.stringify(saved)}`);
    const { running } = await runToEnd(
      { endpoint, index: reopened, log: silentLogger, flushMs: 20 },
      relay,
      ac.signal,
    );
    await assertIndexIsTruth(reopened, relay);
    ac.abort();
    await running;
  });
}

Deno.test("live consumer: a queue overflow reconnects from the durable cursor, is counted, and loses nothing", async () => {
  await using f = await backfillFixture({
    label: "live_overflow",
    relay: {
      world: makeWorld({ seed: 15, largeSizes: [2000, 1000], collections: 8 }),
      stream: { seed: 15 },
    },
  });
  const { relay, index } = f;
  const ac = new AbortController();
  f.defer(() => ac.abort());
  await (await f.backfiller.start({ source: f.source })).done;
  await relay.stream.generate(3000);
  const endpoint = parseStreamUrl(
    relay.url.replace("http", "ws") + "/xrpc/com.atproto.sync.subscribeRepos",
  );
  await saveLiveCursor(index, endpoint, 0);
  // A queue of 50 messages: the backlog arrives far faster than that.
  const { live, running } = await runToEnd(
    { endpoint, index, log: silentLogger, flushMs: 20, maxQueue: 50 },
    relay,
    ac.signal,
  );
  const s = live.status();
  assert(s.queue_overflows > 0, `overflows: ${s.queue_overflows}`);
  assert(s.reconnects >= s.queue_overflows, "an overflow is a reconnect");
  await assertIndexIsTruth(index, relay);
  ac.abort();
  await running;
});

/** Tests for lib/index/reader.ts and lib/index/listings.ts: listings from a snapshot, on a real LevelDB. */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { COLLECT_AFTER, IndexReader } from "../lib/index/reader.ts";
import { ListingSignal } from "../lib/index/listings.ts";
import { StoreError } from "../lib/util/errors.ts";
import { testIndex, until } from "./_helpers.ts";

const SRC = "bsky.network";
const next = (gen: number, cursor: string) => ({ source: SRC, gen, cursor, done: false });
const did = (i: number) => `did:plc:${String(i).padStart(24, "a")}`;

/** A clock the test moves by hand. */
function fakeClock(): { now: () => number; advance(ms: number): void } {
  let t = 1_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

Deno.test("IndexReader: lists the same pages as IndexStore, cursor by cursor, across collections", async () => {
  await using fx = await testIndex();
  const { index } = fx;
  await index.applyPage(
    "a.b.c",
    Array.from({ length: 25 }, (_, i) => did(i)),
    next(1, "1"),
    undefined,
  );
  await index.applyPage("a.b.d", [did(100), did(3)], next(1, "1"), undefined);
  await index.applyPage("a.b.b", [did(200)], next(1, "1"), undefined);
  // A removal leaves a tombstone among the pairs; neither listing may show it.
  await index.applyLive([{
    kind: "remove",
    collection: "a.b.c",
    did: did(7),
    rev: "3l2",
    timeMs: 1,
  }]);
  const reader = await IndexReader.open({ path: fx.dir });
  try {
    for (
      const [collection, limit] of [["a.b.c", 4], ["a.b.c", 30], ["a.b.d", 1], ["a.b.b", 5], [
        "x.y.z",
        3,
      ]] as const
    ) {
      let after: string | undefined;
      for (let n = 0; n < 20; n++) {
        const want = await index.listDids(collection, limit, after);
        const got = await reader.listDids(collection, limit, after);
        assertEquals(got, want, `${collection} limit ${limit} after ${after}`);
        if (want.last === undefined) break;
        after = want.last;
      }
    }
    assertEquals((await reader.listDids("a.b.c", 100)).dids.includes(did(7)), false);
  } finally {
    await reader.close();
  }
});

Deno.test("IndexReader: a listing reads a snapshot no older than maxAgeMs, renewed after a listing past refreshMs", async () => {
  await using fx = await testIndex();
  const { index } = fx;
  const clock = fakeClock();
  await index.applyPage("a.b.c", [did(1)], next(1, "1"), undefined);
  const reader = await IndexReader.open({
    path: fx.dir,
    refreshMs: 500,
    // Long in real time too: a snapshot no listing uses for maxAgeMs is released (tested below).
    maxAgeMs: 60_000,
    now: clock.now,
  });
  try {
    const list = async () => (await reader.listDids("a.b.c", 100)).dids;
    assertEquals(await list(), [did(1)]);
    await index.applyPage("a.b.c", [did(2)], next(1, "2"), undefined);
    // Same snapshot: the write is not seen yet.
    assertEquals(await list(), [did(1)]);
    clock.advance(400);
    assertEquals(await list(), [did(1)], "within refreshMs the snapshot stays");
    clock.advance(200);
    // Past refreshMs: this listing still reads the old snapshot, and a new one is taken after it.
    assertEquals(await list(), [did(1)]);
    await until(async () => (await list()).length === 2, {
      what: "the snapshot renewed after a listing past refreshMs",
      timeoutMs: 5_000,
    });
    await index.applyPage("a.b.c", [did(3)], next(1, "3"), undefined);
    clock.advance(60_001);
    // Past maxAgeMs: renewed before the listing reads.
    assertEquals(await list(), [did(1), did(2), did(3)]);
  } finally {
    await reader.close();
  }
});

Deno.test("IndexReader: collects garbage after every COLLECT_AFTER snapshots it closes", async () => {
  await using fx = await testIndex();
  const { index } = fx;
  const clock = fakeClock();
  await index.applyPage("a.b.c", [did(1)], next(1, "1"), undefined);
  let collected = 0;
  const reader = await IndexReader.open({
    path: fx.dir,
    maxAgeMs: 60_000,
    now: clock.now,
    collect: () => collected++,
  });
  try {
    // Each listing past maxAgeMs takes a new snapshot and closes the one before: 2×COLLECT_AFTER closes.
    for (let i = 0; i <= 2 * COLLECT_AFTER; i++) {
      assertEquals((await reader.listDids("a.b.c", 10)).dids, [did(1)]);
      clock.advance(60_001);
    }
    await until(() => collected === 2, {
      what: `two collections after ${2 * COLLECT_AFTER} closed snapshots`,
      timeoutMs: 5_000,
    });
    assertEquals((await reader.listDids("a.b.c", 10)).dids, [did(1)]);
    assertEquals(collected, 2, "one more closed snapshot is not another COLLECT_AFTER");
  } finally {
    await reader.close();
  }
});

Deno.test("IndexReader: a snapshot no listing used for maxAgeMs is released", async () => {
  await using fx = await testIndex();
  const { index } = fx;
  const clock = fakeClock();
  await index.applyPage("a.b.c", [did(1)], next(1, "1"), undefined);
  // The fake clock never moves: only the release, on a real timer, lets a listing see the write.
  const reader = await IndexReader.open({ path: fx.dir, maxAgeMs: 50, now: clock.now });
  try {
    assertEquals((await reader.listDids("a.b.c", 10)).dids, [did(1)]);
    await index.applyPage("a.b.c", [did(2)], next(1, "2"), undefined);
    await until(async () => (await reader.listDids("a.b.c", 10)).dids.length === 2, {
      what: "a listing after the idle snapshot was released",
      everyMs: 200,
      timeoutMs: 10_000,
    });
  } finally {
    await reader.close();
  }
});

Deno.test("IndexReader: a collection created after the reader opened is found", async () => {
  await using fx = await testIndex();
  const { index } = fx;
  const clock = fakeClock();
  const reader = await IndexReader.open({ path: fx.dir, now: clock.now });
  try {
    assertEquals(await reader.listDids("a.b.c", 10), { dids: [], last: undefined });
    await index.applyPage("a.b.c", [did(1)], next(1, "1"), undefined);
    clock.advance(2_001);
    assertEquals((await reader.listDids("a.b.c", 10)).dids, [did(1)]);
  } finally {
    await reader.close();
  }
});

Deno.test("IndexReader: the store's backfill pages wait while the reader lists", async () => {
  await using fx = await testIndex();
  const { index } = fx;
  const dids = Array.from({ length: 100_000 }, (_, i) => `did:plc:l${i}`);
  await index.applyPage("a.b.c", dids, next(1, "c1"), undefined);
  const reader = await IndexReader.open({ path: fx.dir, listings: index.listings.buffer });
  try {
    const order: string[] = [];
    const listing = reader.listDids("a.b.c", 100_000).then((p) =>
      order.push(`listing ${p.dids.length}`)
    );
    assertEquals(index.listings.inFlight, 1, "the store sees the reader's listing");
    const page = index.applyPage("a.b.d", ["did:plc:x"], next(1, "d1"), undefined)
      .then((r) => order.push(`page ${r.imported}`));
    await Promise.all([listing, page]);
    assertEquals(order, ["listing 100000", "page 1"]);
    assertEquals(index.listings.inFlight, 0);
  } finally {
    await reader.close();
  }
});

Deno.test("IndexReader: a directory no store holds open is a StoreError naming it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "backfill-reader-" });
  try {
    const err = await assertRejects(() => IndexReader.open({ path: dir }), StoreError);
    assert(err.message.includes(dir), err.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ListingSignal: counts listings across wrappers of one buffer and wakes idle() waiters", async () => {
  let t = 10_000;
  const a = new ListingSignal(undefined, () => t);
  const b = new ListingSignal(a.buffer, () => t);
  assertEquals(a.recent(2_000), false, "no listing yet");
  b.begin();
  assertEquals(a.inFlight, 1);
  assert(a.recent(2_000));
  let woke = false;
  const waiting = a.idle().then(() => void (woke = true));
  await Promise.resolve();
  assertEquals(woke, false, "idle() waits while a listing is in flight");
  b.end();
  await waiting;
  assertEquals(a.inFlight, 0);
  assert(a.recent(2_000), "just ended");
  t += 2_001;
  assertEquals(a.recent(2_000), false, "ended more than the window ago");
});

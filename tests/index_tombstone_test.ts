/** Tombstones in lib/index/store.ts: pairs a commit proved gone, and when a listing may re-add them. */
import { IndexStore } from "../lib/index/store.ts";
import { parseTombstone, tombstoneValue } from "../lib/index/keys.ts";
import { assertEquals } from "./_assert.ts";
import { testIndex } from "./_helpers.ts";

const SRC = "bsky.network";
const C = "app.bsky.feed.like";
const A = "did:plc:aaaa", B = "did:plc:bbbb", D = "did:web:d.example";
const next = (gen: number, cursor: string, done = false) => ({ source: SRC, gen, cursor, done });

Deno.test("tombstone values: table", () => {
  const cases: [string | undefined, ReturnType<typeof parseTombstone>][] = [
    [undefined, undefined],
    ["", undefined],
    ["3", undefined],
    ["~3l2aaaaaaaa22@1700000000000", { rev: "3l2aaaaaaaa22", timeMs: 1700000000000 }],
    ["~3l2aaaaaaaa22@17#4", { rev: "3l2aaaaaaaa22", timeMs: 17, gen: "4" }],
  ];
  for (const [value, want] of cases) {
    assertEquals(parseTombstone(value), want, String(value));
    if (want !== undefined) assertEquals(tombstoneValue(want), value);
  }
});

Deno.test("tombstone: a proven removal leaves both directions and every listing", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    await index.addCollection(A, C);
    await index.addCollection(B, C);
    await index.addCollection(A, "app.bsky.feed.post");
    assertEquals(await index.removeProven(C, A, "3l2aaaaaaaa22", 1000), true);
    assertEquals(await index.has(C, A), false);
    assertEquals(await index.tombstone(C, A), { rev: "3l2aaaaaaaa22", timeMs: 1000 });
    assertEquals(await index.collectionsOf(A), ["app.bsky.feed.post"]);
    assertEquals((await index.listDids(C, 10)).dids, [B]);
    // Removing again (a replay) is harmless and reports that the pair was not held.
    assertEquals(await index.removeProven(C, A, "3l2aaaaaaaa22", 1000), false);
    // A collection whose only pair is gone is no longer listed; one never indexed gets a tombstone.
    assertEquals(await index.removeProven("app.bsky.feed.post", A, "3l2aaaaaaaa23", 1001), true);
    assertEquals(await index.removeProven("app.bsky.graph.block", D, "3l2aaaaaaaa24", 1002), false);
    assertEquals(await index.listCollections(), [C]);
    assertEquals(await index.collectionsOf(A), []);
  }
});

Deno.test("tombstone: listDids pages skip tombstones and still fill pages", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    const dids = Array.from({ length: 9 }, (_, i) => `did:plc:${"abcdefghi"[i]}`);
    for (const did of dids) await index.addCollection(did, C);
    for (const i of [0, 2, 3, 4, 8]) await index.removeProven(C, dids[i], "3l2aaaaaaaa22", 5);
    const p1 = await index.listDids(C, 2);
    assertEquals(p1, { dids: [dids[1], dids[5]], last: dids[5] });
    const p2 = await index.listDids(C, 2, p1.last);
    assertEquals(p2, { dids: [dids[6], dids[7]], last: undefined });
  }
});

Deno.test("tombstone: a listing counts the DID as imported but does not re-add it", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    await index.addCollection(A, C);
    await index.removeProven(C, A, "3l2aaaaaaaa22", 1000);
    const r1 = await index.applyPage(C, [A, B], next(1, "c1"), undefined);
    assertEquals([r1.imported, r1.new], [2, 1]);
    assertEquals(await index.has(C, A), false);
    assertEquals(await index.collectionsOf(A), []);
    // The same DID again in this generation (a replayed or repeated page) counts once.
    const r2 = await index.applyPage(C, [A], next(1, "c2", true), r1.checkpoint);
    assertEquals([r2.imported, r2.new, r2.checkpoint.imported, r2.checkpoint.new], [0, 0, 2, 1]);
    // A new generation counts it as listed again, and still keeps it out.
    const r3 = await index.applyPage(C, [A, B], next(2, "c1"), undefined);
    assertEquals([r3.imported, r3.new], [2, 0]);
    assertEquals(await index.tombstone(C, A), { rev: "3l2aaaaaaaa22", timeMs: 1000, gen: "2" });
  }
});

Deno.test("tombstone: a live create lifts it", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    await index.removeProven(C, A, "3l2aaaaaaaa22", 1000);
    await index.addCollection(A, C);
    assertEquals(await index.has(C, A), true);
    assertEquals(await index.tombstone(C, A), undefined);
    assertEquals(await index.collectionsOf(A), [C]);
  }
});

Deno.test("tombstone: after a gap in live indexing, older tombstones yield to a listing (durably)", async () => {
  const t = await testIndex();
  let index: IndexStore = t.index;
  try {
    await index.removeProven(C, A, "3l2aaaaaaaa22", 1000);
    await index.removeProven(C, B, "3l2aaaaaaaa23", 3000);
    await index.markLiveGap(2000);
    await index.markLiveGap(1500); // an older gap changes nothing
    await index.close();
    index = await IndexStore.open({ path: t.dir });
    const r = await index.applyPage(C, [A, B], next(1, "c1"), undefined);
    // A's removal predates the gap (a create may have been missed): re-added, and new.
    // B's removal came after the gap: still proven, kept out.
    assertEquals([r.imported, r.new], [2, 1]);
    assertEquals([await index.has(C, A), await index.has(C, B)], [true, false]);
    assertEquals(await index.collectionsOf(A), [C]);
  } finally {
    await index.close();
    await Deno.remove(t.dir, { recursive: true });
  }
});

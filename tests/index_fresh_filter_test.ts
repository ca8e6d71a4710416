/** The fresh filter (lib/index/store.ts): pages of a collection this process created skip reads, exactly. */
import { assert, assertEquals } from "./_assert.ts";
import type { Checkpoint } from "../lib/index/page.ts";
import { IndexStore } from "../lib/index/store.ts";
import { formatDid } from "../lib/sim/world.ts";

const SRC = "bsky.network";
const MIB = 1024 * 1024;
const next = (gen: number, cursor: string, done = false) => ({ source: SRC, gen, cursor, done });
const dids = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => formatDid(from + i, 7));

async function withIndex(
  freshFilterBytes: number,
  fn: (index: IndexStore, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "backfill-fresh-" });
  const index = await IndexStore.open({ path: dir, writeBufferSize: 1 << 20, freshFilterBytes });
  try {
    await fn(index, dir);
  } finally {
    await index.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Writes `pages` in order as one generation; returns the last checkpoint. */
async function writePages(
  index: IndexStore,
  collection: string,
  pages: readonly string[][],
  gen = 1,
  prev?: Checkpoint,
): Promise<Checkpoint> {
  for (const [i, page] of pages.entries()) {
    const done = i === pages.length - 1;
    prev = (await index.applyPage(collection, page, next(gen, `c${i}`, done), prev)).checkpoint;
  }
  return prev!;
}

Deno.test("fresh filter: a new collection's pages skip the reads, and DIDs repeated across pages count once", async () => {
  await withIndex(MIB, async (index) => {
    const pages = [dids(0, 1000), dids(1000, 1000), [...dids(500, 10), ...dids(2000, 990)]];
    const done = await writePages(index, "a.b.c", pages);
    assertEquals([done.imported, done.new], [2990, 2990]);
    assertEquals((await index.listDids("a.b.c", 5000)).dids.length, 2990);
    const { read, skipped } = index.pageKeys;
    // The first page has no collection id yet and reads nothing; the others read only filter hits.
    assert(skipped > 1900, `skipped ${skipped}`);
    assert(read >= 10 && read < 100, `read ${read} (the 10 repeats, plus false maybes)`);
  });
});

Deno.test("fresh filter: live adds and proven deletes in a new collection are seen by the pages after them", async () => {
  await withIndex(MIB, async (index) => {
    const first = await writePages(index, "a.b.c", [dids(0, 100)]);
    await index.addCollection(formatDid(100, 7), "a.b.c");
    await index.applyLive([{ kind: "add", collection: "a.b.c", did: formatDid(101, 7) }]);
    await index.removeProven("a.b.c", formatDid(102, 7), "rev1", Date.now());
    const r = await index.applyPage("a.b.c", dids(100, 10), next(1, "c9", true), first);
    // 100 and 101 were live adds (imported, not new); 102 was proven gone (listed, not re-added).
    assertEquals([r.imported, r.new], [10, 7]);
    assertEquals(await index.has("a.b.c", formatDid(102, 7)), false);
    assertEquals((await index.listDids("a.b.c", 500)).dids.length, 109);
  });
});

Deno.test("fresh filter: a filter too small to help gives up, and counts stay exact", async () => {
  await withIndex(64, async (index) => {
    const pages = [dids(0, 1000), [...dids(0, 500), ...dids(1000, 500)], dids(1500, 1000)];
    const done = await writePages(index, "a.b.c", pages);
    assertEquals([done.imported, done.new], [2500, 2500]);
    // 512 bits fill on the first page; the pages after it read every key.
    assertEquals(index.pageKeys.read, 2000);
  });
});

Deno.test("fresh filter: off at 0, and after a reopen (the collection is no longer new), pages read every key", async () => {
  await withIndex(0, async (index) => {
    await writePages(index, "a.b.c", [dids(0, 100), dids(50, 100)]);
    assertEquals(index.pageKeys, { read: 100, skipped: 0 });
  });
  const dir = await Deno.makeTempDir({ prefix: "backfill-fresh-" });
  try {
    let index = await IndexStore.open({ path: dir, freshFilterBytes: MIB });
    const first = await writePages(index, "a.b.c", [dids(0, 100)]);
    await index.close();
    index = await IndexStore.open({ path: dir, freshFilterBytes: MIB });
    try {
      const r = await index.applyPage("a.b.c", dids(50, 100), next(1, "c1", true), first);
      assertEquals([r.imported, r.new], [50, 50]);
      assertEquals(index.pageKeys, { read: 100, skipped: 0 });
    } finally {
      await index.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Tests for lib/index/store.ts on a real LevelDB in a temp directory. */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import type { Checkpoint } from "../lib/index/page.ts";
import { IndexStore } from "../lib/index/store.ts";
import { InputError, StoreError } from "../lib/util/errors.ts";
import { ClassicLevel } from "classic-level";
import { testIndex } from "./_helpers.ts";

const SRC = "bsky.network";

const next = (gen: number, cursor: string, done = false) => ({ source: SRC, gen, cursor, done });

Deno.test("IndexStore: addCollection writes both directions and is idempotent", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    assertEquals(await index.has("app.bsky.feed.post", "did:plc:a"), false);
    await index.addCollection("did:plc:a", "app.bsky.feed.post");
    await index.addCollection("did:plc:a", "app.bsky.feed.like");
    await index.addCollection("did:plc:a", "app.bsky.feed.post");
    await index.addCollection("did:plc:b", "app.bsky.feed.post");
    assertEquals(await index.has("app.bsky.feed.post", "did:plc:a"), true);
    assertEquals(await index.has("app.bsky.feed.like", "did:plc:a"), true);
    assertEquals(await index.has("app.bsky.feed.like", "did:plc:b"), false);
    assertEquals(await index.collectionsOf("did:plc:a"), [
      "app.bsky.feed.like",
      "app.bsky.feed.post",
    ]);
    assertEquals(await index.collectionsOf("did:plc:b"), ["app.bsky.feed.post"]);
    assertEquals(await index.collectionsOf("did:plc:nobody"), []);
    assertEquals((await index.listDids("app.bsky.feed.post", 10)).dids, ["did:plc:a", "did:plc:b"]);
    assertEquals(await index.listCollections(), ["app.bsky.feed.like", "app.bsky.feed.post"]);
  }
});

Deno.test("IndexStore: collectionsOf does not leak into a DID that extends another", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    await index.addCollection("did:plc:a", "a.b.c");
    await index.addCollection("did:plc:ab", "a.b.d");
    await index.addCollection("did:plc:a:x", "a.b.e");
    assertEquals(await index.collectionsOf("did:plc:a"), ["a.b.c"]);
    assertEquals(await index.collectionsOf("did:plc:ab"), ["a.b.d"]);
    assertEquals(await index.collectionsOf("did:plc:a:x"), ["a.b.e"]);
  }
});

Deno.test("IndexStore: applyPage writes both directions and the checkpoint", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    const r = await index.applyPage("a.b.c", ["did:plc:x", "did:plc:y"], next(1, "c1"), undefined);
    assertEquals(r, {
      imported: 2,
      new: 2,
      checkpoint: { source: SRC, gen: 1, cursor: "c1", done: false, imported: 2, new: 2, pages: 1 },
    });
    assertEquals(await index.getCheckpoint("a.b.c"), r.checkpoint);
    assertEquals(await index.has("a.b.c", "did:plc:x"), true);
    assertEquals(await index.collectionsOf("did:plc:y"), ["a.b.c"]);
    assertEquals(await index.getCheckpoint("a.b.other"), undefined);
  }
});

Deno.test("IndexStore: repeated DIDs within a page count once", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    const r = await index.applyPage(
      "a.b.c",
      ["did:plc:x", "did:plc:y", "did:plc:x", "did:plc:x", "did:plc:y"],
      next(1, "c1"),
      undefined,
    );
    assertEquals([r.imported, r.new, r.checkpoint.imported, r.checkpoint.new], [2, 2, 2, 2]);
  }
});

Deno.test("IndexStore: a replayed page and DIDs repeated between pages count once per generation", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    const p1 = await index.applyPage("a.b.c", ["did:plc:1", "did:plc:2"], next(1, "c1"), undefined);
    // The same page again (as after a crash between the index write and the next request).
    const replay = await index.applyPage(
      "a.b.c",
      ["did:plc:1", "did:plc:2"],
      next(1, "c1"),
      p1.checkpoint,
    );
    assertEquals([replay.imported, replay.new], [0, 0]);
    assertEquals([replay.checkpoint.imported, replay.checkpoint.new], [2, 2]);
    // A page that overlaps the previous one.
    const p2 = await index.applyPage(
      "a.b.c",
      ["did:plc:2", "did:plc:3", "did:plc:1", "did:plc:4"],
      next(1, "c2"),
      replay.checkpoint,
    );
    assertEquals([p2.imported, p2.new], [2, 2]);
    assertEquals([p2.checkpoint.imported, p2.checkpoint.new], [4, 4]);
    // The last page, with no new DIDs at all.
    const p3 = await index.applyPage("a.b.c", ["did:plc:4"], next(1, "c2", true), p2.checkpoint);
    assertEquals(p3.checkpoint, {
      source: SRC,
      gen: 1,
      cursor: "c2",
      done: true,
      imported: 4,
      new: 4,
      pages: 4,
    });
    assertEquals(await index.getCheckpoint("a.b.c"), p3.checkpoint);
    assertEquals((await index.listDids("a.b.c", 100)).dids, [
      "did:plc:1",
      "did:plc:2",
      "did:plc:3",
      "did:plc:4",
    ]);
  }
});

Deno.test("IndexStore: a DID the live indexer already had is imported but not new", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    await index.addCollection("did:plc:live", "a.b.c");
    const r = await index.applyPage(
      "a.b.c",
      ["did:plc:live", "did:plc:hist"],
      next(1, "c1"),
      undefined,
    );
    assertEquals([r.imported, r.new], [2, 1]);
    assertEquals([r.checkpoint.imported, r.checkpoint.new], [2, 1]);
  }
});

Deno.test({
  name:
    "IndexStore: a live addCollection between a page and its replay does not make it count twice",
  async fn() {
    {
      await using fx = await testIndex();
      const { index } = fx;
      const r = await index.applyPage(
        "a.b.c",
        ["did:plc:x", "did:plc:y"],
        next(1, "c1"),
        undefined,
      );
      await index.addCollection("did:plc:x", "a.b.c");
      const replay = await index.applyPage(
        "a.b.c",
        ["did:plc:x", "did:plc:y"],
        next(1, "c1"),
        r.checkpoint,
      );
      assertEquals([replay.imported, replay.new], [0, 0]);
      assertEquals(replay.checkpoint.imported, 2);
    }
  },
});

Deno.test("IndexStore: the same DID in two collections counts in each", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    const a = await index.applyPage("a.b.c", ["did:plc:x"], next(1, ""), undefined);
    const b = await index.applyPage("a.b.cd", ["did:plc:x"], next(1, ""), undefined);
    assertEquals([a.imported, a.new, b.imported, b.new], [1, 1, 1, 1]);
    assertEquals(await index.collectionsOf("did:plc:x"), ["a.b.c", "a.b.cd"]);
  }
});

Deno.test("IndexStore: a new generation recounts from zero without duplicating the index", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    const g1 = await index.applyPage(
      "a.b.c",
      ["did:plc:1", "did:plc:2", "did:plc:3"],
      next(1, "", true),
      undefined,
    );
    assertEquals(g1.checkpoint.imported, 3);
    // Reset: generation 2 re-imports the same DIDs; prev is generation 1.
    const g2a = await index.applyPage(
      "a.b.c",
      ["did:plc:1", "did:plc:2"],
      next(2, "c1"),
      g1.checkpoint,
    );
    assertEquals([g2a.imported, g2a.new], [2, 0]);
    assertEquals(g2a.checkpoint, {
      source: SRC,
      gen: 2,
      cursor: "c1",
      done: false,
      imported: 2,
      new: 0,
      pages: 1,
    });
    const g2b = await index.applyPage(
      "a.b.c",
      ["did:plc:2", "did:plc:3", "did:plc:4"],
      next(2, "", true),
      g2a.checkpoint,
    );
    assertEquals([g2b.imported, g2b.new], [2, 1]);
    assertEquals([g2b.checkpoint.imported, g2b.checkpoint.new, g2b.checkpoint.pages], [4, 1, 2]);
    assertEquals((await index.listDids("a.b.c", 100)).dids.length, 4);
  }
});

Deno.test("IndexStore: an empty page still advances the checkpoint", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    const r = await index.applyPage("a.b.c", [], next(1, "c9"), undefined);
    assertEquals(r, {
      imported: 0,
      new: 0,
      checkpoint: { source: SRC, gen: 1, cursor: "c9", done: false, imported: 0, new: 0, pages: 1 },
    });
    assertEquals(await index.getCheckpoint("a.b.c"), r.checkpoint);
    assertEquals(await index.listCollections(), [], "a checkpoint is not a collection");
  }
});

Deno.test("IndexStore: putCheckpoint replaces a checkpoint", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    await index.applyPage("a.b.c", ["did:plc:1"], next(1, "c1"), undefined);
    const fresh: Checkpoint = {
      source: "other.relay",
      gen: 2,
      cursor: "",
      imported: 0,
      new: 0,
      pages: 0,
      done: false,
    };
    await index.putCheckpoint("a.b.c", fresh);
    assertEquals(await index.getCheckpoint("a.b.c"), fresh);
    // DIDs are untouched.
    assertEquals(await index.has("a.b.c", "did:plc:1"), true);
  }
});

Deno.test("IndexStore: data survives close and reopen", async () => {
  {
    await using fx = await testIndex();
    const { index, dir } = fx;
    const r = await index.applyPage("a.b.c", ["did:plc:1", "did:plc:2"], next(1, "c1"), undefined);
    await index.close();
    assertEquals(index.isOpen, false);
    const again = await IndexStore.open({
      path: dir,
      cacheSize: 1 << 20,
      writeBufferSize: 1 << 20,
    });
    try {
      assertEquals(await again.getCheckpoint("a.b.c"), r.checkpoint);
      assertEquals((await again.listDids("a.b.c", 10)).dids, ["did:plc:1", "did:plc:2"]);
      // Replaying after the restart still counts nothing twice.
      const replay = await again.applyPage(
        "a.b.c",
        ["did:plc:1", "did:plc:2"],
        next(1, "c1"),
        await again.getCheckpoint("a.b.c"),
      );
      assertEquals([replay.imported, replay.checkpoint.imported], [0, 2]);
    } finally {
      await again.close();
    }
  }
});

Deno.test("IndexStore: listDids pages in key order with `after`, `last` only when more remain", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    const dids = Array.from({ length: 25 }, (_, i) => `did:plc:${String(i).padStart(3, "0")}`);
    // Insert in a scrambled order (7 is coprime to 25, so this is a permutation).
    const shuffled = dids.map((_, i) => dids[(i * 7) % 25]);
    for (const d of shuffled) await index.addCollection(d, "a.b.c");
    // Noise in neighbouring collections and the other direction.
    await index.addCollection("did:plc:zzz", "a.b.cd");
    await index.addCollection("did:plc:000", "a.b");
    await index.addCollection("did:plc:aaa", "a.b.c.d");

    const p1 = await index.listDids("a.b.c", 10);
    assertEquals(p1, { dids: dids.slice(0, 10), last: dids[9] });
    const p2 = await index.listDids("a.b.c", 10, p1.last);
    assertEquals(p2, { dids: dids.slice(10, 20), last: dids[19] });
    const p3 = await index.listDids("a.b.c", 10, p2.last);
    assertEquals(p3, { dids: dids.slice(20), last: undefined });

    // Exactly `limit` remaining: no `last`.
    assertEquals(await index.listDids("a.b.c", 5, dids[19]), {
      dids: dids.slice(20),
      last: undefined,
    });
    assertEquals(await index.listDids("a.b.c", 25), { dids, last: undefined });
    assertEquals((await index.listDids("a.b.c", 24)).last, dids[23]);
    // After the last one: empty.
    assertEquals(await index.listDids("a.b.c", 10, dids[24]), { dids: [], last: undefined });
    // `after` need not be present: strictly greater in key order.
    assertEquals((await index.listDids("a.b.c", 3, "did:plc:0105")).dids, dids.slice(11, 14));
    // A collection with nothing.
    assertEquals(await index.listDids("x.y.z", 10), { dids: [], last: undefined });
  }
});

Deno.test("IndexStore: listDids orders by bytes, not by insertion or numerically", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    for (const d of ["did:web:a.example", "did:plc:b", "did:plc:aa", "did:plc:a", "did:plc:B"]) {
      await index.addCollection(d, "a.b.c");
    }
    assertEquals((await index.listDids("a.b.c", 10)).dids, [
      "did:plc:B",
      "did:plc:a",
      "did:plc:aa",
      "did:plc:b",
      "did:web:a.example",
    ]);
  }
});

Deno.test("IndexStore: listDids keeps collections that are prefixes of one another apart", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    await index.addCollection("did:plc:1", "a.b.c");
    await index.addCollection("did:plc:2", "a.b.cd");
    await index.addCollection("did:plc:3", "a.b.c.d");
    assertEquals((await index.listDids("a.b.c", 10)).dids, ["did:plc:1"]);
    assertEquals((await index.listDids("a.b.cd", 10)).dids, ["did:plc:2"]);
    assertEquals((await index.listDids("a.b.c.d", 10)).dids, ["did:plc:3"]);
  }
});

Deno.test("IndexStore: listCollections with many collections, prefixes and other key spaces", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    const names = new Set<string>([
      "a.b.c",
      "a.b.cd",
      "a.b.c.d",
      "a.b.cde",
      "a.bc.d",
      "a.b-c.d",
      "A.b.c",
    ]);
    for (let i = 0; i < 300; i++) names.add(`com.example${i % 37}.r${i}`);
    const all = [...names];
    for (let i = 0; i < all.length; i++) {
      // Several DIDs per collection so the seek has to skip over a range.
      for (let j = 0; j <= i % 4; j++) await index.addCollection(`did:plc:${j}x${i}`, all[i]);
    }
    await index.applyPage("a.b.c", ["did:plc:extra"], next(1, "c"), undefined);
    await index.putCheckpoint("zz.no.dids", {
      source: SRC,
      gen: 1,
      cursor: "",
      imported: 0,
      new: 0,
      pages: 0,
      done: false,
    });
    assertEquals(await index.listCollections(), all.sort());
  }
});

Deno.test("IndexStore: listCollections on an empty index", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    assertEquals(await index.listCollections(), []);
    assert((await index.approximateSize()) >= 0);
  }
});

Deno.test("IndexStore: opening a directory that is already open is a StoreError naming it", async () => {
  {
    await using fx = await testIndex();
    const { index: _index, dir } = fx;
    await assertRejects(
      IndexStore.open({ path: dir, cacheSize: 1 << 20, writeBufferSize: 1 << 20 }),
      (err: unknown) => {
        assert(err instanceof StoreError, `got ${err}`);
        assertEquals(err.store, "index");
        assert(err.message.includes(dir), err.message);
        return true;
      },
    );
  }
});

Deno.test("IndexStore: close is safe twice and reports isOpen", async () => {
  const dir = await Deno.makeTempDir({ prefix: "backfill-index-" });
  try {
    const index = await IndexStore.open({ path: `${dir}/nested/db` });
    assertEquals(index.isOpen, true);
    assertEquals(index.path, `${dir}/nested/db`);
    await index.close();
    await index.close();
    assertEquals(index.isOpen, false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("applyPage with a lookup read ahead of the previous page's write counts each DID once", async () => {
  const { index, cleanup } = await testIndex();
  try {
    const c = "com.example.ahead";
    const [x, y, z] = ["did:plc:x", "did:plc:y", "did:plc:z"];
    const next = { source: "s", gen: 1, cursor: "1", done: false };
    const aheadLookup = await index.lookup(c, [y, z]); // read before page 1 is written
    const first = await index.applyPage(c, [x, y], next, undefined);
    const second = await index.applyPage(c, [y, z], { ...next, cursor: "2" }, first.checkpoint, {
      lookup: aheadLookup,
      carried: new Set([x, y]),
    });
    assertEquals([second.imported, second.new], [1, 1]);
    assertEquals([second.checkpoint.imported, second.checkpoint.new], [3, 3]);
    // Without the carried set the stale lookup would count y twice: the guard is what keeps it exact.
    const stale = await index.lookup(c, ["did:plc:w"]);
    const third = await index.applyPage(
      c,
      ["did:plc:w"],
      { ...next, cursor: "3" },
      second.checkpoint,
      {
        lookup: stale,
        carried: new Set(),
      },
    );
    assertEquals(third.checkpoint.imported, 4);
  } finally {
    await cleanup();
  }
});

Deno.test("IndexStore: an index in the version 1 key layout is migrated on open, nothing lost", async () => {
  const dir = await Deno.makeTempDir({ prefix: "index-v1-" });
  try {
    const raw = new ClassicLevel<string, string>(dir, {
      keyEncoding: "utf8",
      valueEncoding: "utf8",
    });
    const v1: [string, string, string][] = [
      ["app.bsky.feed.like", "did:plc:a", "1"],
      ["app.bsky.feed.like", "did:plc:b", ""],
      ["app.bsky.feed.post", "did:plc:a", "2"],
      ["a.b", "did:web:example.com", "1"],
    ];
    const cp: Checkpoint = {
      source: SRC,
      gen: 1,
      cursor: "c9",
      imported: 1,
      new: 1,
      pages: 1,
      done: false,
    };
    await raw.batch([
      ...v1.flatMap(([c, d, v]) => [
        { type: "put" as const, key: `r\x00${c}\x00${d}`, value: v },
        { type: "put" as const, key: `c\x00${d}\x00${c}`, value: "" },
      ]),
      { type: "put", key: "k\x00app.bsky.feed.like", value: JSON.stringify(cp) },
    ]);
    await raw.close();

    const index = await IndexStore.open({ path: dir });
    try {
      assertEquals(await index.listCollections(), [
        "a.b",
        "app.bsky.feed.like",
        "app.bsky.feed.post",
      ]);
      assertEquals((await index.listDids("app.bsky.feed.like", 10)).dids, [
        "did:plc:a",
        "did:plc:b",
      ]);
      assertEquals(await index.collectionsOf("did:plc:a"), [
        "app.bsky.feed.like",
        "app.bsky.feed.post",
      ]);
      assertEquals(await index.collectionsOf("did:web:example.com"), ["a.b"]);
      assertEquals(await index.getCheckpoint("app.bsky.feed.like"), cp);
      // Generation marks survive: a replay in generation 1 counts nothing, did:plc:b (live) counts.
      const r = await index.applyPage(
        "app.bsky.feed.like",
        ["did:plc:a", "did:plc:b"],
        next(1, "c10"),
        cp,
      );
      assertEquals([r.imported, r.new], [1, 0]);
      // A collection first written after the migration gets a fresh id.
      await index.addCollection("did:plc:c", "z.z.z");
      assertEquals(await index.collectionsOf("did:plc:c"), ["z.z.z"]);
    } finally {
      await index.close();
    }
    const check = new ClassicLevel<string, string>(dir, {
      keyEncoding: "utf8",
      valueEncoding: "utf8",
    });
    try {
      const left = await check.keys({ gte: "c", lt: "d" }).all();
      const leftR = await check.keys({ gte: "r\x00", lt: "r\x01" }).all();
      assertEquals(
        [left, leftR],
        [[], []],
        "no version 1 keys, and no DID→collection keys, remain",
      );
      assertEquals(await check.get("v"), "3");
    } finally {
      await check.close();
    }
    // Reopening does not migrate again or lose anything.
    const again = await IndexStore.open({ path: dir });
    try {
      assertEquals(await again.listCollections(), [
        "a.b",
        "app.bsky.feed.like",
        "app.bsky.feed.post",
        "z.z.z",
      ]);
      assertEquals(await again.has("a.b", "did:web:example.com"), true);
    } finally {
      await again.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("IndexStore: an index with an unknown key layout is refused with a StoreError naming it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "index-v9-" });
  try {
    const raw = new ClassicLevel<string, string>(dir, {
      keyEncoding: "utf8",
      valueEncoding: "utf8",
    });
    await raw.put("v", "9");
    await raw.close();
    await assertRejects(
      () => IndexStore.open({ path: dir }),
      (err: unknown) =>
        err instanceof StoreError && err.message.includes(dir) &&
        /layout version 9; this build reads version 3/.test(err.message),
    );
    // The refused open released the directory.
    const raw2 = new ClassicLevel(dir);
    await raw2.open();
    await raw2.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("IndexStore: addCollection refuses a value that is not a DID", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    await assertRejects(() => index.addCollection("plc:abc", "a.b.c"), InputError);
    assertEquals(await index.has("a.b.c", "plc:abc"), false);
    assertEquals(await index.listCollections(), []);
  }
});

/** Writes raw layout-1 entries ([collection, did, value]) into `dir` (no version key unless given). */
async function writeV1(dir: string, entries: [string, string, string][], version?: string) {
  const raw = new ClassicLevel<string, string>(dir, { keyEncoding: "utf8", valueEncoding: "utf8" });
  await raw.open();
  const batch = raw.batch();
  for (const [c, d, v] of entries) {
    batch.put(`r\x00${c}\x00${d}`, v);
    batch.put(`c\x00${d}\x00${c}`, "");
  }
  if (version !== undefined) batch.put("v", version);
  await batch.write();
  await raw.close();
}

async function rawKeys(dir: string): Promise<string[]> {
  const raw = new ClassicLevel<string, string>(dir, { keyEncoding: "utf8", valueEncoding: "utf8" });
  try {
    return await raw.keys().all();
  } finally {
    await raw.close();
  }
}

Deno.test("IndexStore: migration across chunks, and layout-1 keys that appear after it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "index-v1-big-" });
  try {
    // More than one 10,000-entry chunk, with the chunk boundary inside a collection.
    const dids = Array.from({ length: 6_001 }, (_, i) => `did:plc:${String(i).padStart(6, "0")}`);
    await writeV1(dir, [
      ...dids.map((d): [string, string, string] => ["a.a.a", d, "1"]),
      ...dids.map((d): [string, string, string] => ["b.b.b", d, ""]),
    ]);
    let index = await IndexStore.open({ path: dir });
    try {
      assertEquals(await index.listCollections(), ["a.a.a", "b.b.b"]);
      for (const c of ["a.a.a", "b.b.b"]) {
        assertEquals((await index.listDids(c, 10_000)).dids, dids, c);
      }
      assertEquals(await index.collectionsOf(dids[5_000]), ["a.a.a", "b.b.b"]);
    } finally {
      await index.close();
    }
    // An older build wrote layout-1 keys into the migrated index (a downgrade and back).
    await writeV1(dir, [["a.a.a", "did:plc:late", ""], ["c.c.c", "did:plc:late", ""]]);
    index = await IndexStore.open({ path: dir });
    try {
      assertEquals(await index.listCollections(), ["a.a.a", "b.b.b", "c.c.c"]);
      assertEquals(await index.collectionsOf("did:plc:late"), ["a.a.a", "c.c.c"]);
      assertEquals((await index.listDids("a.a.a", 10_000)).dids.length, 6_002);
    } finally {
      await index.close();
    }
    const left = (await rawKeys(dir)).filter((k) => k.startsWith("r\x00") || k.startsWith("c\x00"));
    assertEquals(left, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("IndexStore: an interrupted migration (some keys moved, ids written) resumes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "index-v1-half-" });
  try {
    await writeV1(dir, [["a.a.a", "did:plc:1", "1"], ["a.a.a", "did:plc:2", "1"]]);
    let index = await IndexStore.open({ path: dir });
    await index.close();
    // As if the process died mid-way: two more layout-1 entries, one already-known collection,
    // a stray DID→collection key without its pair, and no version key.
    await writeV1(dir, [["a.a.a", "did:plc:3", "1"], ["d.d.d", "did:plc:1", ""]]);
    const raw = new ClassicLevel<string, string>(dir, {
      keyEncoding: "utf8",
      valueEncoding: "utf8",
    });
    await raw.batch([{ type: "del", key: "v" }, {
      type: "put",
      key: "c\x00did:plc:9\x00a.a.a",
      value: "",
    }]);
    await raw.close();
    index = await IndexStore.open({ path: dir });
    try {
      assertEquals((await index.listDids("a.a.a", 10)).dids, [
        "did:plc:1",
        "did:plc:2",
        "did:plc:3",
      ]);
      assertEquals(await index.collectionsOf("did:plc:1"), ["a.a.a", "d.d.d"]);
      assertEquals(await index.collectionsOf("did:plc:9"), []);
    } finally {
      await index.close();
    }
    const keys = await rawKeys(dir);
    assertEquals(keys.filter((k) => k.startsWith("r\x00") || k.startsWith("c\x00")), []);
    assertEquals(keys.filter((k) => k.startsWith("n\x00")).length, 2, "one id per collection");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("IndexStore: a layout 2 index loses its DID→collection keys on open, and nothing else", async () => {
  const dir = await Deno.makeTempDir({ prefix: "index-v2-" });
  try {
    const raw = new ClassicLevel<string, string>(dir, {
      keyEncoding: "utf8",
      valueEncoding: "utf8",
    });
    await raw.open();
    const batch = raw.batch().put("v", "2").put("i", "id-1").put("n\x00a.a.a", "\x01\x01\x01")
      .put("n\x00b.b.b", "\x01\x01\x02");
    // 25,000 pairs in two collections, as layout 2 wrote them: both directions.
    for (let i = 0; i < 12_500; i++) {
      const did = "\x01" + String(i).padStart(24, "a");
      for (const id of ["\x01\x01\x01", "\x01\x01\x02"]) {
        batch.put("r" + id + did, "1").put("c" + did + "\x00" + id, "");
      }
    }
    await batch.write();
    await raw.close();
    const index = await IndexStore.open({ path: dir });
    try {
      const did = "did:plc:" + "7".padStart(24, "a");
      assertEquals(await index.collectionsOf(did), ["a.a.a", "b.b.b"]);
      assertEquals((await index.listDids("a.a.a", 20_000)).dids.length, 12_500);
      assertEquals(index.identity, "id-1");
    } finally {
      await index.close();
    }
    const keys = await rawKeys(dir);
    assertEquals(keys.filter((k) => k.startsWith("c")).length, 0);
    assertEquals(keys.filter((k) => k.startsWith("r")).length, 25_000);
    const check = new ClassicLevel<string, string>(dir, {
      keyEncoding: "utf8",
      valueEncoding: "utf8",
    });
    try {
      assertEquals(await check.get("v"), "3");
    } finally {
      await check.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("IndexStore: a new directory holds only the layout version and the identity, which stays", async () => {
  const t = await testIndex();
  try {
    assertEquals(t.index.created, true);
    const identity = t.index.identity;
    assert(/^[0-9a-f-]{36}$/.test(identity), identity);
    await t.index.close();
    assertEquals(await rawKeys(t.dir), ["i", "v"]);
    const again = await IndexStore.open({ path: t.dir });
    try {
      assertEquals([again.identity, again.created], [identity, false]);
    } finally {
      await again.close();
    }
  } finally {
    await t.cleanup();
  }
});

Deno.test("IndexStore: ids of collections first written at once are distinct and survive reopen", async () => {
  const t = await testIndex();
  try {
    const names = ["a.a.a", "b.b.b", "c.c.c", "d.d.d"];
    await Promise.all(names.map((c) => t.index.addCollection(`did:plc:${c[0]}`, c)));
    await t.index.close();
    const again = await IndexStore.open({ path: t.dir });
    try {
      for (const c of names) assertEquals(await again.collectionsOf(`did:plc:${c[0]}`), [c]);
      await again.addCollection("did:plc:e", "e.e.e");
      assertEquals(await again.listCollections(), [...names, "e.e.e"]);
      assertEquals(await again.collectionsOf("did:plc:e"), ["e.e.e"]);
    } finally {
      await again.close();
    }
  } finally {
    await t.cleanup();
  }
});

Deno.test("IndexStore: listDids pages through mixed DID methods once each, plc first", async () => {
  {
    await using fx = await testIndex();
    const { index } = fx;
    const dids = [
      "did:web:b.example",
      "did:key:z6Mk",
      "did:plc:b",
      "did:plc:a",
      "did:web:a.example",
    ];
    for (const d of dids) await index.addCollection(d, "a.b.c");
    const seen: string[] = [];
    let after: string | undefined;
    do {
      const page = await index.listDids("a.b.c", 1, after);
      seen.push(...page.dids);
      after = page.last;
    } while (after !== undefined);
    assertEquals(seen, [
      "did:plc:a",
      "did:plc:b",
      "did:key:z6Mk",
      "did:web:a.example",
      "did:web:b.example",
    ]);
  }
});

Deno.test("IndexStore: a collection id table with a gap or a duplicate is refused", async () => {
  for (const ids of [["\x01\x01\x01", "\x01\x01\x03"], ["\x01\x01\x01", "\x01\x01\x01"]]) {
    const dir = await Deno.makeTempDir({ prefix: "index-ids-" });
    try {
      const raw = new ClassicLevel<string, string>(dir, {
        keyEncoding: "utf8",
        valueEncoding: "utf8",
      });
      await raw.batch([
        { type: "put", key: "v", value: "2" },
        ...ids.map((id, i) => ({ type: "put" as const, key: `n\x00c.c.c${i}`, value: id })),
      ]);
      await raw.close();
      await assertRejects(
        () => IndexStore.open({ path: dir }),
        (err: unknown) =>
          err instanceof StoreError && /damaged collection id table/.test(err.message),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("IndexStore: holdsMany answers per DID, and what it saw present keeps live counts exact", async () => {
  await using fx = await testIndex();
  const { index } = fx;
  const C = "a.b.c";
  const [a, b, c, d] = ["did:plc:a", "did:plc:b", "did:plc:c", "did:plc:d"];
  assertEquals(await index.holdsMany(C, [a, b]), [false, false], "a collection the index lacks");
  // Written by the backfill, so the live writer has not seen them.
  await index.applyPage(C, [a, b, c], next(1, "c1"), undefined);
  await index.removeProven(C, c, "3l2aaaaaaaa22", 1000);
  assertEquals(await index.holdsMany(C, [a, d, c, b, a]), [true, false, false, true, true]);
  // a and b were seen present: adding them again adds nothing; d is new.
  const added = await index.applyLive([
    { kind: "add", collection: C, did: a },
    { kind: "add", collection: C, did: b },
    { kind: "add", collection: C, did: d },
  ]);
  assertEquals(added.added.get(C), 1);
  // A pair removed after it was seen present is not taken as present any more.
  await index.applyLive([{
    kind: "remove",
    collection: C,
    did: a,
    rev: "3l2aaaaaaaa23",
    timeMs: 2000,
  }]);
  assertEquals(await index.holdsMany(C, [a]), [false]);
  const again = await index.applyLive([{ kind: "add", collection: C, did: a }]);
  assertEquals(again.added.get(C), 1);
});

Deno.test("IndexStore: holdsMany does not remember a pair a live write removed while it read", async () => {
  await using fx = await testIndex();
  const { index } = fx;
  const C = "a.b.c", dids = Array.from({ length: 5 }, (_, i) => `did:plc:r${i}`);
  await index.applyPage(C, dids, next(1, "c1"), undefined);
  // A long read that takes the DID first, so a removal lands while the rest is read.
  const absent = Array.from({ length: 100_000 }, (_, i) => `did:plc:absent${i}`);
  for (const did of dids) {
    await Promise.all([
      index.holdsMany(C, [did, ...absent]),
      index.applyLive([{ kind: "remove", collection: C, did, rev: "3l2aaaaaaaa23", timeMs: 2000 }]),
    ]);
    assertEquals(await index.holds(C, did), false, `${did} after the race`);
  }
});

Deno.test("IndexStore: a backfill page waits while a listing is in flight", async () => {
  await using fx = await testIndex();
  const { index } = fx;
  const dids = Array.from({ length: 100_000 }, (_, i) => `did:plc:l${i}`);
  await index.applyPage("a.b.c", dids, next(1, "c1"), undefined);
  const order: string[] = [];
  const listing = index.listDids("a.b.c", 100_000).then((p) =>
    order.push(`listing ${p.dids.length}`)
  );
  const page = index.applyPage("a.b.d", ["did:plc:x"], next(1, "d1"), undefined)
    .then((r) => order.push(`page ${r.imported}`));
  await Promise.all([listing, page]);
  assertEquals(order, ["listing 100000", "page 1"]);
});

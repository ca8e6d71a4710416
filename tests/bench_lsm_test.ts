// The LevelDB write-path bench: its flags, and a small run that writes every pair once.
import { ClassicLevel } from "classic-level";
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { type LsmFlags, parseLsmFlags, runLsm } from "./bench_lsm.ts";

Deno.test("parseLsmFlags", async (t) => {
  const ok: [string[], Partial<LsmFlags> | "help"][] = [
    [[], { pairs: 47_000_000, collections: 7, blind: false, every: 2_000_000 }],
    [["--pairs", "2M", "--collections", "2", "--blind"], {
      pairs: 2_000_000,
      collections: 2,
      blind: true,
    }],
    [["--block-size", "16384", "--write-buffer", "33554432"], {
      blockSize: 16384,
      writeBuffer: 33554432,
    }],
    [["--every", "500k"], { every: 500_000 }],
    [["--filter-mib", "6"], { filterMib: 6 }],
    [["-h"], "help"],
  ];
  for (const [args, want] of ok) {
    await t.step(args.join(" ") || "(none)", () => {
      const got = parseLsmFlags(args);
      if (want === "help") return assertEquals(got, "help");
      assert(got !== "help");
      for (const [k, v] of Object.entries(want)) assertEquals(got[k as keyof LsmFlags], v, k);
    });
  }
  const bad: [string[], RegExp][] = [
    [["--pairs", "0"], /--pairs must be a count/],
    [["--collections", "0"], /--collections must be an integer from 1 to 64, got "0"/],
    [["--block-size", "4k"], /--block-size must be an integer/],
    [["--write-buffer", "100"], /--write-buffer must be an integer from 1048576/],
    [["--every", "x"], /--pairs must be a count/],
    [["--filter-mib", "0"], /--filter-mib must be an integer from 1 to 1024, got "0"/],
  ];
  for (const [args, re] of bad) {
    await t.step(`rejects ${args.join(" ")}`, () => assertThrows(() => parseLsmFlags(args), re));
  }
});

Deno.test("runLsm writes every pair once and reports each stretch", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const flags: LsmFlags = { pairs: 25_000, collections: 3, blind: false, every: 10_000 };
    const rows = await runLsm(dir, flags);
    assertEquals(rows.at(-1)?.pairs, 25_000);
    assert(rows.length >= 2, `rows: ${rows.length}`);
    for (const r of rows) {
      assertEquals(r.levels.length, 5);
      assertEquals(r.readShare, 1);
      assert(r.pairsPerS > 0 && r.cpuUsPerPair >= 0, JSON.stringify(r));
    }
    const db = new ClassicLevel<string, string>(dir);
    try {
      const keys = await db.keys({ gt: "r", lt: "s" }).all();
      assertEquals(keys.length, 25_000);
      assertEquals(new Set(keys).size, 25_000);
    } finally {
      await db.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runLsm with a filter reads only the DIDs it may hold, and writes every pair once", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const flags: LsmFlags = {
      pairs: 30_000,
      collections: 2,
      blind: false,
      every: 10_000,
      filterMib: 1,
    };
    const rows = await runLsm(dir, flags);
    assertEquals(rows.at(-1)?.pairs, 30_000);
    // DIDs never repeat, so every read is a false hit: ~0 in 8M bits holding 15,000 DIDs.
    for (const r of rows) assert(r.readShare < 0.01, JSON.stringify(r));
    const db = new ClassicLevel<string, string>(dir);
    try {
      assertEquals((await db.keys({ gt: "r", lt: "s" }).all()).length, 30_000);
    } finally {
      await db.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// The benchmark's own parsers: flags and the V8 flags it reads from deno.json.
import { assertMatch, assertNotStrictEquals, assertStrictEquals, assertThrows } from "./_assert.ts";
import { parseBenchFlags } from "./bench.ts";
import { shippedV8Flags } from "./_child.ts";

Deno.test("parseBenchFlags", async (t) => {
  const ok: [string[], Partial<Record<string, unknown>>][] = [
    [[], { scale: 1, latency: 50, allocator: "auto", skipSeed: false, rssCheck: true }],
    [["--allocator", "glibc"], { allocator: "glibc" }],
    [["--allocator=jemalloc", "--skip-seed"], { allocator: "jemalloc", skipSeed: true }],
    [["--scale", "0.5", "--latency", "0"], { scale: 0.5, latency: 0 }],
    [["--no-rss-check", "--concurrency", "3"], { rssCheck: false, concurrency: 3 }],
  ];
  for (const [args, want] of ok) {
    await t.step(args.join(" ") || "(none)", () => {
      const got = parseBenchFlags(args);
      assertNotStrictEquals(got, "help");
      for (const [k, v] of Object.entries(want)) {
        assertStrictEquals((got as unknown as Record<string, unknown>)[k], v, k);
      }
    });
  }
  const bad: [string[], RegExp][] = [
    [["--allocator", "tcmalloc"], /--allocator must be auto, glibc or jemalloc, not tcmalloc/],
    [["--scale", "0"], /--scale must be a number >= 0.001/],
    [["--latency", "fast"], /--latency must be a number/],
    [["--bogus"], /bogus/],
  ];
  for (const [args, re] of bad) {
    await t.step(`rejects ${args.join(" ")}`, () => assertThrows(() => parseBenchFlags(args), re));
  }
  assertStrictEquals(parseBenchFlags(["-h"]), "help");
});

Deno.test("shippedV8Flags", async (t) => {
  await t.step("reads the backfill task's --v8-flags", () => {
    const json = JSON.stringify({
      tasks: { backfill: "deno run -A --v8-flags=--a=1,--b main.ts backfill" },
    });
    assertStrictEquals(shippedV8Flags(json), "--a=1,--b");
  });
  await t.step("a task without --v8-flags is an error naming the task", () => {
    const json = JSON.stringify({ tasks: { backfill: "deno run -A main.ts backfill" } });
    assertThrows(() => shippedV8Flags(json), /no --v8-flags \(task: deno run -A main\.ts/);
    assertThrows(() => shippedV8Flags("{}"), /no --v8-flags/);
  });
  await t.step("this repository's deno.json caps both V8 generations", async () => {
    const flags = shippedV8Flags(
      await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
    );
    assertMatch(flags, /--max-semi-space-size=\d+/);
    assertMatch(flags, /--max-old-space-size=\d+/);
  });
});

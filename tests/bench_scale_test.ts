// The scale bench's pure parts: its flags, the decile arithmetic and the target rows; and the world.
import { assert, assertEquals, assertStrictEquals, assertThrows } from "./_assert.ts";
import {
  anonFlatness,
  deciles,
  ingestRatio,
  parsePairs,
  parseScaleFlags,
  type Sample,
  type ScaleFlags,
  targetRows,
} from "./bench_scale.ts";
import { makeNetworkWorld, NETWORK_LARGE, NETWORK_TAIL, zipfSizes } from "../lib/sim/world.ts";

Deno.test("parsePairs", async (t) => {
  const ok: [string, number][] = [
    ["47M", 47_000_000],
    ["150M", 150_000_000],
    ["1.5M", 1_500_000],
    ["2m", 2_000_000],
    ["500k", 500_000],
    ["2000000", 2_000_000],
    ["47_000_000", 47_000_000],
    ["1", 1],
  ];
  for (const [s, want] of ok) {
    await t.step(s, () => assertStrictEquals(parsePairs(s), want));
  }
  for (const s of ["", "M", "0", "-5", "1.5G", "abc", "1e6", "0.0001k", "5000M"]) {
    await t.step(`rejects ${JSON.stringify(s)}`, () => {
      assertThrows(() => parsePairs(s), /--pairs must be a count like 47M/);
    });
  }
});

Deno.test("parseScaleFlags", async (t) => {
  const defaults: ScaleFlags = {
    pairs: 47_000_000,
    mode: "backfill",
    maxRps: 1000,
    sampleMs: 1000,
    seed: 1,
    json: false,
    keep: false,
  };
  const ok: [string[], Partial<ScaleFlags>][] = [
    [[], {}],
    [["--pairs", "150M"], { pairs: 150_000_000 }],
    [["--pairs=1.5M", "--mode", "start"], { pairs: 1_500_000, mode: "start" }],
    [["--max-rps", "25", "--sample-ms", "250"], { maxRps: 25, sampleMs: 250 }],
    [["--max-rps=0.5"], { maxRps: 0.5 }],
    [["--json", "--keep", "--seed", "7"], { json: true, keep: true, seed: 7 }],
  ];
  for (const [args, want] of ok) {
    await t.step(args.join(" ") || "(none)", () => {
      assertEquals(parseScaleFlags(args), { ...defaults, ...want });
    });
  }
  const bad: [string[], RegExp][] = [
    [["--mode", "serve"], /--mode must be backfill or start, got "serve"/],
    [["--pairs", "lots"], /--pairs must be a count like 47M.*"lots"/],
    [["--max-rps", "0"], /--max-rps must be a number from 0.1 to 10000, got "0"/],
    [["--sample-ms", "10"], /--sample-ms must be an integer from 50/],
    [["--sample-ms", "100.5"], /--sample-ms must be an integer/],
    [["--seed", "-1"], /--seed must be an integer from 0/],
    [["--pairs"], /--pairs needs a value/],
    [["--json=yes"], /--json takes no value/],
    [["--bogus"], /unknown argument "--bogus"/],
    [["47M"], /unknown argument "47M"/],
  ];
  for (const [args, re] of bad) {
    await t.step(`rejects ${args.join(" ")}`, () => {
      assertThrows(() => parseScaleFlags(args), re);
    });
  }
  assertStrictEquals(parseScaleFlags(["-h"]), "help");
  assertStrictEquals(parseScaleFlags(["--help"]), "help");
});

/** Samples every second: no pairs for `idle` seconds, then `rate(t)` pairs a second; anon grows by `grow` kB/s. */
function samplesOf(total: number, idle: number, rate: (t: number) => number, grow = 0): Sample[] {
  const out: Sample[] = [];
  let pairs = 0;
  for (let t = 0; pairs < total; t++) {
    if (t > idle) pairs = Math.min(total, pairs + rate(t));
    out.push({ t, pairs, anonKb: 100_000 + grow * t, fileKb: 50_000, shmemKb: 0 });
  }
  return out;
}

Deno.test("deciles: a steady run has ten equal deciles, timed from the last idle sample", () => {
  const ds = deciles(samplesOf(1000, 3, () => 100), 1000);
  assertStrictEquals(ds.length, 10);
  assertEquals(ds.map((d) => d.decile), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assertStrictEquals(ds[0].t0, 3);
  assertStrictEquals(ds[0].pairs0, 0);
  assertEquals(ds.map((d) => d.t1), [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
  assert(ds.every((d) => d.rate === 100), JSON.stringify(ds.map((d) => d.rate)));
  assertStrictEquals(ds[9].pairs1, 1000);
  assertStrictEquals(ingestRatio(ds), 1);
  assertStrictEquals(anonFlatness(ds), 1);
});

Deno.test("deciles: a slowing run and growing memory show in the ratio and the flatness", () => {
  // 200 pairs/s for the first half, then 100/s; anon grows 1 MB (1000 kB) a second.
  const samples = samplesOf(2000, 0, (t) => (t <= 5 ? 200 : 100), 1000);
  const ds = deciles(samples, 2000);
  assertStrictEquals(ds.length, 10);
  assertStrictEquals(ds[0].rate, 200);
  assertStrictEquals(ds[9].rate, 100);
  assertStrictEquals(ingestRatio(ds), 0.5);
  // Decile 2 ends at t = 2 (400 pairs), decile 10 at t = 15 (2000 pairs).
  assertStrictEquals(ds[1].t1, 2);
  assertStrictEquals(ds[9].t1, 15);
  assertStrictEquals(anonFlatness(ds), 115_000 / 102_000);
});

Deno.test("deciles: one sample spanning several deciles gives them no rate; the ratio spans them", () => {
  const samples: Sample[] = [
    { t: 0, pairs: 0, anonKb: 10, fileKb: 1, shmemKb: 0 },
    { t: 1, pairs: 0, anonKb: 10, fileKb: 1, shmemKb: 0 },
    { t: 2, pairs: 300, anonKb: 20, fileKb: 2, shmemKb: 0 },
    { t: 4, pairs: 1000, anonKb: 30, fileKb: 3, shmemKb: 0 },
  ];
  const ds = deciles(samples, 1000);
  assertEquals(ds.map((d) => d.t1), [2, 2, 2, 4, 4, 4, 4, 4, 4, 4]);
  assertEquals(ds.map((d) => d.rate), [
    300,
    undefined,
    undefined,
    350,
    ...Array(6).fill(undefined),
  ]);
  // First two deciles: 300 pairs in 1 s; last two: from decile 9's start (t 2, 300) to 1000 at t 4.
  assertStrictEquals(ingestRatio(ds), 350 / 300);
  assertStrictEquals(anonFlatness(ds), 30 / 20);
});

Deno.test("deciles: an unfinished run stops at the last decile reached; no ratio or flatness", () => {
  const ds = deciles(samplesOf(1000, 0, () => 100).slice(0, 6), 1000);
  assertEquals(ds.map((d) => d.decile), [1, 2, 3, 4, 5]);
  assertStrictEquals(ingestRatio(ds), undefined);
  assertStrictEquals(anonFlatness(ds), undefined);
  assertEquals(deciles([], 1000), []);
  assertEquals(deciles(samplesOf(10, 0, () => 10), 0), []);
});

Deno.test("targetRows: each figure against issue 9's limits; unmeasured figures fail", () => {
  const good = {
    avgPairsPerSec: 130_000,
    ingestRatio: 0.9,
    anonPeakMb: 200,
    anonFlatness: 1.1,
    bytesPerPair: 35,
    xrpcP50Ms: 4,
    xrpcP99Ms: 20,
    xrpcWhen: "while writing",
  };
  const rows = targetRows(good);
  assertStrictEquals(rows.length, 7);
  assert(rows.every((r) => r.ok === true), JSON.stringify(rows));
  assert(rows[5].name.includes("while writing"));
  const edge = targetRows({
    ...good,
    avgPairsPerSec: 120_000,
    ingestRatio: 0.8,
    anonPeakMb: 250,
    anonFlatness: 1.3,
    bytesPerPair: 40,
    xrpcP50Ms: 5,
    xrpcP99Ms: 25,
  });
  assert(edge.every((r) => r.ok === true), "the limits themselves pass");
  const bad = targetRows({
    ...good,
    avgPairsPerSec: 119_999,
    ingestRatio: 0.79,
    anonPeakMb: 251,
    anonFlatness: 1.31,
    bytesPerPair: 40.1,
    xrpcP50Ms: 5.01,
    xrpcP99Ms: 25.1,
  });
  assert(bad.every((r) => r.ok === false), JSON.stringify(bad));
  const missing = targetRows({
    ...good,
    ingestRatio: undefined,
    anonFlatness: undefined,
    xrpcP50Ms: undefined,
    xrpcP99Ms: undefined,
  });
  assertEquals(missing.map((r) => r.ok), [true, false, true, false, true, false, false]);
  assertStrictEquals(missing[1].measured, "not measured");
});

Deno.test("zipfSizes: sums exactly, descends, follows 1/rank", () => {
  for (const [total, n] of [[6_000_000, 1270], [80_000, 1270], [10, 3], [0, 5], [7, 10]]) {
    const sizes = zipfSizes(total, n);
    assertStrictEquals(sizes.length, n);
    assertStrictEquals(sizes.reduce((a, b) => a + b, 0), total);
    for (let i = 1; i < n; i++) assert(sizes[i] <= sizes[i - 1], `${total}/${n}: rank ${i}`);
  }
  const s = zipfSizes(6_000_000, 1270);
  assert(Math.abs(s[0] / s[9] - 10) < 0.01, `${s[0]} / ${s[9]}`);
  assertEquals(zipfSizes(5, 0), []);
});

Deno.test("makeNetworkWorld: the network's shape at the requested size", () => {
  const world = makeNetworkWorld({ pairs: 1_500_000, seed: 3 });
  const t = world.totals();
  assertStrictEquals(t.entries, 1_500_000);
  assertStrictEquals(t.collections, NETWORK_LARGE.length + NETWORK_TAIL);
  const names = world.collections();
  assertEquals(names.slice(0, NETWORK_LARGE.length), NETWORK_LARGE.map(([c]) => c));
  assertStrictEquals(world.size("app.bsky.feed.like"), 300_000);
  assertStrictEquals(world.size("app.bsky.graph.block"), 80_000);
  const tail = names.slice(NETWORK_LARGE.length).map((c) => world.size(c));
  assertStrictEquals(tail.reduce((a, b) => a + b, 0), 1_500_000 - 1_440_000);
  assert(tail[0] < world.size("app.bsky.graph.block"), "the tail stays below the large ones");
  assertStrictEquals(new Set(names).size, names.length);
  // Pool 1.25× the largest: ids below 375,000, and each collection's DIDs distinct.
  const like = world.ids("app.bsky.feed.like");
  assertStrictEquals(new Set(like).size, like.length);
  assert(like.every((id) => id < 375_000));
  // Deterministic by seed; another seed, other DIDs.
  const again = makeNetworkWorld({ pairs: 1_500_000, seed: 3 });
  assertStrictEquals(
    again.didAt("app.bsky.feed.post", 12_345),
    world.didAt("app.bsky.feed.post", 12_345),
  );
  const other = makeNetworkWorld({ pairs: 1_500_000, seed: 4 });
  assert(other.didAt("app.bsky.feed.post", 0) !== world.didAt("app.bsky.feed.post", 0));
});

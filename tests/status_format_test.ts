/** Table tests for lib/status/format.js: the one set of formatting rules (server, /metrics, CLI, page). */
import { assertEquals, assertStrictEquals } from "./_assert.ts";
import {
  formatCount,
  formatDuration,
  formatPercent,
  formatRate,
  formatTable,
  progressBar,
  truncate,
} from "../lib/status/format.js";

Deno.test("formatCount: human-readable counts", () => {
  const cases: [number, string][] = [
    [0, "0"],
    [7, "7"],
    [999, "999"],
    [999.6, "1k"],
    [1000, "1k"],
    [1234, "1.2k"],
    [120000, "120k"],
    [999_960, "1M"],
    [13628818, "13.6M"],
    [28000000, "28M"],
    [1_100_000_000, "1.1B"],
    [2.5e12, "2.5T"],
    [-1234, "-1.2k"],
    [NaN, "?"],
    [Infinity, "?"],
  ];
  for (const [n, want] of cases) assertStrictEquals(formatCount(n), want, `formatCount(${n})`);
});

Deno.test("formatRate: decimals below ten, counts above", () => {
  const cases: [number, string][] = [
    [0, "0"],
    [0.5, "0.5"],
    [9.8, "9.8"],
    [9.96, "10"],
    [21.3, "21"],
    [41234.5, "41.2k"],
    [NaN, "?"],
  ];
  for (const [n, want] of cases) assertStrictEquals(formatRate(n), want, `formatRate(${n})`);
});

Deno.test("formatDuration: two largest units", () => {
  const cases: [number, string][] = [
    [0, "0s"],
    [42.4, "42s"],
    [59.6, "1m 00s"],
    [303, "5m 03s"],
    [3600, "1h 00m"],
    [3720, "1h 02m"],
    [86399, "23h 59m"],
    [90061, "1d 01h"],
    [-1, "?"],
    [NaN, "?"],
    [Infinity, "?"],
  ];
  for (const [s, want] of cases) {
    assertStrictEquals(formatDuration(s), want, `formatDuration(${s})`);
  }
});

Deno.test("formatPercent: one decimal, never 100% early", () => {
  const cases: [number, number | undefined, string][] = [
    [0, undefined, "0.0%"],
    [621 / 1269, undefined, "48.9%"],
    [0.5, 0, "50%"],
    [1268 / 1269, undefined, "99.9%"],
    [0.9999, 0, "99%"],
    [1, undefined, "100.0%"],
    [1.04, 0, "104%"],
    [NaN, undefined, "?%"],
  ];
  for (const [f, digits, want] of cases) {
    assertStrictEquals(formatPercent(f, digits), want, `formatPercent(${f}, ${digits})`);
  }
});

Deno.test("progressBar: exact width, clamped, eighths", () => {
  const cases: [number, number, string][] = [
    [0, 10, "░░░░░░░░░░"],
    [1, 10, "██████████"],
    [0.5, 10, "█████░░░░░"],
    [0.55, 10, "█████▌░░░░"],
    [2, 4, "████"],
    [-1, 4, "░░░░"],
    [NaN, 4, "░░░░"],
    [0.5, 0, ""],
  ];
  for (const [f, w, want] of cases) {
    assertStrictEquals(progressBar(f, w), want, `progressBar(${f}, ${w})`);
    assertStrictEquals(Array.from(progressBar(f, w)).length, w);
  }
  for (let f = 0; f <= 1; f += 0.01) assertStrictEquals(Array.from(progressBar(f, 17)).length, 17);
});

Deno.test("truncate and formatTable", () => {
  assertStrictEquals(truncate("abcdef", 10), "abcdef");
  assertStrictEquals(truncate("abcdef", 4), "abc…");
  assertStrictEquals(truncate("abcdef", 0), "");
  assertEquals(formatTable([["a", "1", "x"], ["bbb", "22", ""]], "  "), [
    "  a    1   x",
    "  bbb  22",
  ]);
  assertEquals(formatTable([]), []);
});

// ---- subcommands ----

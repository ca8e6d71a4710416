/** Table tests for lib/index/page.ts: what a backfill page does with each DID, and its checkpoint. */
import { assertEquals, assertStrictEquals } from "./_assert.ts";
import {
  type DeletedMarks,
  nextCheckpoint,
  type PairAction,
  pairAction,
} from "../lib/index/page.ts";
import { tombstoneValue } from "../lib/index/keys.ts";

const GAP = 1_000;
const tomb = (timeMs: number, gen?: string) => tombstoneValue({ rev: "3abc", timeMs, gen });

Deno.test("pairAction: each stored state, deletion mark and carry, in generation 2", () => {
  const cases: [string, string | undefined, DeletedMarks | undefined, boolean, PairAction][] = [
    // name, stored value, deleted-account marks, carried from the page before, wanted
    ["absent", undefined, undefined, false, "add"],
    ["absent, carried", undefined, undefined, true, "skip"],
    ["this generation's mark", "2", undefined, false, "skip"],
    ["an earlier generation's mark", "1", undefined, false, "mark"],
    ["added by live indexing", "", undefined, false, "mark"],
    ["tombstone after the gap", tomb(GAP), undefined, false, "list-tombstoned"],
    ["tombstone after the gap, counted", tomb(GAP + 5, "2"), undefined, false, "skip"],
    ["tombstone, older count", tomb(GAP + 5, "1"), undefined, false, "list-tombstoned"],
    ["tombstone before the gap: the listing wins", tomb(GAP - 1), undefined, false, "add"],
    ["stale tombstone this generation counted", tomb(GAP - 1, "2"), undefined, false, "add"],
    ["deleted account", undefined, { tomb: true }, false, "count-deleted"],
    ["deleted account, kept mark", undefined, { tomb: true, ghost: "2" }, false, "skip"],
    ["deleted account, older mark", undefined, { tomb: true, ghost: "1" }, false, "count-deleted"],
    ["deleted account, carried", undefined, { tomb: true }, true, "skip"],
    ["deleted account, pair still marked", "2", { tomb: true }, false, "skip"],
    ["deleted account, tombstoned pair counted", tomb(GAP, "2"), { tomb: true }, false, "skip"],
    ["account back, counted before", undefined, { tomb: false, ghost: "2" }, false, "restore"],
    ["account back, older count", undefined, { tomb: false, ghost: "1" }, false, "add"],
    ["account back, pair already restored", "2", { tomb: false, ghost: "2" }, false, "skip"],
  ];
  for (const [name, value, deleted, carried, want] of cases) {
    assertStrictEquals(pairAction(value, deleted, "2", carried, GAP), want, name);
  }
});

Deno.test("nextCheckpoint adds a page to its generation and starts a new one from zero", () => {
  const next = { source: "s", gen: 2, cursor: "c2", done: false };
  const prev = { ...next, cursor: "c1", imported: 10, new: 4, pages: 3 };
  assertEquals(nextCheckpoint(prev, next, 5, 2), { ...next, imported: 15, new: 6, pages: 4 });
  assertEquals(nextCheckpoint({ ...prev, gen: 1 }, next, 5, 2), {
    ...next,
    imported: 5,
    new: 2,
    pages: 1,
  });
  assertEquals(nextCheckpoint(undefined, { ...next, done: true }, 0, 0), {
    ...next,
    done: true,
    imported: 0,
    new: 0,
    pages: 1,
  });
});

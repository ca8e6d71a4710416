/** Tests for the Pager (lib/paging/pager.ts): only a missing cursor ends paging, plus the loop guards. */
import { assert, assertEquals } from "./_assert.ts";
import { DEFAULT_PAGER_LIMITS, Pager, type PageStep } from "../lib/paging/pager.ts";

/** Feeds (count, cursor) pairs and returns every step. */
function run(pager: Pager, pages: [number, string | undefined][]): PageStep[] {
  return pages.map(([n, c]) => pager.advance(n, c));
}

Deno.test("Pager: follows cursors until a response has none", () => {
  const p = new Pager("");
  assertEquals(p.cursor, "");
  assertEquals(run(p, [[1000, "c1"], [1000, "c2"], [17, undefined]]), [
    { kind: "next", cursor: "c1" },
    { kind: "next", cursor: "c2" },
    { kind: "done", finalCursor: "c2" },
  ]);
  // The final cursor is the one that fetched the last page, for a later catch-up.
  assertEquals(p.cursor, "c2");
});

Deno.test("Pager: a single page without a cursor is done with an empty final cursor", () => {
  assertEquals(new Pager("").advance(3, undefined), { kind: "done", finalCursor: "" });
  assertEquals(new Pager("").advance(0, undefined), { kind: "done", finalCursor: "" });
});

Deno.test("Pager: a short page with a cursor goes on; a full page without one ends", () => {
  const p = new Pager("");
  assertEquals(p.advance(3, "c1"), { kind: "next", cursor: "c1" });
  assertEquals(p.advance(1000, undefined), { kind: "done", finalCursor: "c1" });
});

Deno.test("Pager: remainder of exactly one page ends with an empty page and no cursor", () => {
  const p = new Pager("");
  assertEquals(run(p, [[1000, "c1"], [0, undefined]]), [
    { kind: "next", cursor: "c1" },
    { kind: "done", finalCursor: "c1" },
  ]);
});

Deno.test("Pager: resuming from a saved cursor", () => {
  const p = new Pager("saved");
  assertEquals(p.cursor, "saved");
  assertEquals(p.advance(0, undefined), { kind: "done", finalCursor: "saved" });
  const q = new Pager("saved");
  assertEquals(run(q, [[5, "c9"], [0, undefined]]), [
    { kind: "next", cursor: "c9" },
    { kind: "done", finalCursor: "c9" },
  ]);
});

Deno.test("Pager: a repeated cursor is stuck and the cursor does not move", () => {
  const p = new Pager("");
  p.advance(10, "c1");
  p.advance(10, "c2");
  const step = p.advance(10, "c1");
  assertEquals(step.kind, "stuck");
  assert(step.kind === "stuck" && step.reason.includes('"c1"'), JSON.stringify(step));
  assertEquals(p.cursor, "c2");
  // The same cursor twice in a row.
  const q = new Pager("");
  q.advance(10, "x");
  assertEquals(q.advance(10, "x").kind, "stuck");
  assertEquals(q.cursor, "x");
});

Deno.test("Pager: a source that hands back the start cursor is stuck", () => {
  const p = new Pager("start");
  assertEquals(p.advance(10, "start").kind, "stuck");
  assertEquals(p.cursor, "start");
});

Deno.test("Pager: a long cursor is shortened in the stuck reason", () => {
  const long = "x".repeat(500);
  const p = new Pager(long);
  const step = p.advance(1, long);
  assert(step.kind === "stuck");
  assert(step.reason.length < 120, step.reason);
});

Deno.test("Pager: empty pages with a cursor are tolerated up to the limit, then stuck", () => {
  const p = new Pager("", { maxEmptyWithCursor: 2, recentCursors: 64 });
  assertEquals(run(p, [[0, "e1"], [0, "e2"]]).map((s) => s.kind), ["next", "next"]);
  const step = p.advance(0, "e3");
  assertEquals(step.kind, "stuck");
  assert(step.kind === "stuck" && step.reason.includes("3 empty pages"), JSON.stringify(step));
  assertEquals(p.cursor, "e2");
});

Deno.test("Pager: a non-empty page resets the empty-page count", () => {
  const p = new Pager("", { maxEmptyWithCursor: 2, recentCursors: 64 });
  const kinds = run(p, [
    [0, "a"],
    [0, "b"],
    [1, "c"],
    [0, "d"],
    [0, "e"],
    [5, "f"],
    [0, "g"],
    [0, "h"],
  ]).map((s) => s.kind);
  assertEquals(kinds, Array(8).fill("next"));
});

Deno.test("Pager: the default guard allows five empty pages in a row, not six", () => {
  assertEquals(DEFAULT_PAGER_LIMITS.maxEmptyWithCursor, 5);
  const p = new Pager("");
  const kinds = run(p, [1, 2, 3, 4, 5, 6].map((i) => [0, `e${i}`])).map((s) => s.kind);
  assertEquals(kinds, ["next", "next", "next", "next", "next", "stuck"]);
});

Deno.test("Pager: cycle memory is bounded to the most recent cursors", () => {
  const p = new Pager("", { maxEmptyWithCursor: 5, recentCursors: 3 });
  assertEquals(run(p, [[1, "c1"], [1, "c2"], [1, "c3"], [1, "c4"]]).map((s) => s.kind), [
    "next",
    "next",
    "next",
    "next",
  ]);
  // c1 has been forgotten (window is c2, c3, c4), so it is accepted; c3 is still remembered.
  assertEquals(p.advance(1, "c1"), { kind: "next", cursor: "c1" });
  assertEquals(p.advance(1, "c3").kind, "stuck");
});

Deno.test("Pager: a long run of distinct cursors never trips the guard", () => {
  const p = new Pager("");
  for (let i = 0; i < 10_000; i++) {
    const step = p.advance(1000, `cursor-${i}`);
    if (step.kind !== "next") throw new Error(`page ${i}: ${JSON.stringify(step)}`);
  }
  assertEquals(p.advance(1, undefined), { kind: "done", finalCursor: "cursor-9999" });
});

Deno.test("Pager: pages that list only DIDs already seen stop paging after the limit", () => {
  const p = new Pager("", { maxPagesWithoutNewDids: 3 });
  assertEquals(p.noteImported(10, 10), undefined);
  assertEquals(p.noteImported(10, 0), undefined);
  assertEquals(p.noteImported(0, 0), undefined, "an empty page resets it (the other guard's case)");
  assertEquals(p.noteImported(10, 0), undefined);
  assertEquals(p.noteImported(10, 0), undefined);
  assertEquals(p.noteImported(10, 0)?.includes("3 pages in a row"), true);
});

/** Tests for buildStatus (lib/status/document.ts): the document's shape, and that every count is a number. */
import { assert, assertEquals } from "./_assert.ts";
import { buildStatus, type StatusDocument } from "../lib/status/document.ts";
import type { ProgressRow } from "../lib/progress/store.ts";
import { RunState } from "../lib/run/state.ts";
import { testDb } from "./_helpers.ts";

const T = Date.parse("2026-05-01T10:00:00.000Z");

function row(collection: string, over: Partial<ProgressRow> = {}): ProgressRow {
  return {
    collection,
    source: "bsky.network",
    cursor: "",
    imported: 0,
    new: 0,
    completedAt: null,
    createdAt: new Date(T - 3_600_000),
    updatedAt: new Date(T - 60_000),
    lastError: null,
    attempts: 0,
    nextRetryAt: null,
    estimatedTotal: null,
    reimport: false,
    invalid: 0,
    ...over,
  };
}

const TOP_COUNTS = [
  "total",
  "completed",
  "in_progress",
  "failed",
  "total_imported",
  "total_new",
  "total_invalid",
  "flagged",
];
const RUN_COUNTS = [
  "collections",
  "queued",
  "finished",
  "pages",
  "imported",
  "new",
  "invalid_dids",
  "dids_per_sec",
  "pages_per_sec",
  "page_limit",
];
const ROW_COUNTS = ["imported", "new", "attempts", "invalid"];

/** Paths of counts in a status document that are not finite JSON numbers. */
function nonNumericCounts(doc: StatusDocument): string[] {
  const bad: string[] = [];
  const check = (obj: object, key: string, path: string, optional = false) => {
    const v = (obj as Record<string, unknown>)[key];
    if (optional && (v === undefined || v === null)) return;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      bad.push(`${path}.${key} = ${JSON.stringify(v)}`);
    }
  };
  for (const k of TOP_COUNTS) check(doc, k, "$");
  if (doc.run !== null) {
    for (const k of RUN_COUNTS) check(doc.run, k, "$.run");
    check(doc.run, "eta_seconds", "$.run", true);
  }
  doc.collections.forEach((c, i) => {
    for (const k of ROW_COUNTS) check(c, k, `$.collections[${i}]`);
    check(c, "estimated_total", `$.collections[${i}]`, true);
  });
  return bad;
}

Deno.test("buildStatus: not running, no rows", () => {
  assertEquals(buildStatus([], undefined, false, T), {
    running: false,
    run: null,
    total: 0,
    completed: 0,
    in_progress: 0,
    failed: 0,
    total_imported: 0,
    total_new: 0,
    total_invalid: 0,
    flagged: 0,
    index: null,
    collections: [],
    live: null,
  });
});

Deno.test("buildStatus: totals and per-collection entries", () => {
  const rows = [
    row("app.bsky.feed.post", {
      imported: 28_000_000,
      new: 1_000,
      completedAt: new Date(T - 1000),
      cursor: "final-cursor",
      attempts: 1,
      estimatedTotal: 28_000_000,
      invalid: 47,
    }),
    row("app.bsky.feed.like", {
      imported: 6_732_000,
      new: 10,
      cursor: "opaque==",
      attempts: 1,
    }),
    row("com.example.broken", {
      lastError: "bsky.network answered 403",
      nextRetryAt: new Date(T + 600_000),
      attempts: 3,
      cursor: "c",
    }),
  ];
  const doc = buildStatus(rows, undefined, false, T);
  assertEquals(
    {
      total: doc.total,
      completed: doc.completed,
      in_progress: doc.in_progress,
      failed: doc.failed,
      total_imported: doc.total_imported,
      total_new: doc.total_new,
      total_invalid: doc.total_invalid,
      flagged: doc.flagged,
    },
    {
      total: 3,
      completed: 1,
      in_progress: 2,
      failed: 1,
      total_imported: 34_732_000,
      total_new: 1_010,
      total_invalid: 47,
      flagged: 1,
    },
  );
  assertEquals(doc.collections, [
    {
      collection: "app.bsky.feed.post",
      source: "bsky.network",
      imported: 28_000_000,
      new: 1_000,
      completed: true,
      active: false,
      attempts: 1,
      invalid: 47,
      updated_at: new Date(T - 60_000).toISOString(),
      warning:
        "47 entries from the source were not valid DIDs and were skipped; reset the collection to fetch it again",
      estimated_total: 28_000_000,
    },
    {
      collection: "app.bsky.feed.like",
      source: "bsky.network",
      imported: 6_732_000,
      new: 10,
      completed: false,
      active: false,
      attempts: 1,
      invalid: 0,
      updated_at: new Date(T - 60_000).toISOString(),
      cursor: "opaque==",
    },
    {
      collection: "com.example.broken",
      source: "bsky.network",
      imported: 0,
      new: 0,
      completed: false,
      active: false,
      attempts: 3,
      invalid: 0,
      updated_at: new Date(T - 60_000).toISOString(),
      cursor: "c",
      error: "bsky.network answered 403",
      next_retry_at: new Date(T + 600_000).toISOString(),
    },
  ]);
  assertEquals(nonNumericCounts(doc), []);
});

Deno.test("buildStatus: a completed row hides an old error and cursor", () => {
  const doc = buildStatus(
    [row("a.b.c", {
      completedAt: new Date(T),
      lastError: "old",
      nextRetryAt: new Date(T),
      cursor: "x",
    })],
    undefined,
    false,
    T,
  );
  assertEquals([doc.failed, doc.completed], [0, 1]);
  const c = doc.collections[0];
  assertEquals([c.cursor, c.error, c.next_retry_at], [undefined, undefined, undefined]);
  assert(!("cursor" in c) && !("error" in c) && !("next_retry_at" in c));
});

function runState(): RunState {
  const run = new RunState({
    id: "r1",
    source: "bsky.network",
    mode: "full",
    startedAt: T - 10_000,
  });
  run.planned(3, 2);
  run.active.set("a.a.a", { collection: "a.a.a", startedAt: T - 5_000, imported: 0, pages: 0 });
  run.page(T - 9_000, "a.a.a", 1000, 600, 2);
  run.page(T - 4_000, "a.a.a", 1000, 400, 0);
  run.finished = 1;
  run.pageLimit = 2000;
  return run;
}

Deno.test("buildStatus: while running, the run section and active/failed flags", () => {
  const rows = [
    // Active, with an error from an earlier attempt: not counted as failed.
    row("a.a.a", { imported: 2000, new: 1000, lastError: "earlier", estimatedTotal: 10_000 }),
    row("b.b.b", { lastError: "403", estimatedTotal: 500 }),
    row("c.c.c", { imported: 7, completedAt: new Date(T), estimatedTotal: 7 }),
  ];
  const doc = buildStatus(rows, runState(), true, T);
  assertEquals(doc.running, true);
  assertEquals(doc.failed, 1);
  assertEquals(doc.collections.map((c) => [c.collection, c.active]), [
    ["a.a.a", true],
    ["b.b.b", false],
    ["c.c.c", false],
  ]);
  const run = doc.run!;
  assertEquals(
    Object.keys(run).sort(),
    [...RUN_COUNTS, "id", "phase", "source", "mode", "started_at", "eta_seconds"].sort(),
  );
  assertEquals(
    Object.keys(doc).sort(),
    [...TOP_COUNTS, "running", "run", "index", "collections", "live"].sort(),
  );
  assertEquals(
    {
      id: run.id,
      phase: run.phase,
      source: run.source,
      mode: run.mode,
      started_at: run.started_at,
      collections: run.collections,
      queued: run.queued,
      finished: run.finished,
      pages: run.pages,
      imported: run.imported,
      new: run.new,
      invalid_dids: run.invalid_dids,
      page_limit: run.page_limit,
    },
    {
      id: "r1",
      phase: "running",
      source: "bsky.network",
      mode: "full",
      started_at: new Date(T - 10_000).toISOString(),
      collections: 3,
      queued: 2,
      finished: 1,
      pages: 2,
      imported: 2000,
      new: 1000,
      invalid_dids: 2,
      page_limit: 2000,
    },
  );
  // Rate over the samples since the first one (T - 9 s): 1000 DIDs more in 9 s.
  assertEquals(run.dids_per_sec, Math.round((1000 / 9) * 10) / 10);
  assert(run.pages_per_sec > 0);
  // Remaining: (10000 - 2000) + (500 - 0) DIDs at ~111 DIDs/s.
  assertEquals(run.eta_seconds, Math.round(8500 / (1000 / 9)));
  assertEquals(nonNumericCounts(doc), []);
});

Deno.test("buildStatus: the ETA counts collections with a size estimate; null when none has one", () => {
  const withSome = buildStatus(
    [row("a.a.a", { estimatedTotal: 1_000_000 }), row("b.b.b")],
    runState(),
    true,
    T,
  );
  assertEquals(typeof withSome.run!.eta_seconds, "number");
  assert(withSome.run!.eta_seconds! > 0);
  const withNone = buildStatus([row("b.b.b")], runState(), true, T);
  assertEquals(withNone.run!.eta_seconds, null);
});

Deno.test("buildStatus: a finished run is not reported as running", () => {
  const doc = buildStatus([row("a.a.a", { lastError: "x" })], runState(), false, T);
  assertEquals([doc.running, doc.run, doc.failed], [false, null, 1]);
  assertEquals(doc.collections[0].active, false);
});

Deno.test("buildStatus: rows from Postgres serialise with numeric counts", async () => {
  const db = await testDb("status");
  try {
    await db.progress.seed(["a.a.a", "b.b.b", "c.c.c"], "bsky.network");
    await db.progress.saveCheckpoint("a.a.a", {
      source: "bsky.network",
      cursor: "k",
      imported: 30_000_000_001,
      new: 5,
    });
    await db.progress.complete("b.b.b", {
      source: "bsky.network",
      cursor: "z",
      imported: 12,
      new: 12,
    });
    await db.progress.startAttempt("c.c.c");
    await db.progress.fail("c.c.c", "boom", new Date(T));
    await db.progress.setEstimates(new Map([["a.a.a", 31_000_000_000]]));
    const doc: StatusDocument = JSON.parse(
      JSON.stringify(buildStatus(await db.progress.list(), undefined, false, T)),
    );
    assertEquals(nonNumericCounts(doc), []);
    assertEquals(doc.total_imported, 30_000_000_013);
    assertEquals(doc.total_new, 17);
    assertEquals([doc.total, doc.completed, doc.in_progress, doc.failed], [3, 1, 2, 1]);
    assertEquals(doc.collections[0].estimated_total, 31_000_000_000);
    assertEquals(doc.collections[2].attempts, 1);
  } finally {
    await db.drop();
  }
});

Deno.test("nonNumericCounts catches a string count (the checker itself can fail)", () => {
  const doc = buildStatus([row("a.a.a")], undefined, false, T);
  // deno-lint-ignore no-explicit-any
  (doc.collections[0] as any).imported = "12";
  // deno-lint-ignore no-explicit-any
  (doc as any).total_imported = "12";
  assertEquals(nonNumericCounts(doc), [
    '$.total_imported = "12"',
    '$.collections[0].imported = "12"',
  ]);
});

Deno.test("buildStatus: a run still planning is the current run, with its id and phase", () => {
  const planning = new RunState({
    id: "p1",
    source: "other.example",
    mode: "catch-up",
    startedAt: T,
  });
  const doc = buildStatus([row("a.a.a", { completedAt: new Date(T) })], planning, true, T);
  assertEquals([doc.run?.id, doc.run?.phase, doc.run?.source, doc.run?.mode], [
    "p1",
    "planning",
    "other.example",
    "catch-up",
  ]);
  assertEquals([doc.run?.collections, doc.run?.queued], [0, 0]);
  assertEquals(nonNumericCounts(doc), []);
});

Deno.test("buildStatus: the index section counts collections marked for re-import and flags them", () => {
  const rows = [row("a.a.a", { reimport: true }), row("b.b.b", { completedAt: new Date(T) })];
  const doc = buildStatus(rows, undefined, false, T, null, {
    identity: "abc",
    replacedAt: new Date(T - 1000),
  });
  assertEquals(doc.index, {
    identity: "abc",
    replaced_at: new Date(T - 1000).toISOString(),
    reimport: 1,
  });
  assertEquals(doc.collections.map((c) => c.reimport), [true, undefined]);
  assertEquals(
    buildStatus(rows, undefined, false, T).index,
    null,
    "null when the caller does not know it",
  );
});

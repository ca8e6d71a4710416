import {
  assert,
  assertEquals,
  assertMatch,
  assertNotEquals,
  assertRejects,
  assertThrows,
} from "./_assert.ts";
import { isDid, isNsid } from "../lib/util/syntax.ts";
import { InputError } from "../lib/util/errors.ts";
import { formatDid, makeWorld, SimWorld, worldFromLists } from "../lib/sim/world.ts";
import { type SimRelay, type SimRelayOptions, startSimRelay } from "../lib/sim/relay.ts";
import { decodeSimCursor } from "../lib/sim/cursor.ts";
import { runSimRelayCli, simRelayOptionsFromArgs } from "../lib/sim/cli.ts";
import { until } from "./_helpers.ts";

const LIST = "/xrpc/com.atproto.sync.listReposByCollection";

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  // deno-lint-ignore no-explicit-any
  json: any;
}

async function get(relay: SimRelay, path: string, init?: RequestInit): Promise<Answer> {
  const res = await fetch(relay.url + path, init);
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

function page(relay: SimRelay, collection: string, limit?: number, cursor?: string) {
  const q = new URLSearchParams({ collection });
  if (limit !== undefined) q.set("limit", String(limit));
  if (cursor !== undefined) q.set("cursor", cursor);
  return get(relay, `${LIST}?${q}`);
}

/** Pages a collection to the end, checking the cursor rule on every page. */
async function pageAll(relay: SimRelay, collection: string, limit: number) {
  const dids: string[] = [];
  const cursors: string[] = [];
  let cursor: string | undefined;
  do {
    const a = await page(relay, collection, limit, cursor);
    assertEquals(a.status, 200);
    cursor = a.json.cursor;
    if (cursor !== undefined) cursors.push(cursor);
    dids.push(...a.json.repos.map((r: { did: string }) => r.did));
  } while (cursor);
  return { dids, cursors };
}

async function withRelay(opts: SimRelayOptions, fn: (relay: SimRelay) => Promise<void>) {
  const relay = await startSimRelay(opts);
  try {
    await fn(relay);
  } finally {
    await relay.close();
  }
}

Deno.test("world: deterministic, compact, realistic shape", () => {
  const a = makeWorld({ seed: 3 });
  const b = makeWorld({ seed: 3 });
  const c = makeWorld({ seed: 4 });
  assertEquals(a.collections(), b.collections());
  assertEquals(a.dids("app.bsky.feed.like"), b.dids("app.bsky.feed.like"));
  assertNotEquals(a.dids("app.bsky.feed.like")[0], c.dids("app.bsky.feed.like")[0]);
  assertEquals(a.collections().length, 40);
  assertEquals(a.collections().slice(0, 3), [
    "app.bsky.feed.like",
    "app.bsky.feed.post",
    "app.bsky.actor.profile",
  ]);
  assertEquals(a.size("app.bsky.feed.like"), 20000);
  const like = a.dids("app.bsky.feed.like");
  assertEquals(new Set(like).size, like.length);
  assert(like.every((d) => isDid(d) && /^did:plc:[a-z2-7]{24}$/.test(d)));
  assertNotEquals(like, [...like].sort(), "first-seen order is not DID order");
  const post = new Set(a.dids("app.bsky.feed.post"));
  assert(like.filter((d) => post.has(d)).length > 1000, "accounts are shared across collections");
  const tail = a.collections().slice(5);
  assert(tail.every((n) => isNsid(n) && a.size(n) <= 60));
  assert(tail.some((n) => a.size(n) === 0), "some tail collections are empty");
  const t = a.totals();
  assertEquals(t.collections, 40);
  assert(t.accounts <= 25000 && t.accounts > 20000 && t.entries > 47000);
});

Deno.test("world: formatDid is injective on a large range; append grows at the end", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 300000; i++) seen.add(formatDid(i, 99));
  assertEquals(seen.size, 300000);
  const w = makeWorld({ seed: 1, collections: 6 });
  const before = w.dids("app.bsky.feed.post");
  const added = w.append("app.bsky.feed.post", 3);
  assertEquals(w.dids("app.bsky.feed.post"), [...before, ...added]);
  assertEquals(w.append("com.example.fresh.thing", 2).length, 2);
  assertEquals(w.size("com.example.fresh.thing"), 2);
  const l = worldFromLists({ "a.b.c": ["did:plc:x", "did:plc:x", "nope"] });
  assertEquals(l.dids("a.b.c"), ["did:plc:x", "did:plc:x", "nope"]);
  assertEquals(l.totals(), { collections: 1, entries: 3, accounts: 2 });
  assert(l instanceof SimWorld);
});

Deno.test("listRepos: paging yields the world's DIDs in first-seen order", async () => {
  const world = makeWorld({ seed: 5, largeSizes: [4321, 700], collections: 8 });
  await withRelay({ world }, async (relay) => {
    for (const c of world.collections()) {
      for (const limit of [1000, 333]) {
        if (limit === 333 && world.size(c) > 1000) continue;
        const { dids, cursors } = await pageAll(relay, c, limit);
        assertEquals(dids, world.dids(c), `${c} limit ${limit}`);
        assertEquals(cursors.length, Math.floor(world.size(c) / limit));
        for (const cur of cursors) {
          assertMatch(cur, /^[A-Za-z0-9_-]+$/);
          assert(
            !cur.startsWith("did:") && !isDid(atob(cur.replace(/-/g, "+").replace(/_/g, "/"))),
          );
        }
      }
    }
  });
});

Deno.test("listRepos: cursor only on full pages; an exact remainder ends with an empty page", async () => {
  const dids = ["did:plc:a1", "did:plc:a2", "did:plc:a3", "did:plc:a4"];
  await withRelay({ world: worldFromLists({ "com.example.four": dids }) }, async (relay) => {
    const p1 = await page(relay, "com.example.four", 2);
    assertEquals(p1.json.repos, [{ did: "did:plc:a1" }, { did: "did:plc:a2" }]);
    assert(typeof p1.json.cursor === "string");
    const p2 = await page(relay, "com.example.four", 2, p1.json.cursor);
    assertEquals(p2.json.repos.length, 2);
    assert(p2.json.cursor);
    const p3 = await page(relay, "com.example.four", 2, p2.json.cursor);
    assertEquals(p3.text, '{"repos":[]}');
    const short = await page(relay, "com.example.four", 3, p1.json.cursor);
    assertEquals(short.json, { repos: [{ did: "did:plc:a3" }, { did: "did:plc:a4" }] });
  });
});

Deno.test("listRepos: a saved cursor picks up DIDs appended later", async () => {
  const world = worldFromLists({ "com.example.grow": ["did:plc:g1", "did:plc:g2", "did:plc:g3"] });
  await withRelay({ world }, async (relay) => {
    const first = await pageAll(relay, "com.example.grow", 2);
    assertEquals(first.dids.length, 3);
    const saved = first.cursors.at(-1)!;
    const added = world.append("com.example.grow", 4);
    let cursor: string | undefined = saved;
    const more: string[] = [];
    while (cursor) {
      const a = await page(relay, "com.example.grow", 2, cursor);
      more.push(...a.json.repos.map((r: { did: string }) => r.did));
      cursor = a.json.cursor;
    }
    assertEquals(more, ["did:plc:g3", ...added]);
  });
});

Deno.test("listRepos: limit clamping, defaults and invalid limits", async () => {
  const world = makeWorld({ seed: 2, largeSizes: [12000], collections: 1 });
  await withRelay({ world }, async (relay) => {
    const c = "app.bsky.feed.like";
    assertEquals((await page(relay, c)).json.repos.length, 500);
    assertEquals((await page(relay, c, 0)).json.repos.length, 1);
    assertEquals((await page(relay, c, -7)).json.repos.length, 1);
    assertEquals((await page(relay, c, 50000)).json.repos.length, 10000);
    relay.setFaults({ maxLimit: 2000 });
    assertEquals((await page(relay, c, 50000)).json.repos.length, 2000);
    relay.setFaults({ overLimit: "reject" });
    for (const [limit, status] of [[2000, 200], [2001, 400], [10000, 400]]) {
      const a = await get(relay, `${LIST}?collection=${c}&limit=${limit}`);
      assertEquals(a.status, status, `limit ${limit} against a lexicon-strict relay`);
      if (status === 400) assertEquals(a.json.error, "InvalidRequest");
    }
    assertEquals((await page(relay, c)).json.repos.length, 500);
    for (const bad of ["abc", "1.5", "10x"]) {
      const a = await get(relay, `${LIST}?collection=${c}&limit=${bad}`);
      assertEquals(a.status, 400);
      assertEquals(a.json.error, "InvalidRequest");
    }
  });
});

Deno.test("listRepos: 400 for bad NSIDs and foreign or garbage cursors; unknown is empty", async () => {
  const world = worldFromLists({
    "com.example.one": ["did:plc:o1", "did:plc:o2"],
    "com.example.two": ["did:plc:t1"],
  });
  await withRelay({ world, llmsExtra: ["com.example.listed"] }, async (relay) => {
    for (
      const q of [
        "",
        "?collection=",
        "?collection=notnsid",
        "?collection=a.b",
        "?collection=com.example.one!",
      ]
    ) {
      const a = await get(relay, LIST + q);
      assertEquals(a.status, 400, q);
      assertEquals(a.json.error, "InvalidRequest");
      assert(typeof a.json.message === "string");
    }
    const cur = (await page(relay, "com.example.one", 1)).json.cursor;
    assertEquals(decodeSimCursor("nope", "com.example.one", cur), undefined);
    for (const bad of ["garbage!", "Zm9v", "did:plc:o1", btoa("com.example.one|1|00")]) {
      const a = await page(relay, "com.example.one", 1, bad);
      assertEquals([a.status, a.json.error], [400, "InvalidRequest"], bad);
    }
    assertEquals((await page(relay, "com.example.two", 1, cur)).status, 400);
    await withRelay({ world, seed: 77 }, async (other) => {
      assertEquals((await page(other, "com.example.one", 1, cur)).status, 400);
    });
    assertEquals((await page(relay, "com.example.nothere")).text, '{"repos":[]}');
    assertEquals((await page(relay, "com.example.listed")).json, { repos: [] });
  });
});

Deno.test("faults: latency, 429 with Retry-After (seconds and date), RateLimit headers", async () => {
  const world = worldFromLists({ "com.example.one": ["did:plc:o1"] });
  await withRelay({ world, latencyMs: 80 }, async (relay) => {
    const t = performance.now();
    assertEquals((await page(relay, "com.example.one")).status, 200);
    assert(performance.now() - t >= 75); // the latency is a floor: a slow machine cannot break it
    relay.setFaults({ latencyMs: undefined, rate429: 1, retryAfterSec: 2 });
    let a = await page(relay, "com.example.one");
    assertEquals(a.status, 429);
    assertEquals(a.headers.get("retry-after"), "2");
    assertEquals(a.headers.get("ratelimit-remaining"), "0");
    assertEquals(a.headers.get("ratelimit-reset"), "2");
    relay.setFaults({ retryAfterDate: true, limitHeaders: "retry-after" });
    a = await page(relay, "com.example.one");
    const when = Date.parse(a.headers.get("retry-after")!);
    assert(when > Date.now() - 1000 && when < Date.now() + 4000);
    assertEquals(a.headers.get("ratelimit-limit"), null);
    relay.setFaults({ limitHeaders: "ratelimit" });
    a = await page(relay, "com.example.one");
    assertEquals([a.headers.get("retry-after"), a.headers.get("ratelimit-reset")], [null, "2"]);
    assertEquals(relay.stats.rateLimited, 3);
    assertEquals(relay.stats.byStatus["429"], 3);
  });
});

Deno.test("faults: maxRps is a token bucket; successes carry RateLimit headers", async () => {
  const world = worldFromLists({ "com.example.one": ["did:plc:o1"] });
  await withRelay({ world, maxRps: 5 }, async (relay) => {
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const a = await page(relay, "com.example.one");
      statuses.push(a.status);
      if (a.status === 200) {
        assertEquals(a.headers.get("ratelimit-limit"), "5");
        assert(a.headers.get("ratelimit-remaining") !== null);
      } else {
        assertEquals(a.headers.get("retry-after"), "1");
        assertEquals(a.headers.get("ratelimit-remaining"), "0");
      }
    }
    assertEquals(statuses.filter((s) => s === 200).length, 5);
    assertEquals(statuses.slice(5), [429, 429, 429]);
    // The bucket refills at 5 per second: a request gets through again within a second.
    await until(async () => (await page(relay, "com.example.one")).status === 200, {
      timeoutMs: 1000,
      what: "the bucket to refill",
      everyMs: 50,
    });
    relay.setFaults({ maxRps: undefined });
    assertEquals((await page(relay, "com.example.one")).headers.get("ratelimit-limit"), null);
    // A bucket that only shows itself on a 429.
    relay.setFaults({ maxRps: 5, okLimitHeaders: false });
    const quiet = await page(relay, "com.example.one");
    assertEquals([quiet.status, quiet.headers.get("ratelimit-limit")], [200, null]);
  });
});

Deno.test("faults: 5xx HTML, connection resets, hangs, forbidden, disabled endpoint", async () => {
  const world = worldFromLists({
    "com.example.one": ["did:plc:o1"],
    "com.example.two": ["did:plc:t1"],
  });
  await withRelay({ world, rate5xx: 1 }, async (relay) => {
    const a = await page(relay, "com.example.one");
    assert(a.status === 502 || a.status === 503);
    assertMatch(a.headers.get("content-type")!, /text\/html/);
    assertMatch(a.text, /<html>/);
    relay.setFaults({ rate5xx: 0, rateReset: 1 });
    await assertRejects(() => page(relay, "com.example.one"));
    relay.setFaults({ rateReset: 0, hangRate: 1 });
    await assertRejects(() =>
      get(relay, `${LIST}?collection=com.example.one`, { signal: AbortSignal.timeout(150) })
    );
    const hung = fetch(`${relay.url}${LIST}?collection=com.example.one`).then(
      (r) => r.body?.cancel(),
      () => "gone",
    );
    await until(() => (relay.stats.byStatus.hang ?? 0) >= 2, { what: "two hung requests" });
    relay.setFaults({ hangRate: 0, forbidden: ["com.example.two"] });
    const f = await page(relay, "com.example.two");
    assertEquals([f.status, f.text], [403, "Request forbidden by administrative rules"]);
    assertMatch(f.headers.get("content-type")!, /text\/plain/);
    assertEquals((await page(relay, "com.example.one")).status, 200);
    relay.setFaults({ forbidden: undefined, listRepos: false });
    assertEquals((await page(relay, "com.example.one")).status, 404);
    assert(relay.stats.byStatus.reset >= 1 && relay.stats.byStatus.hang >= 1);
    await relay.close();
    assertEquals(await hung, "gone", "close() ends hung requests");
  });
});

Deno.test("faults: the fault RNG is deterministic per seed", async () => {
  const world = worldFromLists({ "com.example.one": ["did:plc:o1"] });
  const run = async () => {
    const out: number[] = [];
    await withRelay({ world, seed: 9, rate429: 0.3, rate5xx: 0.3 }, async (relay) => {
      for (let i = 0; i < 30; i++) out.push((await page(relay, "com.example.one")).status);
    });
    return out;
  };
  const first = await run();
  assertEquals(await run(), first);
  assert(first.includes(200) && first.includes(429));
});

Deno.test("malformed: bad-json, missing-repos, non-object-entries, invalid-dids", async () => {
  const world = makeWorld({ seed: 8, largeSizes: [30], collections: 1, tailMax: 0 });
  const c = "app.bsky.feed.like";
  await withRelay({ world, malformed: { [c]: "bad-json" } }, async (relay) => {
    let a = await page(relay, c, 10);
    assertEquals([a.status, a.json], [200, undefined]);
    relay.setFaults({ malformed: { [c]: "missing-repos" } });
    a = await page(relay, c, 10);
    assertEquals(a.json.repos, undefined);
    assertEquals(a.json.dids, world.dids(c).slice(0, 10));
    relay.setFaults({ malformed: { "*": "non-object-entries" } });
    a = await page(relay, c, 10);
    assertEquals(a.json.repos, world.dids(c).slice(0, 10));
    relay.setFaults({ malformed: { [c]: "invalid-dids" } });
    const got: string[] = [];
    let cursor: string | undefined;
    do {
      a = await page(relay, c, 10, cursor);
      got.push(...a.json.repos.map((r: { did: string }) => r.did));
      cursor = a.json.cursor;
    } while (cursor);
    assert(got.some((d) => !isDid(d)));
    assertEquals(got.filter((d) => isDid(d)), world.dids(c));
  });
});

Deno.test("malformed: repeat-cursor, empty-with-cursor, short pages with a cursor", async () => {
  const world = makeWorld({ seed: 8, largeSizes: [25], collections: 1, tailMax: 0 });
  const c = "app.bsky.feed.like";
  await withRelay({ world, malformed: { [c]: "repeat-cursor" } }, async (relay) => {
    const p1 = await page(relay, c, 10);
    const p2 = await page(relay, c, 10, p1.json.cursor);
    const p3 = await page(relay, c, 10, p2.json.cursor);
    assertEquals(p2.json.cursor, p1.json.cursor);
    assertEquals(p3.json, p2.json);
    relay.setFaults({ malformed: { [c]: "empty-with-cursor" } });
    let a = await page(relay, c, 10, relay.cursorFor(c, 20));
    assertEquals(a.json.repos.length, 5);
    const seen = new Set<string>();
    for (let i = 0; i < 3; i++) {
      a = await page(relay, c, 10, a.json.cursor);
      assertEquals(a.json.repos, []);
      assert(a.json.cursor && !seen.has(a.json.cursor));
      seen.add(a.json.cursor);
    }
    relay.setFaults({ malformed: undefined, shortPageEvery: 2 });
    const got: string[] = [];
    let shortWithCursor = 0;
    let cursor: string | undefined;
    do {
      a = await page(relay, c, 10, cursor);
      got.push(...a.json.repos.map((r: { did: string }) => r.did));
      if (a.json.cursor && a.json.repos.length < 10) shortWithCursor++;
      cursor = a.json.cursor;
    } while (cursor);
    assertEquals(got, world.dids(c));
    assert(shortWithCursor >= 1);
  });
});

Deno.test("malformed: huge-body streams lazily without a length", async () => {
  const world = worldFromLists({ "com.example.huge": ["did:plc:h1"] });
  await withRelay({ world, malformed: { "com.example.huge": "huge-body" } }, async (relay) => {
    const res = await fetch(`${relay.url}${LIST}?collection=com.example.huge`);
    assertEquals(res.status, 200);
    assertEquals(res.headers.get("content-length"), null);
    const reader = res.body!.getReader();
    let got = 0;
    while (got < 4 * 1024 * 1024) got += (await reader.read()).value!.length;
    await reader.cancel();
    assert(Deno.memoryUsage().rss < 1024 * 1024 * 1024);
  });
});

Deno.test("listCollections: collectiondir's shape, min-DID filter, c= filter, disable", async () => {
  const world = makeWorld({ seed: 4, collections: 100, tailMax: 40, emptyRate: 0.2 });
  await withRelay({ world }, async (relay) => {
    const a = await get(relay, "/v1/listCollections");
    assertEquals(a.status, 200);
    const listed = Object.keys(a.json.collections);
    const expected = world.collections().filter((c) => world.size(c) >= 5).sort();
    assertEquals(listed, expected);
    assertEquals(a.json.collections["app.bsky.feed.like"], 20000);
    assertEquals(a.json.cursor, expected.length >= 500 ? expected.at(-1) : "");
    const paged = await get(relay, "/v1/listCollections?limit=50");
    assertEquals(paged.json.cursor, expected.at(-1), "collectiondir does not stop at limit");
    const after = await get(relay, `/v1/listCollections?limit=50&cursor=${paged.json.cursor}`);
    assertEquals(after.json, { collections: {}, cursor: "" });
    const some = await get(relay, "/v1/listCollections?c=app.bsky.feed.post&c=com.example.none");
    assertEquals(some.json, { collections: { "app.bsky.feed.post": 12000 }, cursor: "" });
    relay.setFaults({ listCollections: false });
    assertEquals((await get(relay, "/v1/listCollections")).status, 404);
  });
});

Deno.test("llms.txt lists every collection among noise; extra, override and status", async () => {
  const world = makeWorld({ seed: 6, collections: 12 });
  await withRelay({ world, llmsExtra: ["com.example.onlyllms.thing"] }, async (relay) => {
    const a = await get(relay, "/llms.txt");
    assertEquals(a.status, 200);
    const links = [...a.text.matchAll(/\]\((https:\/\/lexicon\.garden\/lexicon\/[^)]*)\)/g)].map((
      m,
    ) => m[1]);
    const nsids = links.map((l) => l.split("/")[5]).filter((s) => isNsid(s));
    assertEquals(new Set(nsids), new Set([...world.collections(), "com.example.onlyllms.thing"]));
    assert(nsids.length > new Set(nsids).size, "some entries are duplicated");
    assert(links.some((l) => l.endsWith("/docs")));
    assert(
      links.some((l) => l.includes("not an nsid")) && links.some((l) => l.endsWith("did:plc:x/")),
    );
    assert(a.text.includes("https://lexicon.garden/about"));
    relay.setFaults({ llmsTxt: "# custom\n" });
    assertEquals((await get(relay, "/llms.txt")).text, "# custom\n");
    relay.setFaults({ llmsStatus: 503 });
    assertEquals((await get(relay, "/llms.txt")).status, 503);
  });
});

Deno.test("health, 404s and stats", async () => {
  const world = worldFromLists({ "com.example.one": ["did:plc:o1"] });
  await withRelay({ world, latencyMs: 40 }, async (relay) => {
    assertEquals((await get(relay, "/xrpc/_health")).status, 200);
    assertEquals((await get(relay, "/nope")).status, 404);
    await Promise.all(Array.from({ length: 6 }, () => page(relay, "com.example.one")));
    const s = relay.stats;
    await until(() => s.inFlight === 0, { what: "the relay to see every request end" });
    assertEquals(s.requests, 8);
    assertEquals(s.byStatus["200"], 7);
    assertEquals(s.byCollection["com.example.one"], 6);
    assert(s.maxConcurrent >= 3 && s.peakRps >= 8 && s.peakOkRps >= 7);
    assertEquals([s.pages, s.didsServed, s.inFlight], [6, 6, 0]);
    relay.resetStats();
    assertEquals(relay.stats.requests, 0);
  });
});

Deno.test("cli: prints the URL and world, serves until aborted, rejects bad flags", async () => {
  const lines: string[] = [];
  const ac = new AbortController();
  const done = runSimRelayCli(["--port", "0", "--collections", "9"], { SIM_RELAY_SEED: "12" }, {
    signal: ac.signal,
    out: (l) => lines.push(l),
  });
  await until(() => lines.length >= 3, { what: "the CLI's first three lines" });
  const url = lines[0].match(/http:\/\/127\.0\.0\.1:\d+/)![0];
  assertMatch(lines[1], /seed 12, 9 collections/);
  const res = await fetch(`${url}${LIST}?collection=app.bsky.feed.like&limit=3`);
  assertEquals((await res.json()).repos.length, 3);
  ac.abort();
  assertEquals(await done, 0);
  assertMatch(lines.at(-1)!, /1 requests/);
  const help: string[] = [];
  assertEquals(await runSimRelayCli(["--help"], {}, { out: (l) => help.push(l) }), 0);
  assertMatch(help[0], /--latency/);
  await assertRejects(() => runSimRelayCli(["--latency", "x"], {}), InputError);
  await assertRejects(() => runSimRelayCli(["--bogus"], {}), InputError);
  await assertRejects(() => runSimRelayCli(["--malformed", "a.b.c=weird"], {}), InputError);
});

Deno.test("sim-relay flags: the largest limit and what a larger one gets, table", () => {
  const cases: [string[], Record<string, string>, number | undefined, string | undefined][] = [
    [[], {}, undefined, undefined],
    [["--max-limit", "2000"], {}, 2000, undefined],
    [["--max-limit", "2000", "--over-limit", "reject"], {}, 2000, "reject"],
    [[], { SIM_RELAY_MAX_LIMIT: "2000", SIM_RELAY_OVER_LIMIT: "clamp" }, 2000, "clamp"],
    [[], { SIM_RELAY_OVER_LIMIT: "" }, undefined, undefined],
  ];
  for (const [args, env, maxLimit, overLimit] of cases) {
    const o = simRelayOptionsFromArgs(args, env);
    assert(o !== "help");
    assertEquals([o.maxLimit, o.overLimit], [maxLimit, overLimit], args.join(" "));
  }
  assertThrows(
    () => simRelayOptionsFromArgs(["--over-limit", "truncate"], {}),
    /--over-limit must be clamp or reject, got "truncate"/,
  );
});

Deno.test("sim-relay flags: real repos and unprovable commits for the stream, table", () => {
  const cases: [string[], Record<string, string>, boolean, number | undefined][] = [
    [[], {}, false, undefined],
    [["--stream-real-repos"], {}, true, undefined],
    [[], { SIM_RELAY_STREAM_REAL_REPOS: "true" }, true, undefined],
    [["--stream-real-repos", "--stream-unprovable", "0.2"], {}, true, 0.2],
  ];
  for (const [args, env, realRepos, unprovable] of cases) {
    const o = simRelayOptionsFromArgs(args, env);
    assert(o !== "help");
    assertEquals(o.stream?.realRepos, realRepos, args.join(" "));
    assertEquals(o.stream?.mix?.unprovable, unprovable, args.join(" "));
  }
});

import { AtpAgent } from "@atproto/api";
import { assert, assertEquals } from "./_assert.ts";
import { createApp } from "../lib/http/app.ts";
import { decodeCursor, encodeCursor } from "../lib/http/xrpc_cursor.ts";
import { silentLogger } from "../lib/util/log.ts";
import { makeWorld } from "../lib/sim/world.ts";
import { parseSource } from "../lib/source/source.ts";
import { runStatusCli } from "../lib/cli/status.ts";
import { backfillFixture, indexDids, until } from "./_helpers.ts";

const PASSWORD = "s3cret-token";

async function fixture(
  opts: {
    password?: string;
    latencyMs?: number;
    sourceHosts?: readonly string[];
    listUrl?: string;
    planWaitMs?: number;
  } = {},
) {
  const base = await backfillFixture({
    label: "http",
    relay: { world: makeWorld({ seed: 31, largeSizes: [2500, 700] }), latencyMs: opts.latencyMs },
    backfiller: { listUrl: opts.listUrl, sourceHosts: opts.sourceHosts },
  });
  const app = createApp({
    backfiller: base.backfiller,
    index: base.index,
    progress: base.db.progress,
    adminPassword: "password" in opts ? opts.password : PASSWORD,
    defaultSource: base.source,
    log: silentLogger,
    metrics: () => Promise.resolve("backfill_running 0\n"),
    planWaitMs: opts.planWaitMs,
  });
  return {
    ...base,
    app,
    auth: { authorization: `Bearer ${PASSWORD}` },
    req: (path: string, init: RequestInit = {}) => app.request(path, init),
  };
}

Deno.test("admin auth: 403 when no password is configured, 401 for missing or wrong token", async () => {
  await using unset = await fixture({ password: undefined });
  for (
    const [method, path] of [["GET", "/admin/backfill-collections"], [
      "POST",
      "/admin/backfill-collections",
    ]]
  ) {
    const res = await unset.req(path, { method, headers: unset.auth });
    assertEquals(res.status, 403);
    assertEquals(await res.json(), { error: "admin endpoint not configured" });
  }
  await using f = await fixture();
  const cases: [string, Record<string, string>][] = [
    ["no header", {}],
    ["wrong token", { authorization: "Bearer nope" }],
    ["prefix of the token", { authorization: `Bearer ${PASSWORD.slice(0, -1)}` }],
    ["token plus a byte", { authorization: `Bearer ${PASSWORD}x` }],
    ["basic scheme", { authorization: `Basic ${btoa(`admin:${PASSWORD}`)}` }],
    ["empty bearer", { authorization: "Bearer " }],
  ];
  for (const [name, headers] of cases) {
    const res = await f.req("/admin/backfill-collections", { headers });
    assertEquals(res.status, 401, name);
    await res.body?.cancel();
  }
  const ok = await f.req("/admin/backfill-collections", { headers: f.auth });
  assertEquals(ok.status, 200);
  await ok.body?.cancel();
});

Deno.test("admin: start 200 with collections, 409 while running, 400 for bad input, status shape and number types", async () => {
  await using f = await fixture({ latencyMs: 5 });
  const bad = [
    "/admin/backfill-collections?source=ftp://x",
    "/admin/backfill-collections?source=https://user:pw@relay.example",
    "/admin/backfill-collections?source=not%20a%20host",
    `/admin/backfill-collections?source=${"a".repeat(600)}.com`,
    "/admin/backfill-collections?mode=sideways",
    "/admin/backfill-collections?collection=not-an-nsid",
    "/admin/backfill-collections?bogus=1",
  ];
  for (const path of bad) {
    const res = await f.req(path, { method: "POST", headers: f.auth });
    assertEquals(res.status, 400, path);
    const body = await res.json();
    assertEquals(body.error, "InvalidRequest");
    assert(typeof body.message === "string" && body.message.length > 0);
  }
  const started = await f.req(
    `/admin/backfill-collections?source=${encodeURIComponent(f.relay.url)}`,
    {
      method: "POST",
      headers: f.auth,
    },
  );
  assertEquals(started.status, 200);
  const body = await started.json();
  assertEquals(body.collections, f.relay.world.collections().length);
  const again = await f.req("/admin/backfill-collections", { method: "POST", headers: f.auth });
  assertEquals(again.status, 409);
  await again.body?.cancel();

  const during = await (await f.req("/admin/backfill-collections", { headers: f.auth })).json();
  assertEquals(during.running, true);
  await until(() => !f.backfiller.running, { timeoutMs: 120_000, what: "the run to end" });
  const res = await f.req("/admin/backfill-collections", { headers: f.auth });
  assertEquals(res.status, 200);
  const s = await res.json();
  assertEquals(s.running, false);
  for (
    const k of ["total", "completed", "in_progress", "total_imported", "total_new", "failed"]
  ) {
    assertEquals(typeof s[k], "number", k);
  }
  assertEquals(s.total, f.relay.world.collections().length);
  assertEquals(s.completed, s.total);
  assertEquals(s.in_progress, 0);
  const expectedTotal = f.relay.world.collections().reduce(
    (n, c) => n + f.relay.world.size(c),
    0,
  );
  assertEquals(s.total_imported, expectedTotal);
  for (const c of s.collections) {
    assertEquals(typeof c.collection, "string");
    assertEquals(c.source, f.relay.url);
    assertEquals(typeof c.imported, "number");
    assertEquals(c.completed, true);
    assert(!("cursor" in c), "no cursor once complete");
  }
  const stop = await f.req("/admin/backfill-collections/stop", {
    method: "POST",
    headers: f.auth,
  });
  assertEquals(stop.status, 409);
  await stop.body?.cancel();
});

Deno.test("admin: incomplete collections show their cursor; stop checkpoints; reset starts one over", async () => {
  await using f = await fixture({ latencyMs: 20 });
  const res = await f.req("/admin/backfill-collections", { method: "POST", headers: f.auth });
  assertEquals(res.status, 200);
  await res.body?.cancel();
  await until(() => (f.backfiller.state?.pages ?? 0) >= 3, { what: "3 pages written" });
  const stop = await f.req("/admin/backfill-collections/stop", {
    method: "POST",
    headers: f.auth,
  });
  assertEquals(stop.status, 200);
  await stop.body?.cancel();
  const s = await (await f.req("/admin/backfill-collections", { headers: f.auth })).json();
  assertEquals(s.running, false);
  const partial = s.collections.filter((c: { completed: boolean }) => !c.completed);
  assert(partial.length > 0);
  for (const c of partial) assertEquals(typeof c.cursor, "string");
  const reset = await f.req("/admin/backfill-collections/reset?collection=com.example.nothing", {
    method: "POST",
    headers: f.auth,
  });
  assertEquals(await reset.json(), {
    reset: 0,
    collections: [],
    unknown: ["com.example.nothing"],
  });
});

Deno.test("xrpc: parameter errors answer 400 InvalidRequest, never 500", async () => {
  await using f = await fixture();
  const cases = [
    "",
    "?collection=",
    "?collection=nope",
    "?collection=a.b",
    "?collection=app.bsky.feed.like&limit=0",
    "?collection=app.bsky.feed.like&limit=2001",
    "?collection=app.bsky.feed.like&limit=-1",
    "?collection=app.bsky.feed.like&limit=1.5",
    "?collection=app.bsky.feed.like&limit=abc",
    "?collection=app.bsky.feed.like&cursor=%%%",
    "?collection=app.bsky.feed.like&cursor=bm90LWEtZGlk", // base64url of "not-a-did"
    "?collection=app.bsky.feed.like&cursor=" + "A".repeat(5000),
  ];
  for (const q of cases) {
    const res = await f.req(`/xrpc/com.atproto.sync.listReposByCollection${q}`);
    assertEquals(res.status, 400, q);
    const body = await res.json();
    assertEquals(body.error, "InvalidRequest", q);
    assertEquals(typeof body.message, "string");
  }
  const ok = await f.req(
    "/xrpc/com.atproto.sync.listReposByCollection?collection=com.example.unknown",
  );
  assertEquals(await ok.json(), { repos: [] });
});

Deno.test("xrpc: cursor round-trips and rejects what it did not issue", () => {
  for (const did of ["did:plc:abc", "did:web:example.com", "did:web:localhost%3A8080"]) {
    assertEquals(decodeCursor(encodeCursor(did)), did);
  }
  assertEquals(decodeCursor(encodeCursor("not a did")), undefined);
  assertEquals(decodeCursor("ZGlkOnBsYzphYmM="), undefined, "padding is not part of our encoding");
});

Deno.test("xrpc: the official @atproto/api client pages a backfilled collection to the source's exact set", async () => {
  await using f = await fixture();
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, f.app.fetch);
  try {
    await (await f.backfiller.start({ source: parseSource(f.relay.url) })).done;
    const agent = new AtpAgent({ service: `http://127.0.0.1:${server.addr.port}` });
    for (const collection of f.relay.world.collections().slice(0, 4)) {
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const res = await agent.com.atproto.sync.listReposByCollection({
          collection,
          limit: 1000,
          cursor,
        });
        seen.push(...res.data.repos.map((r) => r.did));
        cursor = res.data.cursor;
      } while (cursor);
      assertEquals(seen, [...new Set(f.relay.world.dids(collection))].sort(), collection);
      assertEquals(seen, await indexDids(f.index, collection));
    }
    const def = await agent.com.atproto.sync.listReposByCollection({
      collection: f.relay.world.collections()[0],
    });
    assertEquals(def.data.repos.length, 500, "default limit is 500");
  } finally {
    await server.shutdown();
  }
});

Deno.test("health, readiness and metrics", async () => {
  await using f = await fixture();
  assertEquals((await f.req("/healthz")).status, 200);
  const ready = await f.req("/readyz");
  assertEquals(ready.status, 200);
  assertEquals((await ready.json()).ready, true);
  const m = await f.req("/metrics");
  assertEquals(m.status, 200);
  assert((await m.text()).includes("backfill_running"));
  await f.index.close();
  const notReady = await f.req("/readyz");
  assertEquals(notReady.status, 503);
  await notReady.body?.cancel();
  const nf = await f.req("/nope");
  assertEquals(nf.status, 404);
  await nf.body?.cancel();
});

Deno.test("admin: targeted runs with collection=…, and mode=catch-up picks up only what is new", async () => {
  await using f = await fixture();
  const [a, b] = f.relay.world.collections();
  const post = async (q: string) => {
    const res = await f.req(`/admin/backfill-collections?${q}`, {
      method: "POST",
      headers: f.auth,
    });
    const body = await res.json();
    assertEquals(res.status, 200, JSON.stringify(body));
    await until(() => !f.backfiller.running, { timeoutMs: 120_000, what: "the run to end" });
    return body;
  };
  const first = await post(`collection=${a}&collection=${b}`);
  assertEquals(first.collections, 2);
  assertEquals((await f.db.progress.list()).map((r) => r.collection).sort(), [a, b].sort());
  const added = f.relay.world.append(a, 37);
  f.relay.resetStats();
  const cu = await post(`mode=catch-up&collection=${a}`);
  assertEquals(cu.mode, "catch-up");
  const row = await f.db.progress.get(a);
  assertEquals(row?.imported, f.relay.world.size(a));
  assert(row?.completedAt !== null);
  for (const did of added) assert(await f.index.has(a, did), did);
  assert(
    (f.relay.stats.byCollection[a] ?? 0) <= 2,
    `catch-up requests: ${f.relay.stats.byCollection[a]}`,
  );
});

Deno.test("admin: start and stop fired together a hundred times answer only 200 or 409", async () => {
  await using f = await fixture({ latencyMs: 2 });
  const seen = new Map<string, number>();
  for (let i = 0; i < 100; i++) {
    const [start, stop] = await Promise.all([
      f.req("/admin/backfill-collections", { method: "POST", headers: f.auth }),
      f.req("/admin/backfill-collections/stop", { method: "POST", headers: f.auth }),
    ]);
    for (const [what, res] of [["start", start], ["stop", stop]] as const) {
      const body = await res.text();
      const key = `${what} ${res.status}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
      assert(res.status === 200 || res.status === 409, `${key}: ${body}`);
    }
    await f.backfiller.stop();
    // A stop that won the race must not leave the run recorded as one to resume.
    assertEquals(await f.db.progress.interruptedRun(), undefined, `race ${i}`);
  }
  assert(seen.get("start 200")! > 0, JSON.stringify([...seen]));
});

Deno.test("xrpc: a repeated scalar parameter is 400, POST and PUT are 405, a huge URL is a JSON 414", async () => {
  await using f = await fixture();
  const xrpc = "/xrpc/com.atproto.sync.listReposByCollection";
  for (
    const q of [
      "?collection=app.bsky.feed.like&limit=1&limit=3000",
      "?collection=app.bsky.feed.like&collection=app.bsky.feed.post",
      "?collection=app.bsky.feed.like&cursor=a&cursor=b",
    ]
  ) {
    const res = await f.req(xrpc + q);
    assertEquals(res.status, 400, q);
    const body = await res.json();
    assertEquals(body.error, "InvalidRequest", q);
    assert(body.message.includes("once"), body.message);
  }
  for (const method of ["POST", "PUT", "DELETE"]) {
    const res = await f.req(`${xrpc}?collection=app.bsky.feed.like`, { method });
    assertEquals(res.status, 405, method);
    assertEquals(res.headers.get("allow"), "GET, HEAD");
    assertEquals((await res.json()).error, "MethodNotAllowed");
  }
  const head = await f.req(`${xrpc}?collection=app.bsky.feed.like`, { method: "HEAD" });
  assertEquals(head.status, 200);
  await head.body?.cancel();
  const huge = await f.req(`${xrpc}?collection=app.bsky.feed.like&cursor=${"A".repeat(60_000)}`);
  assertEquals(huge.status, 414);
  assertEquals((await huge.json()).error, "URITooLong");
});

Deno.test("admin: a catch-up that would restart completed collections on another source needs confirm-source-switch=true", async () => {
  await using f = await fixture();
  await (await f.backfiller.start({ source: parseSource(f.relay.url) })).done;
  const rows = await f.db.progress.list();
  const dids = rows.reduce((n, r) => n + r.imported, 0);
  const other = encodeURIComponent("http://127.0.0.1:9");
  const refused = await f.req(`/admin/backfill-collections?mode=catch-up&source=${other}`, {
    method: "POST",
    headers: f.auth,
  });
  assertEquals(refused.status, 409);
  const body = await refused.json();
  assertEquals(body.error, "ConfirmationRequired");
  assertEquals([body.collections, body.dids, body.from], [rows.length, dids, [f.relay.url]]);
  assert(body.message.includes("confirm-source-switch"), body.message);
  assertEquals(f.backfiller.running, false);
  const bad = await f.req(
    `/admin/backfill-collections?mode=catch-up&source=${other}&confirm-source-switch=yes`,
    { method: "POST", headers: f.auth },
  );
  assertEquals(bad.status, 400);
  await bad.body?.cancel();
  const ok = await f.req(
    `/admin/backfill-collections?mode=catch-up&source=${other}&confirm-source-switch=true`,
    { method: "POST", headers: f.auth },
  );
  assertEquals(ok.status, 200);
  assert(["started", "planning"].includes((await ok.json()).status));
  await f.backfiller.stop();
});

Deno.test("admin: with an allow-list of source hosts another source is 400; a non-XRPC error body never reaches last_error", async () => {
  // An "internal" service: answers every request with a plain-text secret.
  const internal = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    () => new Response("SECRET-METADATA token=abc", { status: 403 }),
  );
  const internalUrl = `http://127.0.0.1:${internal.addr.port}`;
  await using open = await fixture();
  await using locked = await fixture({ sourceHosts: ["relay.example.com"] });
  try {
    const refused = await locked.req(
      `/admin/backfill-collections?source=${encodeURIComponent(internalUrl)}`,
      { method: "POST", headers: locked.auth },
    );
    assertEquals(refused.status, 400);
    const body = await refused.json();
    assert(body.message.includes("allow-list of source hosts"), body.message);
    assertEquals(locked.backfiller.running, false);

    const c = open.relay.world.collections()[0];
    const started = await open.req(
      `/admin/backfill-collections?collection=${c}&source=${encodeURIComponent(internalUrl)}`,
      { method: "POST", headers: open.auth },
    );
    assertEquals(started.status, 200);
    await started.body?.cancel();
    await until(() => !open.backfiller.running, { timeoutMs: 120_000, what: "the run to end" });
    const status = await (await open.req("/admin/backfill-collections", { headers: open.auth }))
      .json();
    const row = status.collections.find((x: { collection: string }) => x.collection === c);
    assert(row.error.includes("answered 403"), row.error);
    assert(!JSON.stringify(status).includes("SECRET"), row.error);
  } finally {
    await internal.shutdown();
  }
});

Deno.test("cli and server agree on time: a start whose planning is slow is answered as planning, and status shows that run", async () => {
  // The collection list answers only once the test releases it: discovery, and so planning, is slow.
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const slowList = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async () => {
    await gate;
    return new Response(
      f.relay.world.collections().map((c) => `https://lexicon.garden/lexicon/did:plc:abc/${c}`)
        .join("\n"),
    );
  });
  await using f = await fixture({
    listUrl: `http://127.0.0.1:${slowList.addr.port}/llms.txt`,
    planWaitMs: 300,
  });
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, f.app.fetch);
  const cli = async (args: string[]) => {
    const out: string[] = [], err: string[] = [];
    const code = await runStatusCli({
      args,
      relayUrl: `http://127.0.0.1:${server.addr.port}`,
      password: PASSWORD,
      out: (l) => out.push(l),
      err: (l) => err.push(l),
      timeoutMs: 3_000,
    });
    return { code, out, err };
  };
  try {
    const started = await cli(["catch-up", f.relay.url]);
    assertEquals(started.code, 0, started.err.join("\n"));
    const id = /\(run ([0-9a-f]+)\)/.exec(started.out[0])?.[1];
    assert(started.out[0].startsWith(`planning catch-up from ${f.relay.url}`), started.out[0]);
    const status = await cli(["status"]);
    assert(status.out[0].startsWith(`backfill planning: catch-up from ${f.relay.url}`));
    assert(status.out[0].endsWith(` · run ${id}`), status.out[0]);
    release();
    await until(() => !f.backfiller.running, { timeoutMs: 120_000, what: "the run to end" });
    const s = await (await f.req("/admin/backfill-collections", { headers: f.auth })).json();
    assertEquals(s.completed, f.relay.world.collections().length, "the planned run went on");
  } finally {
    release();
    await server.shutdown();
    await slowList.shutdown();
  }
});

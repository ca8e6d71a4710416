/** Tests for lib/http/front.ts: the worker that owns the port, lists from the index, forwards the rest. */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { startFront } from "../lib/http/front.ts";
import { encodeCursor } from "../lib/http/xrpc_cursor.ts";
import { BusyError } from "../lib/util/errors.ts";
import { silentLogger } from "../lib/util/log.ts";
import { testIndex, until } from "./_helpers.ts";

const XRPC = "/xrpc/com.atproto.sync.listReposByCollection";
const next = (gen: number, cursor: string) => ({
  source: "bsky.network",
  gen,
  cursor,
  done: false,
});
const did = (i: number) => `did:plc:${String(i).padStart(24, "a")}`;

Deno.test("HTTP front: listings are answered while the main thread is blocked", async () => {
  await using fx = await testIndex();
  await fx.index.applyPage("a.b.c", [did(1), did(2), did(3)], next(1, "1"), undefined);
  const front = await startFront({
    hostname: "127.0.0.1",
    port: 0,
    handler: () => new Response("from the main thread"),
    log: silentLogger,
  });
  const client = new Worker(new URL("./_fetch_worker.ts", import.meta.url), { type: "module" });
  try {
    await front.serveIndex(fx.index);
    const flag = new SharedArrayBuffer(4);
    const reply = new Promise<{ status: number; body: string }>((resolve) =>
      client.onmessage = (e) => resolve(e.data)
    );
    const url = `http://127.0.0.1:${front.addr.port}${XRPC}?collection=a.b.c&limit=2`;
    client.postMessage({ url, flag });
    // This thread answers nothing while it spins: only the front can serve the listing.
    const deadline = performance.now() + 15_000;
    while (Atomics.load(new Int32Array(flag), 0) === 0) {
      if (performance.now() > deadline) {
        throw new Error("timed out after 15 s waiting for the listing while the main thread spun");
      }
    }
    const got = await reply;
    assertEquals(got.status, 200);
    assertEquals(JSON.parse(got.body), {
      repos: [{ did: did(1) }, { did: did(2) }],
      cursor: encodeCursor(did(2)),
    });
  } finally {
    client.terminate();
    await front.shutdown();
  }
});

Deno.test("HTTP front: other requests reach the main thread's handler intact, streams included", async () => {
  let cancelled = false;
  const seen: { method: string; path: string; body: string; header: string | null }[] = [];
  const front = await startFront({
    hostname: "127.0.0.1",
    port: 0,
    handler: async (req) => {
      const path = new URL(req.url).pathname;
      seen.push({
        method: req.method,
        path,
        body: await req.text(),
        header: req.headers.get("x-a"),
      });
      if (path === "/stream") {
        return new Response(
          new ReadableStream({
            start: (c) => c.enqueue(new TextEncoder().encode("first\n")),
            cancel: () => void (cancelled = true),
          }),
          { headers: { "content-type": "text/event-stream" } },
        );
      }
      if (path === "/empty") return new Response(null, { status: 204 });
      return Response.json({ path }, { status: 418, headers: { "x-b": "b" } });
    },
    log: silentLogger,
  });
  const base = `http://127.0.0.1:${front.addr.port}`;
  try {
    const res = await fetch(`${base}/admin/x?y=1`, {
      method: "POST",
      body: "payload",
      headers: { "x-a": "a" },
    });
    assertEquals([res.status, res.headers.get("x-b"), await res.json()], [418, "b", {
      path: "/admin/x",
    }]);
    assertEquals(seen[0], { method: "POST", path: "/admin/x", body: "payload", header: "a" });
    const empty = await fetch(`${base}/empty`);
    assertEquals([empty.status, await empty.text()], [204, ""]);
    // Before serveIndex the listing is the handler's too (the server answers 503 while it starts).
    const early = await fetch(`${base}${XRPC}?collection=a.b.c`);
    assertEquals([early.status, await early.json()], [418, { path: XRPC }]);

    const leave = new AbortController();
    const stream = await fetch(`${base}/stream`, { signal: leave.signal });
    assertEquals(stream.headers.get("content-type"), "text/event-stream");
    const reader = stream.body!.getReader();
    assertEquals(new TextDecoder().decode((await reader.read()).value), "first\n");
    leave.abort();
    await reader.cancel().catch(() => {});
    await until(() => cancelled, { what: "the handler's stream cancelled when the client left" });
  } finally {
    await front.shutdown();
  }
  await assertRejects(() => fetch(`${base}/healthz`), TypeError);
});

Deno.test("HTTP front: a port in use is a BusyError naming PORT", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    const err = await assertRejects(
      () =>
        startFront({
          hostname: "127.0.0.1",
          port,
          handler: () => new Response(),
          log: silentLogger,
        }),
      BusyError,
    );
    assert(err.message.includes(String(port)) && err.message.includes("PORT"), err.message);
  } finally {
    taken.close();
  }
});

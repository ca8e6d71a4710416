import { chromium } from "playwright-core";
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { formatCount, formatPercent, formatRate } from "../lib/status/format.js";
import { createApp } from "../lib/http/app.ts";
import { silentLogger } from "../lib/util/log.ts";
import { deadline } from "../lib/util/async.js";
import { makeWorld } from "../lib/sim/world.ts";
import { parseSource } from "../lib/source/source.ts";
import {
  inlineModule,
  STATUS_EVENTS_PATH,
  statusPageRoutes,
  TOKEN_STORAGE_KEY,
} from "../lib/http/status_page.ts";
import { backfillFixture, until } from "./_helpers.ts";

const PASSWORD = "page-s3cret-token";
const CHROMIUM = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";
const STATUS_PATH = "/admin/backfill-collections";

async function fixture(opts: {
  password?: string;
  latencyMs?: number;
  intervalMs?: number;
  now?: () => number;
  pageLimit?: number;
  /** Index of a collection (largest first) whose entries are all malformed. */
  malformedCollection?: number;
} = {}) {
  const world = makeWorld({ seed: 47, largeSizes: [2500, 700] });
  const bySize = [...world.collections()].sort((a, b) => world.size(b) - world.size(a));
  const base = await backfillFixture({
    label: "page",
    relay: {
      world,
      latencyMs: opts.latencyMs,
      malformed: opts.malformedCollection === undefined
        ? undefined
        : { [bySize[opts.malformedCollection]]: "non-object-entries" },
    },
    backfiller: { pageLimit: opts.pageLimit },
  });
  const adminPassword = "password" in opts ? opts.password : PASSWORD;
  const shutdown = new AbortController();
  base.defer(() => shutdown.abort());
  const app = createApp({
    backfiller: base.backfiller,
    index: base.index,
    progress: base.db.progress,
    adminPassword,
    defaultSource: base.source,
    log: silentLogger,
    now: opts.now,
    extend: statusPageRoutes({
      backfiller: base.backfiller,
      progress: base.db.progress,
      adminPassword,
      intervalMs: opts.intervalMs ?? 20,
      now: opts.now,
      signal: shutdown.signal,
    }),
  });
  return { ...base, app, shutdown, auth: { authorization: `Bearer ${PASSWORD}` } };
}

/** SSE frames from a response body, split on blank lines. */
async function* sseFrames(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        yield buf.slice(0, i);
        buf = buf.slice(i + 2);
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

function parseFrame(frame: string): { event?: string; data: string; comment?: string } {
  const out: { event?: string; data: string; comment?: string } = { data: "" };
  const data: string[] = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith(":")) out.comment = line.slice(1).trim();
    else if (line.startsWith("event: ")) out.event = line.slice(7);
    else if (line.startsWith("data: ")) data.push(line.slice(6));
  }
  out.data = data.join("\n");
  return out;
}

async function sha256(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return btoa(String.fromCharCode(...new Uint8Array(d)));
}

Deno.test("status page: public HTML with a strict, hash-based CSP, no data and no token", async () => {
  await using f = await fixture({ password: undefined });
  const res = await f.app.request("/");
  assertEquals(res.status, 200);
  assert(res.headers.get("content-type")?.startsWith("text/html"));
  const csp = res.headers.get("content-security-policy") ?? "";
  const html = await res.text();
  const directives = new Map(
    csp.split(";").map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k, v]),
  );
  assertEquals(directives.get("default-src"), ["'self'"]);
  assertEquals(directives.get("connect-src"), ["'self'"]);
  assertEquals(directives.get("frame-ancestors"), ["'none'"]);
  assert(!csp.includes("unsafe-inline") && !csp.includes("unsafe-eval"), csp);
  const script = /<script>([\s\S]*?)<\/script>/.exec(html)?.[1] ?? "";
  const style = /<style>([\s\S]*?)<\/style>/.exec(html)?.[1] ?? "";
  assert(script.length > 1000 && style.length > 100);
  assertEquals(directives.get("script-src"), [`'sha256-${await sha256(script)}'`]);
  assertEquals(directives.get("style-src"), [`'sha256-${await sha256(style)}'`]);
  assertEquals(html.match(/<script/g)?.length, 1, "one inline script, nothing loaded");
  assert(!/\b(src|href)\s*=\s*["']?(https?:)?\/\//i.test(html), "no external assets");
  assert(!html.includes("innerHTML"), "server data goes through textContent");
  for (const id of ["total", "completed", "in_progress", "failed", "total_imported", "running"]) {
    assert(html.includes(`data-testid="${id}"`), id);
  }
  assert(html.includes(TOKEN_STORAGE_KEY));
  assertEquals(res.headers.get("x-content-type-options"), "nosniff");
  assertEquals(res.headers.get("referrer-policy"), "no-referrer");
  await using withPassword = await fixture();
  const page = await withPassword.app.request("/");
  assertEquals(page.status, 200, "the page itself needs no token");
  assert(!(await page.text()).includes(PASSWORD));
});

Deno.test("status page: the script carries the shared modules, not copies of their rules", async () => {
  await using f = await fixture({ password: undefined });
  const html = await (await f.app.request("/")).text();
  const script = /<script>([\s\S]*?)<\/script>/.exec(html)?.[1] ?? "";
  for (
    const path of ["../lib/status/format.js", "../lib/status/state.js", "../lib/util/async.js"]
  ) {
    const url = new URL(path, import.meta.url);
    const body = (await Deno.readTextFile(url)).replace(/^export /gm, "");
    assert(script.includes(body), `${path} is in the page as it is on disk`);
  }
  // Nothing in the page's own file redefines what the shared modules define.
  const own = await Deno.readTextFile(new URL("../lib/http/page/status.js", import.meta.url));
  for (const name of ["formatCount", "formatRate", "formatDuration", "formatPercent", "retry"]) {
    assert(!new RegExp(`function ${name}\\b`).test(own), `the page defines ${name} again`);
  }
});

Deno.test("inlineModule: the inlined module declares the same functions", () => {
  const url = new URL("../lib/status/format.js", import.meta.url);
  const inlined = inlineModule(url, Deno.readTextFileSync(url));
  const run = new Function(`${inlined}\nreturn [formatCount(1234567), formatPercent(0.9999)];`);
  assertEquals(run(), [formatCount(1234567), formatPercent(0.9999)]);
  assertEquals(run(), ["1.2M", "99.9%"]);
  assertThrows(() => inlineModule(url, 'import { x } from "./y.js";\nexport const z = x;'));
});

Deno.test("status events: 403 without a configured password, 401 for a missing or wrong token", async () => {
  await using unset = await fixture({ password: undefined });
  const res = await unset.app.request(STATUS_EVENTS_PATH, { headers: unset.auth });
  assertEquals(res.status, 403);
  assertEquals(await res.json(), { error: "admin endpoint not configured" });
  await using f = await fixture();
  for (
    const headers of [
      {},
      { authorization: "Bearer nope" },
      { authorization: `Bearer ${PASSWORD}x` },
      { authorization: `Basic ${btoa(`admin:${PASSWORD}`)}` },
    ] as Record<string, string>[]
  ) {
    const res = await f.app.request(STATUS_EVENTS_PATH, { headers });
    assertEquals(res.status, 401, JSON.stringify(headers));
    assertEquals(res.headers.get("www-authenticate"), 'Bearer realm="backfill admin"');
    assertEquals((await res.json()).error, "AuthRequired");
  }
  const q = await f.app.request(`${STATUS_EVENTS_PATH}?token=${PASSWORD}`);
  assertEquals(q.status, 401, "a token in the URL is not accepted");
  await q.body?.cancel();
});

Deno.test("status events: first frame is the status document, then keepalives while nothing changes", async () => {
  const fixed = Date.parse("2025-06-01T12:00:00Z");
  await using f = await fixture({ now: () => fixed, intervalMs: 20 });
  await (await f.backfiller.start({ source: parseSource(f.relay.url) })).done;
  const json = await (await f.app.request(STATUS_PATH, { headers: f.auth })).json();
  assertEquals(json.total, f.relay.world.collections().length);

  const res = await f.app.request(STATUS_EVENTS_PATH, { headers: f.auth });
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("content-type"), "text/event-stream");
  const frames = sseFrames(res.body!);
  const first = parseFrame((await frames.next()).value!);
  assertEquals(first.event, "status");
  assertEquals(JSON.parse(first.data), json);
  const second = parseFrame((await frames.next()).value!);
  assertEquals(second.comment, "keepalive", "an unchanged document is not resent");
  await frames.return(undefined); // cancels the body, as a closing tab does
});

Deno.test("status events: a new document every interval while a run progresses", async () => {
  await using f = await fixture({ latencyMs: 30, intervalMs: 50 });
  const res = await f.app.request(STATUS_EVENTS_PATH, { headers: f.auth });
  const frames = sseFrames(res.body!);
  const idle = JSON.parse(parseFrame((await frames.next()).value!).data);
  assertEquals(idle.running, false);
  assertEquals(idle.total, 0);
  const started = await f.backfiller.start({ source: parseSource(f.relay.url) });
  const seen: number[] = [];
  for await (const frame of frames) {
    const { event, data } = parseFrame(frame);
    if (event !== "status") continue;
    const doc = JSON.parse(data);
    if (doc.running) seen.push(doc.total_imported);
    if (new Set(seen).size >= 3) break;
  }
  assert(seen.every((n, i) => i === 0 || n >= seen[i - 1]), `monotonic: ${seen}`);
  await frames.return(undefined);
  await f.backfiller.stop();
  await started.done;
});

Deno.test("status events: the shutdown signal ends open streams, so a graceful shutdown completes", async () => {
  await using f = await fixture({ intervalMs: 30 });
  // No `signal` here: Deno.serve would cut connections itself; shutdown() waits for responses.
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, f.app.fetch);
  try {
    const res = await fetch(`http://127.0.0.1:${server.addr.port}${STATUS_EVENTS_PATH}`, {
      headers: f.auth,
    });
    const frames = sseFrames(res.body!);
    assertEquals(parseFrame((await frames.next()).value!).event, "status");
    f.shutdown.abort();
    // A deadline against a hang (an event stream the signal did not end), not a timing.
    await deadline(server.shutdown(), 30_000).catch((err) => {
      throw new Error(`server.shutdown() after the signal: ${err.message}`);
    });
    for await (const _ of frames) { /* the stream ends cleanly, without a connection error */ }
  } finally {
    f.shutdown.abort();
    await server.shutdown();
  }
});

Deno.test({
  name: "status page in headless Chromium: token form, numbers equal to the JSON, live updates",
  async fn() {
    try {
      await Deno.stat(CHROMIUM);
    } catch {
      throw new Error(
        `${CHROMIUM} not found: install Chromium (apt-get install -y chromium) or set CHROMIUM_PATH`,
      );
    }
    // 50 DIDs a page and 60 ms a request: the largest collection takes about 3 s.
    await using f = await fixture({ latencyMs: 60, intervalMs: 150, pageLimit: 50 });
    const server = Deno.serve(
      { port: 0, hostname: "127.0.0.1", signal: f.shutdown.signal, onListen() {} },
      f.app.fetch,
    );
    const base = `http://127.0.0.1:${server.addr.port}`;
    const adminJson = async () =>
      await (await fetch(`${base}${STATUS_PATH}`, { headers: f.auth })).json();
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      const page = await browser.newPage();
      const requests: { url: string; authorization?: string }[] = [];
      const problems: string[] = [];
      page.on(
        "request",
        (r) => requests.push({ url: r.url(), authorization: r.headers().authorization }),
      );
      page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
      page.on("console", (m) => {
        if (m.type() === "error" && !m.text().includes("401")) {
          problems.push(`console: ${m.text()}`);
        }
      });
      const value = async (id: string) =>
        await page.getAttribute(`[data-testid="${id}"]`, "data-value");
      const text = async (id: string) => await page.textContent(`[data-testid="${id}"]`);
      const storedToken = () =>
        page.evaluate((k) => globalThis.sessionStorage.getItem(k), TOKEN_STORAGE_KEY);

      // Loads and asks for the token.
      const nav = await page.goto(`${base}/`);
      assertEquals(nav?.status(), 200);
      await page.waitForSelector('[data-testid="login"]', { state: "visible" });
      assert(!(await page.isVisible("#main")));

      // A wrong token is refused and forgotten.
      await page.fill("#token", "wrong-token");
      await page.click('button[type="submit"]');
      await until(async () => (await text("login-msg"))?.includes("did not accept"), {
        what: "refused",
        everyMs: 25,
      });
      assertEquals(await storedToken(), null);

      // The right token connects; the idle server shows an empty index.
      await page.fill("#token", PASSWORD);
      await page.click('button[type="submit"]');
      await page.waitForSelector("#main", { state: "visible" });
      await until(
        async () => (await text("conn")) === "live" && (await value("total")) === "0",
        { what: "live", everyMs: 25 },
      );
      assertEquals(await value("running"), "false");
      assertEquals(await storedToken(), PASSWORD);

      // Start a run and watch the numbers move.
      const startRes = await fetch(`${base}${STATUS_PATH}`, { method: "POST", headers: f.auth });
      assertEquals(startRes.status, 200);
      await startRes.body?.cancel();
      await until(
        async () =>
          (await value("running")) === "true" && Number(await value("total_imported")) > 0,
        { what: "the page shows the run", everyMs: 25 },
      );
      const first = Number(await value("total_imported"));
      await until(async () => Number(await value("total_imported")) > first, {
        what: "imported grows",
        everyMs: 25,
      });
      const second = Number(await value("total_imported"));
      const during = await adminJson();
      assertEquals(during.running, true, "the run was still going while the page updated");
      assert(second <= during.total_imported, "the page never runs ahead of the server");
      await page.waitForSelector('[data-testid="top"] tr.active', { timeout: 5000 });
      await until(async () => Number(await value("rate")) > 0, { what: "a rate", everyMs: 25 });
      // Text and value read in one go: the page redraws between two separate reads.
      const rate = await page.$eval('[data-testid="rate"]', (el) => ({
        text: el.textContent,
        value: el.getAttribute("data-value"),
      }));
      assertEquals(rate.text, `${formatRate(Number(rate.value))} DIDs/s`);

      // After the run: every number on the page equals the JSON.
      await until(() => !f.backfiller.running, {
        timeoutMs: 120_000,
        what: "the run to end",
        everyMs: 50,
      });
      const json = await adminJson();
      assertEquals(json.running, false);
      assertEquals(json.completed, json.total);
      const keys = ["total", "completed", "in_progress", "failed", "total_imported", "total_new"];
      const shown = async () => {
        const out: Record<string, unknown> = { running: (await value("running")) === "true" };
        for (const k of keys) out[k] = Number(await value(k));
        return out;
      };
      const expectedShown = {
        running: false,
        ...Object.fromEntries(keys.map((k) => [k, json[k]])),
      };
      await until(
        async () => JSON.stringify(await shown()) === JSON.stringify(expectedShown),
        { what: "the page catches up with the finished run", everyMs: 25 },
      ).catch(() => {}); // the assertion below reports the difference
      assertEquals(await shown(), expectedShown);
      assertEquals(await text("running"), "idle");
      assertEquals(await text("total_imported"), formatCount(json.total_imported));
      assertEquals(
        await page.getAttribute('[data-testid="total_imported"]', "title"),
        json.total_imported.toLocaleString("en-US"),
      );
      assertEquals(await text("completed"), String(json.completed));
      assertEquals(await text("percent"), "100.0%");
      assertEquals(await text("rate"), "—");
      assertEquals(await text("eta"), "—");
      const world = f.relay.world;
      assertEquals(
        json.total_imported,
        world.collections().reduce((n, c) => n + world.size(c), 0),
      );

      // The largest collections, biggest first, with the JSON's counts.
      const rows = [];
      for (const tr of await page.locator('[data-testid="top"] tr').all()) {
        rows.push({
          collection: await tr.getAttribute("data-collection"),
          imported: Number(await tr.locator("td.n").first().getAttribute("data-value")),
        });
      }
      const expected = [...json.collections as { collection: string; imported: number }[]]
        .sort((a, b) => b.imported - a.imported || (a.collection < b.collection ? -1 : 1))
        .slice(0, 15)
        .map((c) => ({ collection: c.collection, imported: c.imported }));
      assertEquals(rows, expected);
      assertEquals(rows[0].imported, 2500);
      assert(!(await page.isVisible('[data-testid="failed-section"]')));

      // A reload reconnects from sessionStorage without asking again.
      await page.reload();
      await until(
        async () => (await text("conn")) === "live" && (await value("total")) !== "",
        { what: "reconnected", everyMs: 25 },
      );
      assert(!(await page.isVisible('[data-testid="login"]')));

      // The token never appears in a URL, only in the Authorization header.
      assert(!page.url().includes(PASSWORD), page.url());
      for (const r of requests) assert(!r.url.includes(PASSWORD), r.url);
      const events = requests.filter((r) => new URL(r.url).pathname === STATUS_EVENTS_PATH);
      assert(events.some((r) => r.authorization === `Bearer ${PASSWORD}`), "bearer header sent");

      // Forgetting the token clears it and asks again.
      await page.click('[data-testid="forget"]');
      await page.waitForSelector('[data-testid="login"]', { state: "visible" });
      assertEquals(await storedToken(), null);
      assertEquals(problems, [], "no script errors or CSP violations");
    } finally {
      await browser.close();
      f.shutdown.abort();
      await server.finished;
    }
  },
});

Deno.test("status page in headless Chromium: invalid entries are counted and the collection flagged", async () => {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    throw new Error(`${CHROMIUM} not found: install Chromium (apt-get install -y chromium)`);
  }
  await using f = await fixture({ malformedCollection: 1 });
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", signal: f.shutdown.signal, onListen() {} },
    f.app.fetch,
  );
  const base = `http://127.0.0.1:${server.addr.port}`;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  });
  try {
    await (await f.backfiller.start({ source: parseSource(f.relay.url) })).done;
    const json = await (await fetch(`${base}${STATUS_PATH}`, { headers: f.auth })).json();
    const bad = json.collections.find((c: { invalid: number }) => c.invalid > 0);
    assertEquals([json.flagged, json.total_invalid, bad.invalid], [1, 700, 700]);
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
    await page.goto(`${base}/`);
    await page.fill("#token", PASSWORD);
    await page.click('button[type="submit"]');
    await page.waitForSelector('[data-testid="flagged-section"]', { state: "visible" });
    const value = async (sel: string) => await page.getAttribute(sel, "data-value");
    assertEquals(await value('[data-testid="total_invalid"]'), "700");
    const row = page.locator(
      `[data-testid="flagged-rows"] tr[data-collection="${bad.collection}"]`,
    );
    assertEquals(await row.locator("td.n").first().getAttribute("data-value"), "700");
    assertEquals(await row.locator("td.err").textContent(), bad.warning);
    assertEquals(await page.textContent('[data-testid="index-warning"]'), "");
    assertEquals(problems, []);
  } finally {
    await browser.close();
    f.shutdown.abort();
    await server.finished;
  }
});

/** The browser status page at `GET /` and its live feed, `GET /admin/backfill-collections/events` (SSE). */
import type { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { adminAuth } from "./admin_auth.ts";
import type { Backfiller } from "../run/mod.ts";
import { errorMessage } from "../util/mod.ts";
import type { ProgressStore } from "../progress/mod.ts";
import { buildStatus } from "../status/mod.ts";

/** Where the page reads its events; behind the admin token like the rest of `/admin`. */
export const STATUS_EVENTS_PATH = "/admin/backfill-collections/events";

/** The sessionStorage key the page keeps the admin token under. */
export const TOKEN_STORAGE_KEY = "backfill-admin-token";

/** What the status page needs. */
export interface StatusPageOptions {
  readonly backfiller: Backfiller;
  readonly progress: ProgressStore;
  readonly adminPassword?: string;
  /** Time between status events (default 1000 ms). */
  readonly intervalMs?: number;
  readonly now?: () => number;
  /** Ends every open event stream when it aborts. A graceful `server.shutdown()` waits for open
   * responses and an event stream never ends by itself (`Deno.serve({ signal })` cuts them). */
  readonly signal?: AbortSignal;
}

/** Routes for `createApp({ extend })`: the public page and the admin-only event stream. */
export function statusPageRoutes(opts: StatusPageOptions): (app: Hono) => void {
  const intervalMs = Math.max(10, opts.intervalMs ?? 1000);
  const now = opts.now ?? Date.now;
  let page: Promise<{ html: string; csp: string }> | undefined;
  const open = new Set<{ abort(): void }>();
  // One listener for all streams, so connections do not pile up listeners on a long-lived signal.
  opts.signal?.addEventListener("abort", () => {
    for (const stream of open) stream.abort();
  }, { once: true });
  return (app) => {
    app.get("/", async (c) => {
      const p = await (page ??= renderPage());
      c.header("Content-Security-Policy", p.csp);
      c.header("X-Content-Type-Options", "nosniff");
      c.header("Referrer-Policy", "no-referrer");
      c.header("X-Frame-Options", "DENY");
      c.header("Cache-Control", "no-cache");
      return c.html(p.html);
    });
    app.get(STATUS_EVENTS_PATH, adminAuth(opts.adminPassword), (c) => {
      // Stop nginx-style proxies from buffering the stream.
      c.header("X-Accel-Buffering", "no");
      return streamSSE(c, async (stream) => {
        const { promise: aborted, resolve } = Promise.withResolvers<void>();
        // Fires on client disconnect (the response body is cancelled) and on stream.abort().
        stream.onAbort(resolve);
        if (opts.signal?.aborted) return;
        open.add(stream);
        try {
          let last = "";
          while (!stream.aborted) {
            let data: string;
            try {
              const rows = await opts.progress.list();
              const b = opts.backfiller;
              data = JSON.stringify(buildStatus(rows, b.state, b.running, now()));
            } catch (err) {
              data = "";
              await stream.writeSSE({
                event: "error",
                data: JSON.stringify({ message: `status unavailable: ${errorMessage(err)}` }),
              });
            }
            if (stream.aborted) break;
            if (data !== "" && data !== last) await stream.writeSSE({ event: "status", data });
            // An unchanged document (an idle server) is not worth resending in full.
            else if (data !== "") await stream.write(": keepalive\n\n");
            last = data;
            await sleepUnless(intervalMs, aborted);
          }
        } finally {
          open.delete(stream);
        }
      });
    });
  };
}

async function sleepUnless(ms: number, until: Promise<void>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([until, new Promise((r) => timer = setTimeout(r, ms))]);
  } finally {
    clearTimeout(timer);
  }
}

async function sha256(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return btoa(String.fromCharCode(...new Uint8Array(d)));
}

async function renderPage(): Promise<{ html: string; csp: string }> {
  const csp = [
    "default-src 'self'",
    `script-src 'sha256-${await sha256(SCRIPT)}'`,
    `style-src 'sha256-${await sha256(STYLE)}'`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
  // Replacer functions, so "$&"-style patterns in the inserted text stay literal.
  const html = HTML.replace("/*STYLE*/", () => STYLE).replace("/*SCRIPT*/", () => SCRIPT);
  return { html, csp };
}

const STYLE = `
:root { color-scheme: light dark; --muted: #777; --ok: #2a8a3e; --bad: #c0392b; --live: #1f6feb; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; padding: 1rem; max-width: 70rem; }
h1 { font-size: 1.3rem; margin: 0 0 .5rem; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
header { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: baseline; }
.muted, .sub { color: var(--muted); }
.badge { padding: 0 .5em; border-radius: 1em; border: 1px solid currentColor; }
.badge[data-state="running"], #conn[data-state="live"] { color: var(--ok); }
#conn[data-state="retrying"], #conn[data-state="error"], .err { color: var(--bad); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr)); gap: .5rem; }
.card { border: 1px solid #8884; border-radius: .4rem; padding: .5rem .7rem; }
.card b { display: block; font-size: 1.4rem; font-variant-numeric: tabular-nums; }
progress { width: 100%; height: .9rem; accent-color: var(--live); }
#overall-bar { height: 1.2rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #8883; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.active td:first-child::before { content: "● "; color: var(--live); }
td.err { word-break: break-word; }
form { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; margin: 2rem 0; }
input { font: inherit; padding: .3rem .5rem; min-width: 18rem; }
button { font: inherit; padding: .3rem .8rem; }
`;

// No `${` and no backticks in here: it is a template literal. String.raw keeps "\n" for the browser.
const SCRIPT = String.raw`
"use strict";
const KEY = "backfill-admin-token";
const EVENTS = "/admin/backfill-collections/events";
const TOP = 15, MAX_FAILED = 50, WATCHDOG_MS = 30000, MAX_BACKOFF_MS = 30000;
const $ = (id) => document.getElementById(id);
let ctrl = null, retryTimer = 0, watchdog = 0, backoff = 1000;

// Same rules as lib/status/format.ts, so the page and the CLI agree.
function formatCount(n) {
  if (!Number.isFinite(n)) return "?";
  if (n < 0) return "-" + formatCount(-n);
  if (Math.round(n) < 1000) return String(Math.round(n));
  const units = [["k", 1e3], ["M", 1e6], ["B", 1e9], ["T", 1e12]];
  for (let i = 0; i < units.length; i++) {
    const x = n / units[i][1];
    let t = x < 99.95 ? x.toFixed(1) : x.toFixed(0);
    if (t.endsWith(".0")) t = t.slice(0, -2);
    if (Number(t) < 1000 || i === units.length - 1) return t + units[i][0];
  }
  return String(n);
}
function formatRate(r) {
  if (!Number.isFinite(r)) return "?";
  if (Math.abs(r) >= 9.95) return formatCount(r);
  const t = r.toFixed(1);
  return t.endsWith(".0") ? t.slice(0, -2) : t;
}
function pad2(n) { return String(n).padStart(2, "0"); }
function formatDuration(sec) {
  if (!Number.isFinite(sec) || sec < 0) return "?";
  const s = Math.round(sec);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + pad2(s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + pad2(Math.floor(s / 60) % 60) + "m";
  return Math.floor(s / 86400) + "d " + pad2(Math.floor(s / 3600) % 24) + "h";
}
function formatPercent(f) {
  if (!Number.isFinite(f)) return "?%";
  const t = (f * 100).toFixed(1);
  return f < 1 && Number(t) >= 100 ? "99.9%" : t + "%";
}
function exact(n) { return typeof n === "number" ? n.toLocaleString("en-US") : ""; }

// Server data only ever reaches the DOM through textContent and attributes.
function put(id, text, value, title) {
  const el = $(id);
  el.textContent = text;
  el.dataset.value = value === undefined || value === null ? "" : String(value);
  if (title !== undefined) el.title = title;
}
function count(id, n) { put(id, formatCount(n), n, exact(n)); }
function cell(tr, text, cls, title) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  if (title) td.title = title;
  tr.append(td);
  return td;
}

function render(s) {
  const run = s.run;
  put("running", s.running ? "running" : "idle", s.running);
  $("running").dataset.state = s.running ? "running" : "idle";
  // Idle: the source the stored progress came from.
  const sources = Array.from(new Set(s.collections.map((c) => c.source)));
  const source = run ? run.source : sources.length === 0
    ? ""
    : sources[0] + (sources.length > 1 ? " (+" + (sources.length - 1) + " more)" : "");
  put("source", source || "—", source);
  put("mode", run ? run.mode : "—", run ? run.mode : "");
  count("total", s.total);
  count("completed", s.completed);
  count("in_progress", s.in_progress);
  count("failed", s.failed);
  count("total_imported", s.total_imported);
  count("total_new", s.total_new);
  const frac = s.total > 0 ? s.completed / s.total : 0;
  $("overall-bar").value = frac;
  put("percent", s.total > 0 ? formatPercent(frac) : "—", frac);
  put("rate", run ? formatRate(run.dids_per_sec) + " DIDs/s" : "—", run ? run.dids_per_sec : "");
  put(
    "eta",
    run ? (run.eta_seconds === null ? "unknown" : formatDuration(run.eta_seconds)) : "—",
    run ? run.eta_seconds : "",
  );
  $("run-line").textContent = run
    ? "this run: " + formatCount(run.imported) + " imported (" + formatCount(run.new) + " new), " +
      formatCount(run.pages) + " pages, " + run.finished + "/" + run.queued + " collections done, " +
      "started " + new Date(run.started_at).toLocaleString()
    : "";

  const top = s.collections.slice()
    .sort((a, b) => b.imported - a.imported || (a.collection < b.collection ? -1 : 1))
    .slice(0, TOP);
  const rows = top.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.collection = c.collection;
    if (c.active) tr.className = "active";
    cell(tr, c.collection);
    const est = c.estimated_total;
    cell(tr, formatCount(c.imported), "n", exact(c.imported)).dataset.value = String(c.imported);
    cell(tr, est === undefined ? "?" : formatCount(est), "n", exact(est));
    const bar = document.createElement("progress");
    if (c.completed) bar.value = 1;
    else if (est) bar.value = Math.min(1, c.imported / est);
    else bar.removeAttribute("value");
    cell(tr, "").append(bar);
    cell(tr, c.active ? "in flight" : c.completed ? "done" : c.error ? "failed" : "pending");
    return tr;
  });
  $("top").replaceChildren(...rows);

  const failed = s.collections.filter((c) => !c.completed && !c.active && c.error);
  $("failed-section").hidden = failed.length === 0;
  $("failed-rows").replaceChildren(...failed.slice(0, MAX_FAILED).map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.collection = c.collection;
    cell(tr, c.collection);
    cell(tr, String(c.attempts), "n");
    cell(tr, c.error, "err");
    cell(tr, c.next_retry_at ? new Date(c.next_retry_at).toLocaleString() : "—");
    return tr;
  }));
  $("failed-more").textContent = failed.length > MAX_FAILED
    ? "and " + (failed.length - MAX_FAILED) + " more"
    : "";
  $("server-error").textContent = "";
}

function setConn(state, text) {
  $("conn").dataset.state = state;
  $("conn").textContent = text;
}
function heard() {
  const t = new Date();
  put("updated", t.toLocaleTimeString(), t.toISOString());
}
function onFrame(frame, c) {
  let event = "message";
  const data = [];
  for (const line of frame.split("\n")) {
    if (line === "" || line[0] === ":") continue;
    const k = line.indexOf(":");
    const field = k < 0 ? line : line.slice(0, k);
    let v = k < 0 ? "" : line.slice(k + 1);
    if (v[0] === " ") v = v.slice(1);
    if (field === "event") event = v;
    else if (field === "data") data.push(v);
  }
  clearTimeout(watchdog);
  watchdog = setTimeout(() => c.abort(), WATCHDOG_MS);
  backoff = 1000;
  heard();
  if (event === "status" && data.length) render(JSON.parse(data.join("\n")));
  else if (event === "error" && data.length) {
    $("server-error").textContent = JSON.parse(data.join("\n")).message;
  }
}
async function readEvents(body, c) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buf = (buf + value).replace(/\r\n?/g, "\n");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      onFrame(frame, c);
    }
  }
}

function disconnect() {
  const c = ctrl;
  ctrl = null;
  if (c) c.abort();
  clearTimeout(retryTimer);
  clearTimeout(watchdog);
}
function showLogin(msg) {
  disconnect();
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-msg").textContent = msg || "";
  $("token").value = "";
  $("token").focus();
}
async function connect() {
  disconnect();
  const token = sessionStorage.getItem(KEY);
  if (!token) return showLogin("");
  $("login").hidden = true;
  $("main").hidden = false;
  const c = new AbortController();
  ctrl = c;
  setConn("connecting", "connecting…");
  try {
    const res = await fetch(EVENTS, {
      headers: { "authorization": "Bearer " + token, "accept": "text/event-stream" },
      cache: "no-store",
      signal: c.signal,
    });
    if (ctrl !== c) return;
    if (res.status === 401) {
      sessionStorage.removeItem(KEY);
      return showLogin("The server did not accept that token.");
    }
    if (res.status === 403) throw new Error("the admin API is not configured on this server");
    if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
    setConn("live", "live");
    await readEvents(res.body, c);
    throw new Error("the server closed the stream");
  } catch (err) {
    if (ctrl !== c) return; // forgotten or superseded
    const wait = Math.round(backoff * (0.75 + Math.random() / 2));
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    const why = c.signal.aborted ? "no data for a while" : (err && err.message) || String(err);
    setConn("retrying", "disconnected (" + why + "), retrying in " + Math.ceil(wait / 1000) + "s");
    clearTimeout(watchdog);
    retryTimer = setTimeout(connect, wait);
  }
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = $("token").value.trim();
  if (!token) return showLogin("Enter the admin token.");
  sessionStorage.setItem(KEY, token);
  $("token").value = "";
  backoff = 1000;
  connect();
});
$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  showLogin("Token forgotten.");
});
connect();
`;

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>backfill status</title>
<style>/*STYLE*/</style>
</head>
<body>
<h1>backfill status</h1>
<form id="login" method="post" action="/" hidden data-testid="login">
  <label for="token">Admin token</label>
  <input id="token" type="password" autocomplete="off" spellcheck="false" required>
  <button type="submit">Connect</button>
  <p id="login-msg" class="err" data-testid="login-msg"></p>
  <p class="muted">Kept in this tab's session storage only and sent as a bearer header.</p>
</form>
<main id="main" hidden>
  <header>
    <span id="running" class="badge" data-testid="running">…</span>
    <span>source <b id="source" data-testid="source">—</b></span>
    <span>mode <b id="mode" data-testid="mode">—</b></span>
    <span class="muted">updated <span id="updated" data-testid="updated">never</span></span>
    <span id="conn" data-testid="conn">…</span>
    <button id="forget" type="button" data-testid="forget">Forget token</button>
  </header>
  <p id="server-error" class="err" data-testid="server-error"></p>
  <h2>Collections: <span id="completed" data-testid="completed">?</span> of
    <span id="total" data-testid="total">?</span> complete
    (<span id="percent" data-testid="percent">?</span>)</h2>
  <progress id="overall-bar" max="1" value="0" data-testid="overall-bar"></progress>
  <p id="run-line" class="sub" data-testid="run-line"></p>
  <div class="cards">
    <div class="card">DIDs imported<b id="total_imported" data-testid="total_imported">?</b></div>
    <div class="card">new in the index<b id="total_new" data-testid="total_new">?</b></div>
    <div class="card">rate<b id="rate" data-testid="rate">—</b></div>
    <div class="card">ETA<b id="eta" data-testid="eta">—</b></div>
    <div class="card">in progress<b id="in_progress" data-testid="in_progress">?</b></div>
    <div class="card">failed<b id="failed" data-testid="failed">?</b></div>
  </div>
  <h2>Largest collections</h2>
  <table>
    <thead><tr><th>collection</th><th>imported</th><th>estimated</th><th>progress</th><th>state</th></tr></thead>
    <tbody id="top" data-testid="top"></tbody>
  </table>
  <section id="failed-section" hidden data-testid="failed-section">
    <h2>Failed</h2>
    <table>
      <thead><tr><th>collection</th><th>attempts</th><th>last error</th><th>next retry</th></tr></thead>
      <tbody id="failed-rows"></tbody>
    </table>
    <p id="failed-more" class="muted"></p>
  </section>
</main>
<script>/*SCRIPT*/</script>
</body>
</html>
`;

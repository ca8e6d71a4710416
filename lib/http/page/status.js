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
function pad2(n) {
  return String(n).padStart(2, "0");
}
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
function exact(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : "";
}

// Server data only ever reaches the DOM through textContent and attributes.
function put(id, text, value, title) {
  const el = $(id);
  el.textContent = text;
  el.dataset.value = value === undefined || value === null ? "" : String(value);
  if (title !== undefined) el.title = title;
}
function count(id, n) {
  put(id, formatCount(n), n, exact(n));
}
function cell(tr, text, cls, title) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  if (title) td.title = title;
  tr.append(td);
  return td;
}

function renderLive(l) {
  $("live-section").hidden = !l;
  if (!l) return;
  put("live-state", l.connected ? "connected" : "disconnected", l.connected);
  $("live-state").dataset.state = l.connected ? "running" : "idle";
  put("live-url", l.kind + " " + l.url + (l.event_time ? ", last event " + l.event_time : ""));
  put("live-cursor", l.cursor === null ? "—" : String(l.cursor), l.cursor);
  put(
    "live-lag",
    l.lag_seconds === null ? "—" : formatDuration(l.lag_seconds),
    l.lag_seconds,
    l.lag_p99_seconds === null ? "" : "p99 " + l.lag_p99_seconds + " s",
  );
  put("live-rate", formatRate(l.events_per_sec), l.events_per_sec);
  count("live-added", l.pairs_added);
  count("live-removed", l.pairs_removed);
  count("live-reconnects", l.reconnects);
  put(
    "live-catchup",
    l.catch_up_needed ? "catch-up backfill needed: " + (l.catch_up_reason || "") : "",
    l.catch_up_needed,
  );
  put("live-error", l.last_error ? "last error: " + l.last_error : "", l.last_error);
}

function render(s) {
  renderLive(s.live);
  const run = s.run;
  put("running", s.running ? "running" : "idle", s.running);
  $("running").dataset.state = s.running ? "running" : "idle";
  // Idle: the source the stored progress came from.
  const sources = Array.from(new Set(s.collections.map((c) => c.source)));
  const source = run
    ? run.source
    : sources.length === 0
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
      formatCount(run.pages) + " pages, " + run.finished + "/" + run.queued +
      " collections done, " +
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
  $("failed-rows").replaceChildren(
    ...failed.slice(0, MAX_FAILED).map((c) => {
      const tr = document.createElement("tr");
      tr.dataset.collection = c.collection;
      cell(tr, c.collection);
      cell(tr, String(c.attempts), "n");
      cell(tr, c.error, "err");
      cell(tr, c.next_retry_at ? new Date(c.next_retry_at).toLocaleString() : "—");
      return tr;
    }),
  );
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

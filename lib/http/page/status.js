// The status page's script. The server puts it in the page after KEY and EVENTS and after the
// shared modules it uses: lib/status/format.js (formatCount, formatRate, formatDuration,
// formatPercent), lib/status/state.js (collectionState) and lib/util/async.js (retry).
const TOP = 15, MAX_FAILED = 50, WATCHDOG_MS = 30000;
// 1 s doubling to 30 s, each ±25 %.
const RECONNECT = { minTimeout: 1250, maxTimeout: 37500, multiplier: 2, jitter: 0.4 };
const STATE_LABELS = {
  completed: "done",
  active: "in flight",
  failed: "failed",
  pending: "pending",
};
const $ = (id) => document.getElementById(id);
let session = null, watchdog = 0;

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
  count("live-proof-removed", l.pairs_removed_by_proof);
  count("live-first-record", l.pairs_added_by_first_record);
  const kept = l.deletes_kept_by_reason || {};
  const keptTotal = Object.values(kept).reduce((a, b) => a + b, 0);
  put(
    "live-kept",
    formatCount(keptTotal),
    keptTotal,
    Object.entries(kept).map(([r, n]) => r + ": " + n).join(", "),
  );
  renderDeletes(l.collections || {});
  count("live-reconnects", l.reconnects);
  put(
    "live-catchup",
    l.catch_up_needed ? "catch-up backfill needed: " + (l.catch_up_reason || "") : "",
    l.catch_up_needed,
  );
  put("live-error", l.last_error ? "last error: " + l.last_error : "", l.last_error);
}

/** The collections where proofs removed, added or kept the most (issue 13), at most 15. */
function renderDeletes(collections) {
  const rows = Object.entries(collections).map(([name, c]) => {
    const kept = Object.values(c.deletes_kept || {}).reduce((a, b) => a + b, 0);
    return { name, c, kept, weight: c.removed_by_proof + c.added_by_first_record + kept };
  }).filter((r) => r.weight > 0).sort((a, b) => b.weight - a.weight).slice(0, 15);
  $("live-deletes").hidden = rows.length === 0;
  const body = $("live-deletes").querySelector("tbody");
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.collection = r.name;
    cell(tr, r.name);
    cell(tr, formatCount(r.c.removed_by_proof), "n", exact(r.c.removed_by_proof));
    cell(tr, formatCount(r.c.added_by_first_record), "n", exact(r.c.added_by_first_record));
    cell(
      tr,
      formatCount(r.kept),
      "n",
      Object.entries(r.c.deletes_kept || {}).map(([k, n]) => k + ": " + n).join(", "),
    );
    body.append(tr);
  }
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
  count("total_invalid", s.total_invalid);
  put(
    "index-warning",
    s.index && s.index.reimport > 0
      ? "The index was found missing or replaced at " +
        new Date(s.index.replaced_at).toLocaleString() + ": " + s.index.reimport +
        " collections wait to be imported again."
      : "",
    s.index ? s.index.reimport : "",
  );
  const frac = s.total > 0 ? s.completed / s.total : 0;
  $("overall-bar").value = frac;
  put("percent", s.total > 0 ? formatPercent(frac) : "—", frac);
  put("rate", run ? formatRate(run.dids_per_sec) + " DIDs/s" : "—", run ? run.dids_per_sec : "");
  put(
    "eta",
    run ? (run.eta_seconds === null ? "unknown" : formatDuration(run.eta_seconds)) : "—",
    run ? run.eta_seconds : "",
  );
  $("run-line").textContent = run && run.phase === "planning"
    ? "run " + run.id + " is planning: discovering collections (started " +
      new Date(run.started_at).toLocaleString() + ")"
    : run
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
    const state = c.reimport && !c.active ? "re-import" : STATE_LABELS[collectionState(c)];
    cell(tr, c.invalid > 0 ? state + ", flagged" : state, "", c.warning);
    return tr;
  });
  $("top").replaceChildren(...rows);

  const failed = s.collections.filter((c) => collectionState(c) === "failed");
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
  const flagged = s.collections.filter((c) => c.invalid > 0);
  $("flagged-section").hidden = flagged.length === 0;
  $("flagged-rows").replaceChildren(
    ...flagged.slice(0, MAX_FAILED).map((c) => {
      const tr = document.createElement("tr");
      tr.dataset.collection = c.collection;
      cell(tr, c.collection);
      cell(tr, formatCount(c.invalid), "n", exact(c.invalid)).dataset.value = String(c.invalid);
      cell(tr, formatCount(c.imported), "n", exact(c.imported));
      cell(tr, c.warning || "", "err");
      return tr;
    }),
  );
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
function onFrame(frame, watchdogCtl) {
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
  watchdog = setTimeout(() => watchdogCtl.abort(), WATCHDOG_MS);
  heard();
  if (event === "status" && data.length) render(JSON.parse(data.join("\n")));
  else if (event === "error" && data.length) {
    $("server-error").textContent = JSON.parse(data.join("\n")).message;
  }
}
async function readEvents(body, onFrame) {
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
      onFrame(frame);
    }
  }
}

function disconnect() {
  const s = session;
  session = null;
  if (s) s.abort();
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

/** The server refused the token: ask for another instead of retrying. */
class Refused extends Error {}

/** Connects and stays connected, reconnecting with the shared retry policy, until disconnect(). */
function connect() {
  disconnect();
  const token = sessionStorage.getItem(KEY);
  if (!token) return showLogin("");
  $("login").hidden = true;
  $("main").hidden = false;
  const s = new AbortController();
  session = s;
  retry((attempt) => listen(token, s.signal, attempt), {
    ...RECONNECT,
    signal: s.signal,
    maxAttempts: Infinity,
    isRetriable: (err) => !(err instanceof Refused),
    onRetry: (err, _failures, wait) => {
      clearTimeout(watchdog);
      const why = (err && err.message) || String(err);
      setConn(
        "retrying",
        "disconnected (" + why + "), retrying in " + Math.ceil(wait / 1000) + "s",
      );
    },
  }).catch((err) => {
    if (session !== s) return; // forgotten or superseded
    sessionStorage.removeItem(KEY);
    showLogin(err.message);
  });
}

/** One connection to the event stream; it always ends by throwing. Data resets the backoff. */
async function listen(token, sessionSignal, attempt) {
  // Aborted by the watchdog when the server goes quiet, or with the session.
  const c = new AbortController();
  const onEnd = () => c.abort();
  sessionSignal.addEventListener("abort", onEnd, { once: true });
  setConn("connecting", "connecting…");
  try {
    const res = await fetch(EVENTS, {
      headers: { "authorization": "Bearer " + token, "accept": "text/event-stream" },
      cache: "no-store",
      signal: c.signal,
    });
    if (res.status === 401) throw new Refused("The server did not accept that token.");
    if (res.status === 403) throw new Error("the admin API is not configured on this server");
    if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
    setConn("live", "live");
    await readEvents(res.body, (frame) => {
      attempt.reset();
      onFrame(frame, c);
    });
    throw new Error("the server closed the stream");
  } catch (err) {
    if (c.signal.aborted && !sessionSignal.aborted) throw new Error("no data for a while");
    throw err;
  } finally {
    sessionSignal.removeEventListener("abort", onEnd);
  }
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = $("token").value.trim();
  if (!token) return showLogin("Enter the admin token.");
  sessionStorage.setItem(KEY, token);
  $("token").value = "";
  connect();
});
$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  showLogin("Token forgotten.");
});
connect();

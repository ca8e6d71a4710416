/** The `status` summary: headline, totals, incomplete and failed collections. */
import {
  collectionState,
  type CollectionStatus,
  formatCount,
  formatDuration,
  formatPercent,
  formatRate,
  formatTable,
  type RunStatus,
  type StatusDocument,
  truncate,
} from "../status/mod.ts";

import { clip, formatTime, plural } from "./text.ts";

const LIST_LIMIT = 20;

type LiveStatus = NonNullable<StatusDocument["live"]>;

/** The summary's lines at time `now`. */
export function renderStatus(s: StatusDocument, now: number): string[] {
  const lines = [headline(s, now), ...totals(s)];
  const incomplete = incompleteCollections(s.collections);
  if (incomplete.length > 0) {
    lines.push("", `incomplete collections (${incomplete.length}):`);
    lines.push(...limited(incomplete.map(incompleteRow)));
  }
  const failed = failedCollections(s.collections);
  if (failed.length > 0) {
    lines.push("", `FAILED collections (${failed.length}):`);
    lines.push(...limited(failed.map((c) => failedRow(c, now))));
  }
  const flagged = s.collections.filter((c) => (c.invalid ?? 0) > 0);
  if (flagged.length > 0) {
    lines.push("", `FLAGGED collections (${flagged.length}), entries that were not DIDs:`);
    lines.push(...limited(flagged.map((c) => [
      truncate(c.collection, 60),
      `${formatCount(c.invalid ?? 0)} invalid`,
      `${formatCount(c.imported)} DIDs imported`,
      `fetch it again: status reset ${c.collection}, then status start`,
    ])));
  }
  return lines;
}

function headline(s: StatusDocument, now: number): string {
  if (s.running && s.run) {
    const r = s.run;
    const since = Date.parse(r.started_at);
    const ago = Number.isNaN(since) ? "" : ` (${formatDuration((now - since) / 1000)} ago)`;
    const what = r.phase === "planning" ? "backfill planning" : "backfill running";
    const id = r.id ? ` · run ${r.id}` : "";
    return `${what}: ${r.mode} from ${r.source}, started ${formatTime(r.started_at)}${ago}${id}`;
  }
  if (s.running) return "backfill running";
  if (s.total > 0 && s.completed === s.total) return "backfill idle: all collections are done";
  return "backfill idle: no run in progress";
}

function totals(s: StatusDocument): string[] {
  const done = s.total > 0 ? ` (${formatPercent(s.completed / s.total)})` : "";
  const rows = [
    [
      "collections",
      `${s.completed}/${s.total} done${done} · ${s.in_progress} in progress · ${s.failed} failed`,
    ],
    [
      "DIDs",
      `${formatCount(s.total_imported)} imported · ${formatCount(s.total_new)} new` +
      (s.total_invalid ? ` · ${formatCount(s.total_invalid)} invalid entries skipped` : ""),
    ],
  ];
  if (s.index && s.index.reimport > 0) {
    rows.push([
      "INDEX REPLACED",
      `found missing or replaced at ${formatTime(s.index.replaced_at ?? "")}; ${
        plural(s.index.reimport, "collection")
      } waiting to be imported again`,
    ]);
  }
  if (s.running && s.run) rows.push(["rate", rateText(s.run)]);
  if (s.live) rows.push(...liveRows(s.live));
  return formatTable(rows);
}

/** The live stream: state, cursor, lag, rate, pairs; a catch-up that is needed; the last error. */
function liveRows(l: LiveStatus): string[][] {
  const lag = l.lag_seconds === null ? "?" : formatDuration(l.lag_seconds);
  const p99 = l.lag_p99_seconds === null ? "" : ` (p99 ${formatDuration(l.lag_p99_seconds)})`;
  const rows = [
    [
      "live",
      `${l.connected ? "connected" : "DISCONNECTED"} ${l.kind} ${l.url} · cursor ${
        l.cursor ?? "none"
      } · lag ${lag}${p99} · ${formatRate(l.events_per_sec)} events/s`,
    ],
    [
      "live pairs",
      `${formatCount(l.pairs_added)} added · ${formatCount(l.pairs_removed)} removed · ${
        formatCount(l.accounts_deleted)
      } accounts deleted · ${l.reconnects} reconnects`,
    ],
  ];
  const kept = Object.entries(l.deletes_kept_by_reason);
  rows.push([
    "live proofs",
    `${formatCount(l.pairs_removed_by_proof)} removed by proof · ${
      formatCount(l.pairs_added_by_first_record)
    } first records · deletes kept for want of proof: ${
      kept.length === 0 ? "none" : kept.map(([r, n]) => `${r} ${formatCount(n)}`).join(", ")
    }`,
  ]);
  if (l.catch_up_needed) rows.push(["CATCH-UP NEEDED", l.catch_up_reason ?? "events were missed"]);
  if (l.last_error) rows.push(["live error", clip(l.last_error, 200)]);
  return rows;
}

/** "120 DIDs/s · 3 pages/s of up to 10k DIDs · ETA 5m 03s". */
export function rateText(r: RunStatus): string {
  const parts = [`${formatRate(r.dids_per_sec)} DIDs/s`];
  // NaN: the server did not say; a page limit of 0: an older server, or nothing paged yet.
  if (!Number.isNaN(r.pages_per_sec)) {
    const size = r.page_limit > 0 ? ` of up to ${formatCount(r.page_limit)} DIDs` : "";
    parts.push(`${formatRate(r.pages_per_sec)} pages/s${size}`);
  }
  parts.push(`ETA ${formatDuration(r.eta_seconds ?? NaN)}`);
  return parts.join(" · ");
}

function incompleteCollections(all: CollectionStatus[]): CollectionStatus[] {
  const incomplete = (c: CollectionStatus) => ["active", "pending"].includes(collectionState(c));
  return all.filter(incomplete).sort((a, b) =>
    Number(b.active) - Number(a.active) || b.imported - a.imported ||
    a.collection.localeCompare(b.collection)
  );
}

function failedCollections(all: CollectionStatus[]): CollectionStatus[] {
  return all.filter((c) => collectionState(c) === "failed").sort((a, b) =>
    b.attempts - a.attempts || a.collection.localeCompare(b.collection)
  );
}

function incompleteRow(c: CollectionStatus): string[] {
  const flags: string[] = [collectionState(c)];
  if (c.attempts > 1) flags.push(`attempt ${c.attempts}`);
  if (c.error) flags.push(`last error: ${clip(c.error, 60)}`);
  if (c.reimport) flags.push("re-import after the index was lost");
  return [truncate(c.collection, 60), progressText(c), flags.join(" · ")];
}

function progressText(c: CollectionStatus): string {
  const total = c.estimated_total;
  if (!total) return `${formatCount(c.imported)} DIDs`;
  return `${formatCount(c.imported)} / ${formatCount(total)} (${
    formatPercent(c.imported / total)
  })`;
}

function failedRow(c: CollectionStatus, now: number): string[] {
  return [
    truncate(c.collection, 60),
    plural(c.attempts, "attempt"),
    retryText(c.next_retry_at, now),
    clip(c.error ?? "", 120),
  ];
}

function retryText(nextRetryAt: string | undefined, now: number): string {
  const at = nextRetryAt ? Date.parse(nextRetryAt) : NaN;
  if (Number.isNaN(at)) return "no retry scheduled";
  return at <= now ? "retry due" : `retry in ${formatDuration((at - now) / 1000)}`;
}

/** Keeps the first {@link LIST_LIMIT} rows of a long list and says how many were left out. */
function limited(rows: string[][]): string[] {
  const lines = formatTable(rows.slice(0, LIST_LIMIT), "  ");
  if (rows.length > LIST_LIMIT) lines.push(`  … and ${rows.length - LIST_LIMIT} more`);
  return lines;
}

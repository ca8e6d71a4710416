/** A small Prometheus registry: labelled counters, gauges and histograms, rendered as text format 0.0.4. */

type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return "";
  return "{" + keys.map((k) => `${k}="${escapeLabel(labels[k])}"`).join(",") + "}";
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function fmt(n: number): string {
  return Number.isFinite(n) ? String(n) : n > 0 ? "+Inf" : n < 0 ? "-Inf" : "NaN";
}

interface Metric {
  render(): string[];
}

/** A monotonically increasing labelled counter. */
export class Counter implements Metric {
  readonly #values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}
  /** Adds `n` (default 1) to the series with these labels. */
  inc(labels: Labels = {}, n = 1): void {
    const k = labelKey(labels);
    this.#values.set(k, (this.#values.get(k) ?? 0) + n);
  }
  /** Current value of one series. */
  get(labels: Labels = {}): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, v] of this.#values) out.push(`${this.name}${k} ${fmt(v)}`);
    return out;
  }
}

/** A gauge whose series are read when scraped. */
export class Gauge implements Metric {
  #series: [Labels, number][] = [];
  constructor(readonly name: string, readonly help: string) {}
  /** Replaces every series. */
  setAll(series: [Labels, number][]): void {
    this.#series = series;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const [l, v] of this.#series) out.push(`${this.name}${labelKey(l)} ${fmt(v)}`);
    return out;
  }
}

/** A labelled histogram with fixed buckets. */
export class Histogram implements Metric {
  readonly #series = new Map<
    string,
    { labels: Labels; counts: number[]; sum: number; count: number }
  >();
  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[]) {}
  /** Records one observation. */
  observe(labels: Labels, v: number): void {
    const k = labelKey(labels);
    let s = this.#series.get(k);
    if (!s) {
      this.#series.set(
        k,
        s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 },
      );
    }
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) s.counts[i]++;
    s.sum += v;
    s.count++;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const s of this.#series.values()) {
      this.buckets.forEach((b, i) =>
        out.push(`${this.name}_bucket${labelKey({ ...s.labels, le: fmt(b) })} ${s.counts[i]}`)
      );
      out.push(`${this.name}_bucket${labelKey({ ...s.labels, le: "+Inf" })} ${s.count}`);
      out.push(`${this.name}_sum${labelKey(s.labels)} ${fmt(s.sum)}`);
      out.push(`${this.name}_count${labelKey(s.labels)} ${s.count}`);
    }
    return out;
  }
}

/** Live stream figures exported as gauges: status field → [metric name, help]. */
export const LIVE_FIGURES = {
  connected: ["backfill_live_connected", "1 while the live stream is connected."],
  cursor: ["backfill_live_cursor", "The last durable live stream cursor (seq or time_us)."],
  lag_seconds: ["backfill_live_lag_seconds", "Now minus the last durable event's time."],
  lag_p99_seconds: [
    "backfill_live_lag_p99_seconds",
    "99th percentile of durable time minus event time, last 10k events.",
  ],
  events_per_sec: ["backfill_live_events_per_second", "Live events made durable per second."],
  events: ["backfill_live_events_total", "Live stream messages handled since start."],
  pairs_added: ["backfill_live_pairs_added_total", "Pairs live indexing added to the index."],
  pairs_removed: ["backfill_live_pairs_removed_total", "Pairs live indexing removed."],
  pairs_removed_by_proof: [
    "backfill_live_pairs_removed_by_proof_total",
    "Pairs removed because a commit proved the repo's last record in the collection deleted.",
  ],
  pairs_added_by_first_record: [
    "backfill_live_pairs_added_by_first_record_total",
    "Pairs added whose commit proved the repo's first record in the collection.",
  ],
  accounts_deleted: ["backfill_live_accounts_deleted_total", "Deleted accounts removed."],
  reconnects: ["backfill_live_reconnects_total", "Live stream reconnections since start."],
  queue_overflows: [
    "backfill_live_queue_overflows_total",
    "Reconnections because messages came faster than they were indexed (resumed from the cursor).",
  ],
  outdated_cursor: [
    "backfill_live_outdated_cursor_total",
    "Times the relay no longer held the cursor (OutdatedCursor).",
  ],
  catch_up_needed: ["backfill_live_catch_up_needed", "1 when a catch-up backfill is needed."],
} as const;

/** A live figure's key. */
export type LiveFigure = keyof typeof LIVE_FIGURES;

/** The service's metrics. */
export class Metrics {
  readonly pages = new Counter(
    "backfill_pages_total",
    "Pages fetched from the source and written.",
  );
  readonly dids = new Counter(
    "backfill_dids_imported_total",
    "DIDs imported (distinct per collection).",
  );
  readonly new = new Counter(
    "backfill_dids_new_total",
    "Imported DIDs the index did not hold before.",
  );
  readonly invalidDids = new Counter(
    "backfill_dids_invalid_total",
    "Entries skipped as invalid DIDs.",
  );
  readonly responses = new Counter(
    "backfill_source_responses_total",
    "Source responses by status.",
  );
  readonly latency = new Histogram(
    "backfill_source_request_seconds",
    "Source request latency.",
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  );
  readonly limiterWait = new Gauge(
    "backfill_rate_limiter_wait_seconds_total",
    "Time requests spent waiting on the per-host rate limiter.",
  );
  readonly throttles = new Gauge("backfill_source_throttled_total", "429 answers seen, per host.");
  readonly collections = new Gauge("backfill_collections", "Collections by state.");
  readonly indexBytes = new Gauge(
    "backfill_index_size_bytes",
    "Approximate on-disk size of the index.",
  );
  readonly pageKeys = new Gauge(
    "backfill_index_page_keys_total",
    "Keys backfill pages looked up in the index, by how: read from LevelDB, or skipped " +
      "(a collection this process created had never written them).",
  );
  readonly running = new Gauge("backfill_running", "1 while a backfill runs.");
  readonly collectionInvalid = new Gauge(
    "backfill_collection_invalid_entries",
    "Entries skipped as invalid DIDs, per flagged collection (only those with any).",
  );
  readonly reimport = new Gauge(
    "backfill_collections_reimport_pending",
    "Collections waiting to be imported again because the index was lost or replaced.",
  );
  /** The live stream's figures, set at scrape time from its status. */
  readonly live: Readonly<Record<LiveFigure, Gauge>> = Object.fromEntries(
    Object.entries(LIVE_FIGURES).map(([k, [name, help]]) => [k, new Gauge(name, help)]),
  ) as Record<LiveFigure, Gauge>;
  readonly liveSkipped = new Gauge(
    "backfill_live_skipped_total",
    "Live stream events counted and skipped, by kind.",
  );
  readonly liveCollection = new Gauge(
    "backfill_live_pairs_total",
    "Pairs live indexing changed, per collection: added, removed, and of those " +
      "added_by_first_record and removed_by_proof.",
  );
  readonly liveKept = new Gauge(
    "backfill_live_deletes_kept_total",
    "Delete ops that removed nothing for want of proof, per collection and reason.",
  );

  /** Renders every metric in Prometheus text format. */
  render(): string {
    const all: Metric[] = [
      this.pages,
      this.dids,
      this.new,
      this.invalidDids,
      this.responses,
      this.latency,
      this.limiterWait,
      this.throttles,
      this.collections,
      this.indexBytes,
      this.pageKeys,
      this.running,
      this.collectionInvalid,
      this.reimport,
      ...Object.values(this.live),
      this.liveSkipped,
      this.liveCollection,
      this.liveKept,
    ];
    return all.flatMap((m) => m.render()).join("\n") + "\n";
  }
}

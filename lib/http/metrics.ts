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
  readonly newDids = new Counter(
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
  readonly running = new Gauge("backfill_running", "1 while a backfill runs.");

  /** Renders every metric in Prometheus text format. */
  render(): string {
    const all: Metric[] = [
      this.pages,
      this.dids,
      this.newDids,
      this.invalidDids,
      this.responses,
      this.latency,
      this.limiterWait,
      this.throttles,
      this.collections,
      this.indexBytes,
      this.running,
    ];
    return all.flatMap((m) => m.render()).join("\n") + "\n";
  }
}

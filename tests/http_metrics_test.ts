/** Tests for lib/http/metrics.ts: the rendered text parses as Prometheus exposition format 0.0.4. */
import { assert, assertEquals } from "./_assert.ts";
import { Counter, Gauge, Histogram, LIVE_FIGURES, Metrics } from "../lib/http/metrics.ts";

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL_NAME = "[a-zA-Z_][a-zA-Z0-9_]*";
const LABEL_VALUE = String.raw`"(?:[^"\\\n]|\\[\\"n])*"`;
const LABEL = `${LABEL_NAME}=${LABEL_VALUE}`;
const VALUE = String.raw`(?:[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]Inf|NaN)`;
const SAMPLE_RE = new RegExp(`^(${NAME})(\\{(?:${LABEL}(?:,${LABEL})*)?\\})? (${VALUE})$`);
const LABEL_RE = new RegExp(`(${LABEL_NAME})=(${LABEL_VALUE})`, "g");

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

function unescape(quoted: string): string {
  return quoted.slice(1, -1).replace(/\\(["\\n])/g, (_, c) => (c === "n" ? "\n" : c));
}

function parseValue(v: string): number {
  if (v === "+Inf") return Infinity;
  if (v === "-Inf") return -Infinity;
  return Number(v);
}

/** A strict parser: throws on any line that is not HELP, TYPE or a sample of the current family. */
function parseExposition(text: string): Family[] {
  if (!text.endsWith("\n")) throw new Error("exposition must end with a newline");
  const families: Family[] = [];
  const seen = new Set<string>();
  let current: Family | undefined;
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((line, i) => {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    let m: RegExpMatchArray | null;
    if ((m = line.match(new RegExp(`^# HELP (${NAME}) (.*)$`)))) {
      if (seen.has(m[1])) throw new Error(`${where}: family declared twice`);
      seen.add(m[1]);
      current = { name: m[1], help: m[2], type: "", samples: [] };
      families.push(current);
      return;
    }
    if (
      (m = line.match(new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`)))
    ) {
      if (!current || current.name !== m[1] || current.type !== "" || current.samples.length) {
        throw new Error(`${where}: TYPE out of place`);
      }
      current.type = m[2];
      return;
    }
    m = line.match(SAMPLE_RE);
    if (!m) throw new Error(`${where}: not a valid sample line`);
    if (!current || current.type === "") throw new Error(`${where}: sample before TYPE`);
    const name = m[1];
    const allowed = current.type === "histogram"
      ? [`${current.name}_bucket`, `${current.name}_sum`, `${current.name}_count`]
      : [current.name];
    if (!allowed.includes(name)) throw new Error(`${where}: sample outside its family`);
    const labels: Record<string, string> = {};
    for (const lm of (m[2] ?? "").matchAll(LABEL_RE)) {
      if (lm[1] in labels) throw new Error(`${where}: duplicate label ${lm[1]}`);
      labels[lm[1]] = unescape(lm[2]);
    }
    current.samples.push({ name, labels, value: parseValue(m[3]) });
  });
  for (const f of families) {
    const keys = f.samples.map((s) => s.name + JSON.stringify(Object.entries(s.labels).sort()));
    if (new Set(keys).size !== keys.length) throw new Error(`${f.name}: duplicate series`);
  }
  return families;
}

/** Checks every series of a histogram family: cumulative buckets, +Inf = count, sum present. */
function checkHistogram(f: Family): string[] {
  const problems: string[] = [];
  const groups = new Map<string, Sample[]>();
  for (const s of f.samples) {
    const { le: _le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  for (const [key, samples] of groups) {
    const buckets = samples.filter((s) => s.name === `${f.name}_bucket`);
    const count = samples.find((s) => s.name === `${f.name}_count`);
    const sum = samples.find((s) => s.name === `${f.name}_sum`);
    if (!count || !sum) problems.push(`${key}: missing _count or _sum`);
    const les = buckets.map((b) => parseValue(b.labels.le));
    if (les.some((le) => Number.isNaN(le))) problems.push(`${key}: bad le`);
    for (let i = 1; i < buckets.length; i++) {
      if (!(les[i] > les[i - 1])) problems.push(`${key}: le not increasing at ${i}`);
      if (buckets[i].value < buckets[i - 1].value) {
        problems.push(`${key}: bucket ${i} not cumulative`);
      }
    }
    if (les[les.length - 1] !== Infinity) problems.push(`${key}: last bucket is not +Inf`);
    if (count && buckets[buckets.length - 1]?.value !== count.value) {
      problems.push(`${key}: +Inf bucket != _count`);
    }
  }
  return problems;
}

function populated(): Metrics {
  const m = new Metrics();
  m.pages.inc({ source: "bsky.network" });
  m.pages.inc({ source: "bsky.network" }, 4);
  m.dids.inc({ source: "bsky.network" }, 5000);
  m.new.inc({ source: "bsky.network" }, 12);
  m.invalidDids.inc({ source: "bsky.network" }, 3);
  m.responses.inc({ source: "bsky.network", status: "200" }, 5);
  m.responses.inc({ status: "429", source: "bsky.network" });
  m.responses.inc({ source: "bsky.network", status: "error" });
  // A label value that needs every escape.
  m.responses.inc({ source: 'http://weird"relay\\name\nx', status: "502" });
  for (const s of [0.004, 0.01, 0.03, 0.2, 0.2, 0.7, 3, 12, 45]) {
    m.latency.observe({ source: "bsky.network" }, s);
  }
  m.latency.observe({ source: "relay.example" }, 0.05);
  m.limiterWait.setAll([[{ host: "bsky.network" }, 12.5]]);
  m.throttles.setAll([[{ host: "bsky.network" }, 2], [{ host: "127.0.0.1:2470" }, 0]]);
  m.collections.setAll([
    [{ state: "completed" }, 621],
    [{ state: "in_progress" }, 648],
    [{ state: "failed" }, 3],
  ]);
  m.indexBytes.setAll([[{}, 123_456_789_012]]);
  m.pageKeys.setAll([[{ how: "read" }, 10], [{ how: "skipped" }, 990]]);
  m.running.setAll([[{}, 1]]);
  return m;
}

Deno.test("Metrics.render: parses strictly as Prometheus text", () => {
  const text = populated().render();
  const families = parseExposition(text);
  assertEquals(families.map((f) => f.name), [
    "backfill_pages_total",
    "backfill_dids_imported_total",
    "backfill_dids_new_total",
    "backfill_dids_invalid_total",
    "backfill_source_responses_total",
    "backfill_source_request_seconds",
    "backfill_rate_limiter_wait_seconds_total",
    "backfill_source_throttled_total",
    "backfill_collections",
    "backfill_index_size_bytes",
    "backfill_index_page_keys_total",
    "backfill_running",
    "backfill_collection_invalid_entries",
    "backfill_collections_reimport_pending",
    ...Object.values(LIVE_FIGURES).map(([name]) => name),
    "backfill_live_skipped_total",
    "backfill_live_pairs_total",
    "backfill_live_deletes_kept_total",
  ]);
  for (const f of families) {
    assert(f.help.length > 0, `${f.name} has no HELP text`);
    assert(["counter", "gauge", "histogram"].includes(f.type), `${f.name}: ${f.type}`);
  }
  // Every non-comment line matches `name{labels} value`.
  const sampleLines = text.trimEnd().split("\n").filter((l) => !l.startsWith("#"));
  assert(sampleLines.length > 20, `only ${sampleLines.length} samples`);
  for (const line of sampleLines) assert(SAMPLE_RE.test(line), line);
});

Deno.test("Metrics.render: values and escaped labels round-trip", () => {
  const families = parseExposition(populated().render());
  const byName = new Map(families.map((f) => [f.name, f]));
  const value = (family: string, labels: Record<string, string>) =>
    byName.get(family)!.samples.find((s) =>
      JSON.stringify(Object.entries(s.labels).sort()) ===
        JSON.stringify(Object.entries(labels).sort())
    )?.value;
  assertEquals(value("backfill_pages_total", { source: "bsky.network" }), 5);
  assertEquals(value("backfill_dids_imported_total", { source: "bsky.network" }), 5000);
  assertEquals(
    value("backfill_source_responses_total", { source: "bsky.network", status: "429" }),
    1,
  );
  assertEquals(
    value("backfill_source_responses_total", {
      source: 'http://weird"relay\\name\nx',
      status: "502",
    }),
    1,
  );
  assertEquals(value("backfill_collections", { state: "in_progress" }), 648);
  assertEquals(value("backfill_index_size_bytes", {}), 123_456_789_012);
  assertEquals(value("backfill_running", {}), 1);
  assertEquals(value("backfill_rate_limiter_wait_seconds_total", { host: "bsky.network" }), 12.5);
});

Deno.test("Metrics.render: histogram buckets are cumulative and end in +Inf = count", () => {
  const families = parseExposition(populated().render());
  const h = families.find((f) => f.type === "histogram")!;
  assertEquals(checkHistogram(h), []);
  const bucket = (le: string) =>
    h.samples.find((s) =>
      s.name === "backfill_source_request_seconds_bucket" && s.labels.source === "bsky.network" &&
      s.labels.le === le
    )?.value;
  // Observations: 0.004 0.01 0.03 0.2 0.2 0.7 3 12 45 (bounds are inclusive).
  assertEquals(
    ["0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "+Inf"].map(
      bucket,
    ),
    [2, 2, 3, 3, 5, 5, 6, 6, 7, 7, 8, 9],
  );
  const sum =
    h.samples.find((s) =>
      s.name === "backfill_source_request_seconds_sum" && s.labels.source === "bsky.network"
    )!.value;
  assert(Math.abs(sum - (0.004 + 0.01 + 0.03 + 0.2 + 0.2 + 0.7 + 3 + 12 + 45)) < 1e-9, String(sum));
  const other = h.samples.filter((s) => s.labels.source === "relay.example");
  assertEquals(other.length, 11 + 1 + 2);
});

Deno.test("the checker itself rejects broken exposition text", () => {
  const bad = [
    "# HELP x a\n# TYPE x counter\nx{a=b} 1\n", // unquoted label value
    "# HELP x a\n# TYPE x counter\nx 1 2 3\n", // junk after the value
    "# HELP x a\n# TYPE x counter\nx Infinity\n", // not a Prometheus float
    "# HELP x a\n# TYPE x counter\ny 1\n", // sample outside its family
    "x 1\n", // sample before TYPE
    "# HELP x a\n# TYPE x counter\nx 1", // no final newline
    '# HELP x a\n# TYPE x counter\nx{a="1"} 1\nx{a="1"} 2\n', // duplicate series
  ];
  for (const text of bad) {
    let threw = false;
    try {
      parseExposition(text);
    } catch {
      threw = true;
    }
    assert(threw, `accepted ${JSON.stringify(text)}`);
  }
  const notCumulative: Family = {
    name: "h",
    type: "histogram",
    help: "",
    samples: [
      { name: "h_bucket", labels: { le: "1" }, value: 3 },
      { name: "h_bucket", labels: { le: "+Inf" }, value: 2 },
      { name: "h_sum", labels: {}, value: 1 },
      { name: "h_count", labels: {}, value: 2 },
    ],
  };
  assert(checkHistogram(notCumulative).length > 0);
});

Deno.test("Counter: label order does not split a series; get reads it back", () => {
  const c = new Counter("t_total", "test");
  c.inc({ a: "1", b: "2" });
  c.inc({ b: "2", a: "1" }, 2);
  c.inc();
  assertEquals(c.get({ b: "2", a: "1" }), 3);
  assertEquals(c.get(), 1);
  assertEquals(c.get({ a: "nope" }), 0);
  const fams = parseExposition(c.render().join("\n") + "\n");
  assertEquals(fams[0].samples.length, 2);
});

Deno.test("Gauge: setAll replaces every series, special values are Prometheus floats", () => {
  const g = new Gauge("t_gauge", "test");
  g.setAll([[{ k: "a" }, 1], [{ k: "b" }, 2]]);
  g.setAll([[{ k: "c" }, Infinity], [{ k: "d" }, -Infinity], [{ k: "e" }, NaN]]);
  const [f] = parseExposition(g.render().join("\n") + "\n");
  assertEquals(f.samples.map((s) => [s.labels.k, s.value]), [
    ["c", Infinity],
    ["d", -Infinity],
    ["e", NaN],
  ]);
});

Deno.test("Histogram: an unobserved histogram renders only HELP and TYPE", () => {
  const h = new Histogram("t_seconds", "test", [1, 2]);
  const [f] = parseExposition(h.render().join("\n") + "\n");
  assertEquals([f.type, f.samples.length], ["histogram", 0]);
  h.observe({}, 2);
  h.observe({}, 1.5);
  h.observe({}, 0);
  const [g] = parseExposition(h.render().join("\n") + "\n");
  assertEquals(checkHistogram(g), []);
  assertEquals(g.samples.map((s) => [s.name, s.labels.le, s.value]), [
    ["t_seconds_bucket", "1", 1],
    ["t_seconds_bucket", "2", 3],
    ["t_seconds_bucket", "+Inf", 3],
    ["t_seconds_sum", undefined, 3.5],
    ["t_seconds_count", undefined, 3],
  ]);
});

Deno.test({
  name: "Histogram: an infinite observation still renders a valid _sum",
  fn() {
    const h = new Histogram("t_seconds", "test", [1]);
    h.observe({}, Infinity);
    const [f] = parseExposition(h.render().join("\n") + "\n");
    assertEquals(f.samples.find((s) => s.name === "t_seconds_sum")?.value, Infinity);
  },
});

// @ts-check
/**
 * The formatting rules for status numbers: counts, rates, durations, percents, bars, tables. Used by
 * the CLI, the status page (the server inlines this module into it) and anything else that shows
 * the status, so they all agree. Plain JavaScript with JSDoc types, so the browser runs it as is.
 */

/** @type {ReadonlyArray<readonly [suffix: string, size: number]>} */
const COUNT_UNITS = [
  ["k", 1e3],
  ["M", 1e6],
  ["B", 1e9],
  ["T", 1e12],
];
const BAR_PARTIALS = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];

/**
 * A count for humans: 999, 1.2k, 120k, 13.6M, 1.1B; "?" when not a finite number.
 * @param {number} n
 * @returns {string}
 */
export function formatCount(n) {
  if (!Number.isFinite(n)) return "?";
  if (n < 0) return `-${formatCount(-n)}`;
  if (Math.round(n) < 1000) return String(Math.round(n));
  for (const [i, [suffix, size]] of COUNT_UNITS.entries()) {
    const text = scaledText(n / size);
    // Rounding can carry into the next unit (999_960 is "1000k"), so only accept a fit below 1000.
    if (Number(text) < 1000 || i === COUNT_UNITS.length - 1) return text + suffix;
  }
  return String(n);
}

/**
 * @param {number} x
 * @returns {string}
 */
function scaledText(x) {
  const text = x < 99.95 ? x.toFixed(1) : x.toFixed(0);
  return text.endsWith(".0") ? text.slice(0, -2) : text;
}

/**
 * A per-second rate for humans: one decimal below 10 (0.5, 9.8), else like {@link formatCount}.
 * @param {number} perSecond
 * @returns {string}
 */
export function formatRate(perSecond) {
  if (!Number.isFinite(perSecond)) return "?";
  if (Math.abs(perSecond) >= 9.95) return formatCount(perSecond);
  const text = perSecond.toFixed(1);
  return text.endsWith(".0") ? text.slice(0, -2) : text;
}

/**
 * Seconds as the two largest units: 42s, 5m 03s, 1h 02m, 2d 03h; "?" when unknown.
 * @param {number} seconds
 * @returns {string}
 */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad2(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad2(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86400)}d ${pad2(Math.floor(s / 3600) % 24)}h`;
}

/**
 * @param {number} n
 * @returns {string}
 */
function pad2(n) {
  return String(n).padStart(2, "0");
}

/**
 * A fraction as a percent with `digits` decimals; never shows 100% before the work is done.
 * @param {number} fraction
 * @param {number} [digits]
 * @returns {string}
 */
export function formatPercent(fraction, digits = 1) {
  if (!Number.isFinite(fraction)) return "?%";
  const text = (fraction * 100).toFixed(digits);
  // 1268/1269 rounds to "100.0%", which would tell the operator it is finished when it is not.
  if (fraction < 1 && Number(text) >= 100) return `${(100 - 10 ** -digits).toFixed(digits)}%`;
  return `${text}%`;
}

/**
 * A bar exactly `width` cells wide, filled to `fraction` (clamped to 0..1) in eighths.
 * @param {number} fraction
 * @param {number} width
 * @returns {string}
 */
export function progressBar(fraction, width) {
  const cells = Math.max(0, Math.floor(width));
  const clamped = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const eighths = Math.floor(clamped * cells * 8);
  const full = Math.floor(eighths / 8);
  const partial = BAR_PARTIALS[eighths % 8];
  const empty = cells - full - (partial ? 1 : 0);
  return "█".repeat(full) + partial + "░".repeat(empty);
}

/**
 * Cuts `text` to at most `width` characters, marking a cut with "…".
 * @param {string} text
 * @param {number} width
 * @returns {string}
 */
export function truncate(text, width) {
  const chars = Array.from(text);
  if (chars.length <= width) return text;
  if (width <= 0) return "";
  return chars.slice(0, width - 1).join("") + "…";
}

/**
 * Left-aligns rows of cells into columns two spaces apart, each line prefixed by `indent`.
 * @param {string[][]} rows
 * @param {string} [indent]
 * @returns {string[]}
 */
export function formatTable(rows, indent = "") {
  /** @type {number[]} */
  const widths = [];
  for (const row of rows) {
    row.forEach((cell, i) => widths[i] = Math.max(widths[i] ?? 0, Array.from(cell).length));
  }
  return rows.map((row) => {
    const cells = row.map((cell, i) =>
      i === row.length - 1 ? cell : cell + " ".repeat(widths[i] - Array.from(cell).length)
    );
    return (indent + cells.join("  ")).trimEnd();
  });
}

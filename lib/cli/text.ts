/** Small text helpers for the operator's terminal lines. */
import { truncate } from "../status/mod.ts";

/** An ISO time as "YYYY-MM-DD HH:MM UTC"; unparsable text is returned as is. */
export function formatTime(iso: string): string {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? iso : new Date(t).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

/** A wall-clock stamp, "HH:MM:SSZ". */
export function clock(now: number): string {
  return new Date(now).toISOString().slice(11, 19) + "Z";
}

/** "1 collection", "2 collections". */
export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/** Collapses whitespace runs (newlines included) to single spaces. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/** One line of at most `width` characters. */
export function clip(text: string, width = 200): string {
  return truncate(oneLine(text), width);
}

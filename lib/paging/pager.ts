/** The pure core of paging one collection: what to ask for next, when to stop, and loop guards. */

/** What the pager decided after a page. */
export type PageStep =
  | { readonly kind: "next"; readonly cursor: string }
  | { readonly kind: "done"; readonly finalCursor: string }
  | { readonly kind: "stuck"; readonly reason: string };

/** Limits for the loop guards. */
export interface PagerLimits {
  /** Consecutive empty pages that still carry a cursor before giving up. */
  readonly maxEmptyWithCursor: number;
  /** How many recent cursors are remembered to detect a cycle (bounded: memory stays flat). */
  readonly recentCursors: number;
  /** Pages in a row that list DIDs but add none: a source going round with fresh cursors. */
  readonly maxPagesWithoutNewDids: number;
}

/** Defaults for the loop guards. */
export const DEFAULT_PAGER_LIMITS: PagerLimits = {
  maxEmptyWithCursor: 5,
  recentCursors: 64,
  maxPagesWithoutNewDids: 50,
};

/**
 * Follows the source's cursors. Only a response without a cursor ends paging: a short page with a
 * cursor goes on, and a full page without one ends. The final cursor is the one that fetched the last
 * page, so a later catch-up re-reads that page and whatever the source appended after it.
 */
export class Pager {
  #cursor: string;
  #empties = 0;
  #idle = 0;
  readonly #recent: string[] = [];
  readonly #limits: PagerLimits;

  constructor(startCursor: string, limits: Partial<PagerLimits> = {}) {
    this.#cursor = startCursor;
    this.#limits = { ...DEFAULT_PAGER_LIMITS, ...limits };
    if (startCursor !== "") this.#recent.push(startCursor);
  }

  /** The cursor to send for the next request ("" for the first page). */
  get cursor(): string {
    return this.#cursor;
  }

  /** Advances past a page with `count` entries and the response's `cursor`. */
  advance(count: number, cursor: string | undefined): PageStep {
    if (cursor === undefined) return { kind: "done", finalCursor: this.#cursor };
    if (this.#recent.includes(cursor)) {
      return { kind: "stuck", reason: `source repeated cursor ${JSON.stringify(short(cursor))}` };
    }
    this.#empties = count === 0 ? this.#empties + 1 : 0;
    if (this.#empties > this.#limits.maxEmptyWithCursor) {
      return {
        kind: "stuck",
        reason: `source sent ${this.#empties} empty pages in a row that still carry a cursor`,
      };
    }
    this.#recent.push(cursor);
    if (this.#recent.length > this.#limits.recentCursors) this.#recent.shift();
    this.#cursor = cursor;
    return { kind: "next", cursor };
  }

  /** Records how many of a written page's `listed` DIDs were new; returns why to stop, if it should. */
  noteImported(listed: number, imported: number): string | undefined {
    this.#idle = imported === 0 && listed > 0 ? this.#idle + 1 : 0;
    if (this.#idle < this.#limits.maxPagesWithoutNewDids) return undefined;
    return `source sent ${this.#idle} pages in a row with only DIDs it had already listed`;
  }
}

function short(s: string): string {
  return s.length > 60 ? s.slice(0, 60) + "…" : s;
}

/**
 * A backfill page's write, decided without I/O: what each listed DID does to the index, and the
 * checkpoint the page leads to. IndexStore.applyPage reads, asks these, and writes one batch.
 */
import { parseTombstone } from "./keys.ts";

/** Where a collection's backfill stands, written in the same batch as the page it covers. */
export interface Checkpoint {
  /** Source name that issued `cursor`. */
  readonly source: string;
  /** Bumped by a reset; a DID counts as imported once per generation. */
  readonly gen: number;
  /** Next cursor to request ("" = from the start); once `done`, the cursor of the last page. */
  readonly cursor: string;
  /** Distinct DIDs the source listed in this generation. */
  readonly imported: number;
  /** Of those, how many the index did not hold before. */
  readonly new: number;
  readonly pages: number;
  readonly done: boolean;
  /** Entries in this generation that were not valid DIDs (skipped); absent in older checkpoints. */
  readonly invalid?: number;
}

/** A checkpoint that starts a collection over from the beginning, in the generation after `prevGen`. */
export function initialCheckpoint(source: string, prevGen = 0): Checkpoint {
  return { source, gen: prevGen + 1, cursor: "", imported: 0, new: 0, pages: 0, done: false };
}

/** The checkpoint after a page that imported `imported` DIDs, `added` of them new to the index. */
export function nextCheckpoint(
  prev: Checkpoint | undefined,
  next: Omit<Checkpoint, "imported" | "new" | "pages">,
  imported: number,
  added: number,
): Checkpoint {
  // A new generation (a reset, or a new source) counts from zero.
  const same = prev !== undefined && prev.gen === next.gen;
  return {
    ...next,
    imported: (same ? prev.imported : 0) + imported,
    new: (same ? prev.new : 0) + added,
    pages: (same ? prev.pages : 0) + 1,
  };
}

/** A deleted account's marks for one DID: its tombstone, and the generation mark kept for the pair. */
export interface DeletedMarks {
  readonly tomb: boolean;
  readonly ghost?: string;
}

/**
 * What a page does with one DID:
 * - `skip`: this generation already counted it; nothing is written;
 * - `count-deleted`: a deleted account's pair, counted as listed and never written back; only its
 *   generation mark is kept;
 * - `restore`: counted before its account was deleted, and the account is active again, so the
 *   pair returns (not counted twice);
 * - `list-tombstoned`: a proven delete took the repo's last record here after anything the source
 *   can know, so the pair is counted as listed and stays out;
 * - `add`: counted, and new to the index;
 * - `mark`: counted; the index held it already (live indexing, or an earlier generation).
 */
export type PairAction =
  | "skip"
  | "count-deleted"
  | "restore"
  | "list-tombstoned"
  | "add"
  | "mark";

/**
 * Decides a page's DID from the pair's stored value, the account's deletion marks, this
 * generation's `mark`, whether the page before already marked it (`carried`), and the time of the
 * last gap in live indexing (older tombstones yield to the listing).
 */
export function pairAction(
  value: string | undefined,
  deleted: DeletedMarks | undefined,
  mark: string,
  carried: boolean,
  gapMs: number,
): PairAction {
  if (deleted !== undefined) {
    const counted = value === mark || deleted.ghost === mark || carried ||
      parseTombstone(value)?.gen === mark;
    if (deleted.tomb) return counted ? "skip" : "count-deleted";
    if (deleted.ghost === mark && value !== mark) return "restore";
  }
  if (value === mark || carried) return "skip";
  const tomb = parseTombstone(value);
  if (tomb !== undefined && tomb.timeMs >= gapMs) {
    return tomb.gen === mark ? "skip" : "list-tombstoned";
  }
  return value === undefined || tomb !== undefined ? "add" : "mark";
}

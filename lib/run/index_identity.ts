/** Noticing, at startup, an index that is not the one progress was recorded against. */
import type { IndexStore } from "../index/mod.ts";
import type { ProgressStore } from "../progress/mod.ts";
import type { Logger } from "../util/mod.ts";

/** What the startup check found. */
export interface IndexCheck {
  readonly identity: string;
  /** The index was missing (created empty now) or replaced, while progress had been recorded. */
  readonly replaced: boolean;
  /** Collections marked for re-import because of that. */
  readonly marked: readonly string[];
}

/**
 * Compares the index's identity with the one Postgres recorded. A different identity, or a new
 * empty index while rows show progress, means the index was deleted or swapped: every row with
 * progress starts over and is marked for re-import instead of being reported complete.
 */
export async function checkIndexIdentity(
  opts: { index: IndexStore; progress: ProgressStore; log: Logger },
): Promise<IndexCheck> {
  const { index, progress, log } = opts;
  const recorded = await progress.indexRecord();
  const hasProgress = async () =>
    (await progress.list()).some((r) =>
      r.completedAt !== null || r.imported > 0 || r.cursor !== ""
    );
  const replaced = recorded !== undefined
    ? recorded.identity !== index.identity
    : index.created && await hasProgress();
  const marked = await progress.recordIndex(index.identity, replaced);
  if (replaced) {
    log.warn("index is missing or replaced: its collections will be imported again", {
      path: index.path,
      expected: recorded?.identity ?? null,
      found: index.identity,
      created: index.created,
      marked: marked.length,
    });
  }
  return { identity: index.identity, replaced, marked };
}

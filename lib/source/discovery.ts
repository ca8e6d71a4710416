/** Finding collections to backfill: lexicon.garden's `llms.txt` unioned with the index's own collections. */
import ky from "ky";
import { readCapped } from "./http_body.ts";
import type { Logger } from "../util/mod.ts";
import { isDid, isNsid } from "../util/mod.ts";

const LEXICON_LINK =
  /https?:\/\/lexicon\.garden\/lexicon\/([^\s/()<>\]"'`]+)\/([^\s/()<>\]"'`?#]+)/gi;

/** Extracts the valid, de-duplicated NSIDs linked as `https://lexicon.garden/lexicon/{did}/{nsid}[/…]`. */
export function parseLlmsTxt(text: string): string[] {
  const seen = new Set<string>();
  for (const m of text.matchAll(LEXICON_LINK)) {
    const did = decode(m[1]);
    // A bare link at the end of a sentence drags the punctuation along, as in Markdown autolinks;
    // an explicit link target (`](…)` or `<…>`) is taken exactly as written.
    const explicit = text.startsWith("](", m.index! - 2) || text[m.index! - 1] === "<";
    const nsid = decode(explicit ? m[2] : m[2].replace(/[.,;:!]+$/, ""));
    if (did !== undefined && nsid !== undefined && isDid(did) && isNsid(nsid)) seen.add(nsid);
  }
  return [...seen];
}

function decode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/** Options for discover(). */
export interface DiscoverOptions {
  readonly listUrl: string;
  readonly indexCollections: () => Promise<string[]>;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  readonly maxBytes?: number;
}

/** Result of discovery, with where each part came from. */
export interface Discovered {
  readonly collections: string[];
  readonly fromList: number;
  readonly fromIndex: number;
  /** Why the list could not be used, when it could not. */
  readonly listError?: string;
}

/** Fetches and parses the list, unions it with the index; a list that cannot be fetched is logged, not fatal. */
export async function discoverCollections(opts: DiscoverOptions): Promise<Discovered> {
  let listed: string[] = [];
  let listError: string | undefined;
  try {
    // One deadline covers headers and body, so a server that stalls mid-body cannot hang a run.
    const deadline = AbortSignal.timeout(opts.timeoutMs ?? 30_000);
    const res = await ky.get(opts.listUrl, {
      timeout: false,
      retry: { limit: 2, maxRetryAfter: 10_000 },
      signal: opts.signal ? AbortSignal.any([opts.signal, deadline]) : deadline,
    });
    listed = parseLlmsTxt(await readCapped(res, opts.maxBytes ?? 20 * 1024 * 1024));
    if (listed.length === 0) throw new Error("it names no collections");
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    listError = `cannot fetch collection list ${opts.listUrl}: ${(err as Error).message}`;
    opts.log.warn("collection list unavailable; using the index's collections only", {
      url: opts.listUrl,
      error: (err as Error).message,
    });
  }
  const fromIndex = await opts.indexCollections();
  const all = new Set([...listed, ...fromIndex.filter((c) => isNsid(c))]);
  return {
    collections: [...all].sort(),
    fromList: listed.length,
    fromIndex: fromIndex.length,
    listError,
  };
}

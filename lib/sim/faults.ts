/** The simulated relay's fault model: what can go wrong, and the draw that decides it per request. */

/** Per-collection ways of answering with a broken body. */
export type MalformedMode =
  | "bad-json"
  | "missing-repos"
  | "non-object-entries"
  | "huge-body"
  | "repeat-cursor"
  | "empty-with-cursor"
  | "invalid-dids";

/** What the relay does with a `limit` above its maximum; see {@link SimFaults.overLimit}. */
export type OverLimit = "clamp" | "reject";

/** Every {@link OverLimit}, for flag parsing. */
export const OVER_LIMIT_MODES: readonly OverLimit[] = ["clamp", "reject"];

/** Behaviour that can change at runtime through `setFaults`; all optional. */
export interface SimFaults {
  /** Added to every relay request (not llms.txt or health), plus up to `jitterMs` more. */
  latencyMs?: number;
  jitterMs?: number;
  /** Probability of a random 429. */
  rate429?: number;
  /** Seconds announced on 429s (default 1; the token bucket computes its own). */
  retryAfterSec?: number;
  /** Send Retry-After as an HTTP date instead of seconds. */
  retryAfterDate?: boolean;
  /** Which rate-limit headers a 429 carries (default "both"). */
  limitHeaders?: "retry-after" | "ratelimit" | "both" | "none";
  /** Whether answers that pass the token bucket carry RateLimit-* headers (default true). */
  okLimitHeaders?: boolean;
  /** A real token bucket: requests beyond it get 429; successes carry RateLimit-* headers. */
  maxRps?: number;
  /** Bucket size (default maxRps, i.e. one second of burst). */
  burst?: number;
  /** Probability of a proxy-style 502/503 with an HTML body. */
  rate5xx?: number;
  /** Probability of destroying the connection without a response. */
  rateReset?: number;
  /** Probability of never answering (until the client or `close` gives up). */
  hangRate?: number;
  /** Collections ("*" for all) answering 403 "Request forbidden by administrative rules". */
  forbidden?: Set<string> | string[];
  /** Collection ("*" for all) to malformed-body mode. */
  malformed?: Record<string, MalformedMode> | Map<string, MalformedMode>;
  /** Every Nth page is cut short but still carries a cursor (the server gave up early). */
  shortPageEvery?: number;
  /** Size of the "huge-body" body (default 512 MiB), streamed lazily. */
  hugeBodyBytes?: number;
  /** The largest `limit` served (default 10000, like collectiondir behind bsky.network). */
  maxLimit?: number;
  /**
   * A `limit` above `maxLimit`: "clamp" serves `maxLimit` DIDs with a cursor (the default, like
   * collectiondir), "reject" answers 400 InvalidRequest (a lexicon-strict server at 2000).
   */
  overLimit?: OverLimit;
  /** Serve `listReposByCollection` (default true; false answers 404 like relays without it). */
  listRepos?: boolean;
  /** Serve `/v1/listCollections` (default true). */
  listCollections?: boolean;
  /** listCollections hides collections with fewer DIDs (collectiondir's `clist-min-dids`, default 5). */
  listCollectionsMinDids?: number;
  /** NSIDs listed only in llms.txt (they answer empty pages). */
  llmsExtra?: string[];
  /** Replaces the generated llms.txt. */
  llmsTxt?: string;
  /** Status for llms.txt (default 200). */
  llmsStatus?: number;
}

/** Every {@link MalformedMode}, for flag parsing. */
export const MALFORMED_MODES: readonly MalformedMode[] = [
  "bad-json",
  "missing-repos",
  "non-object-entries",
  "huge-body",
  "repeat-cursor",
  "empty-with-cursor",
  "invalid-dids",
];

/** {@link SimFaults} with the collection sets normalised. */
export interface Faults extends Omit<SimFaults, "forbidden" | "malformed"> {
  forbidden: Set<string>;
  malformed: Map<string, MalformedMode>;
}

/** No faults. */
export function noFaults(): Faults {
  return { forbidden: new Set(), malformed: new Map() };
}

/** `current` with `partial` merged in (an `undefined` field turns that fault off). */
export function mergeFaults(current: Faults, partial: SimFaults): Faults {
  const next: Faults = { ...current, ...partial } as Faults;
  if ("forbidden" in partial) next.forbidden = new Set(partial.forbidden ?? []);
  if ("malformed" in partial) {
    const m = partial.malformed;
    next.malformed = new Map(m instanceof Map ? m : Object.entries(m ?? {}));
  }
  return next;
}

/** What a request suffers, decided before it is answered. */
export type FaultOutcome =
  | { kind: "none" }
  | { kind: "reset" }
  | { kind: "hang" }
  | { kind: "5xx"; status: number; html: string }
  | { kind: "429"; retryAfterSec: number; ratelimit: Record<string, string> };

/** Draws one request's latency and random fault. */
export function drawFault(
  f: Faults,
  rand: () => number,
): { delayMs: number; outcome: FaultOutcome } {
  // Always draw the same numbers so one request's faults do not shift the next one's.
  const [rReset, rHang, r5xx, r429, rJitter, rPick] = [0, 0, 0, 0, 0, 0].map(rand);
  const delayMs = (f.latencyMs ?? 0) + (f.jitterMs ?? 0) * rJitter;
  return { delayMs, outcome: pickOutcome(f, rReset, rHang, r5xx, r429, rPick) };
}

function pickOutcome(
  f: Faults,
  rReset: number,
  rHang: number,
  r5xx: number,
  r429: number,
  rPick: number,
): FaultOutcome {
  if (rReset < (f.rateReset ?? 0)) return { kind: "reset" };
  if (rHang < (f.hangRate ?? 0)) return { kind: "hang" };
  if (r5xx < (f.rate5xx ?? 0)) {
    const [status, text] = rPick < 0.5
      ? [502, "Bad Gateway"]
      : [503, "Service Temporarily Unavailable"];
    const html = `<html>\r\n<head><title>${status} ${text}</title></head>\r\n<body>\r\n` +
      `<center><h1>${status} ${text}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`;
    return { kind: "5xx", status, html };
  }
  if (r429 < (f.rate429 ?? 0)) {
    const sec = f.retryAfterSec ?? 1;
    return {
      kind: "429",
      retryAfterSec: sec,
      ratelimit: {
        "ratelimit-limit": String(Math.round(f.maxRps ?? 3000)),
        "ratelimit-remaining": "0",
        "ratelimit-reset": String(sec),
      },
    };
  }
  return { kind: "none" };
}

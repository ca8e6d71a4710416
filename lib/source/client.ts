/** Client for a source relay's `com.atproto.sync.listReposByCollection`, with retries and politeness. */
import ky, { type KyInstance } from "ky";
import { type Backoff, backoffDelay, errorMessage, retry, SourceError } from "../util/mod.ts";
import type { Logger } from "../util/mod.ts";
import { silentLogger } from "../util/mod.ts";
import type { HostLimiter } from "./rate_limiter.ts";
import { type Clock, systemClock } from "../util/mod.ts";
import type { Source } from "./source.ts";
import { isDid } from "../util/mod.ts";
import { BodyTooLargeError, readCapped } from "./http_body.ts";

/** One validated page from the source. */
export interface SourcePage {
  /** Valid DIDs, in the source's order. */
  readonly dids: string[];
  /** Entries skipped because they were not objects with a valid `did`. */
  readonly invalid: number;
  readonly cursor?: string;
}

/** Hooks for metrics; all optional. */
export interface SourceClientObserver {
  response?(source: string, status: number | "error", ms: number): void;
}

/** Options for a SourceClient. */
export interface SourceClientOptions {
  readonly source: Source;
  readonly limiter: HostLimiter;
  readonly timeoutMs?: number;
  /** Attempts for network errors, timeouts, 5xx and malformed bodies. */
  readonly maxAttempts?: number;
  /** Consecutive 429s tolerated for one request before giving up. */
  readonly max429?: number;
  readonly maxBodyBytes?: number;
  readonly maxBackoffMs?: number;
  readonly clock?: Clock;
  readonly random?: () => number;
  readonly log?: Logger;
  readonly observer?: SourceClientObserver;
  readonly userAgent?: string;
}

const XRPC = "/xrpc/com.atproto.sync.listReposByCollection";
const LIST_COLLECTIONS = "/v1/listCollections";
/** 429s: the limiter paused the host; retries are only spread over up to 250 ms. */
const THROTTLE_SPREAD: Backoff = { minTimeout: 250, maxTimeout: 250, jitter: 1 };

function isThrottle(e: unknown): boolean {
  return e instanceof SourceError && e.context.status === 429;
}

/** The lexicon's maximum `limit` for listReposByCollection: every source must accept it. */
export const LEXICON_PAGE_LIMIT = 2000;
/** The largest `limit` asked for: what collectiondir (behind bsky.network) accepts. */
export const MAX_PAGE_LIMIT = 10_000;

/**
 * The `limit` to ask for again after a source refused a page asked for at `asked` with `status`, or
 * undefined when the refusal cannot be the limit's fault: a 400 to a limit above the lexicon's
 * maximum may be a lexicon-strict source, so that page is asked for again at the maximum.
 */
export function limitAfterRefusal(asked: number, status: number | undefined): number | undefined {
  return status === 400 && asked > LEXICON_PAGE_LIMIT ? LEXICON_PAGE_LIMIT : undefined;
}

/** The User-Agent sent to sources, so their operators can tell who is asking. */
export const USER_AGENT = "backfill (atproto collection index backfill)";

/** Talks to one source relay; one ky instance (and so one connection pool) is reused for every page. */
export class SourceClient {
  readonly source: Source;
  readonly limiter: HostLimiter;
  readonly #ky: KyInstance;
  readonly #timeoutMs: number;
  readonly #maxAttempts: number;
  readonly #max429: number;
  readonly #maxBody: number;
  /** For failures (network, timeouts, 5xx, malformed bodies): capped exponential, full jitter. */
  readonly #backoff: Backoff;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #log: Logger;
  readonly #observer: SourceClientObserver;
  /** Lowered once the source refused larger pages; see {@link limitAfterRefusal}. */
  #limitCap = Infinity;

  constructor(opts: SourceClientOptions) {
    this.source = opts.source;
    this.limiter = opts.limiter;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#maxAttempts = opts.maxAttempts ?? 8;
    this.#max429 = opts.max429 ?? 100;
    this.#maxBody = opts.maxBodyBytes ?? 16 * 1024 * 1024;
    this.#backoff = { minTimeout: 500, maxTimeout: opts.maxBackoffMs ?? 30_000, jitter: 1 };
    this.#clock = opts.clock ?? systemClock;
    this.#random = opts.random ?? Math.random;
    this.#log = opts.log ?? silentLogger;
    this.#observer = opts.observer ?? {};
    this.#ky = ky.create({
      // Retries and the deadline (which also covers reading the body) are this class's own: see
      // the README, "One HTTP client".
      retry: 0,
      timeout: false,
      throwHttpErrors: false,
      headers: { "user-agent": opts.userAgent ?? USER_AGENT },
      // Every answer from the source, whatever asked for it, tells the host limiter how things are.
      hooks: {
        afterResponse: [({ response }) => this.limiter.observe(response.status, response.headers)],
      },
    });
  }

  /** The `limit` a page asked for at `limit` is sent with: lower once the source refused it. */
  pageLimit(limit: number): number {
    return Math.min(limit, this.#limitCap);
  }

  /**
   * Fetches one page, retrying what can be retried; throws SourceError when the collection should
   * fail. A page the source refuses with a 400 at a limit above the lexicon's maximum is asked for
   * again at the maximum at once; when that works, the rest of this client's pages use it (logged
   * once).
   */
  async listRepos(
    collection: string,
    cursor: string,
    limit: number,
    opts: { signal?: AbortSignal; priority?: number } = {},
  ): Promise<SourcePage> {
    const asked = this.pageLimit(limit);
    try {
      return await this.#listRepos(collection, cursor, asked, opts);
    } catch (err) {
      const lower = err instanceof SourceError && !opts.signal?.aborted
        ? limitAfterRefusal(asked, err.context.status)
        : undefined;
      if (lower === undefined) throw err;
      const page = await this.#listRepos(collection, cursor, lower, opts);
      if (lower < this.#limitCap) {
        this.#limitCap = lower;
        this.#log.info("source refused larger pages; using the lexicon's maximum from now on", {
          source: this.source.name,
          refused: asked,
          limit: lower,
        });
      }
      return page;
    }
  }

  async #listRepos(
    collection: string,
    cursor: string,
    limit: number,
    opts: { signal?: AbortSignal; priority?: number },
  ): Promise<SourcePage> {
    const url = new URL(this.source.baseUrl + XRPC);
    url.searchParams.set("collection", collection);
    url.searchParams.set("limit", String(limit));
    if (cursor !== "") url.searchParams.set("cursor", cursor);
    const parse = (body: string) => parsePage(body, this.source.name, collection);
    return await this.#get(url, { collection, what: collection, parse, ...opts });
  }

  /**
   * The source's own collection sizes from its collection directory (`/v1/listCollections`). The
   * endpoint is optional and non-standard: an answer other than 200 ends the listing with what it
   * has so far (nothing, where the source does not offer it).
   */
  async collectionSizes(signal?: AbortSignal): Promise<Map<string, number>> {
    const sizes = new Map<string, number>();
    let cursor: string | undefined;
    for (let page = 0; page < 100; page++) {
      const url = new URL(this.source.baseUrl + LIST_COLLECTIONS);
      if (cursor) url.searchParams.set("cursor", cursor);
      let body: { collections?: unknown; cursor?: unknown };
      try {
        body = await this.#get(url, { what: "its collection list", parse: JSON.parse, signal });
      } catch (err) {
        if (signal?.aborted || !(err instanceof SourceError) || err.context.status === undefined) {
          throw err;
        }
        break;
      }
      const cols = body.collections;
      if (cols && typeof cols === "object" && !Array.isArray(cols)) {
        for (const [k, v] of Object.entries(cols)) if (typeof v === "number") sizes.set(k, v);
      }
      if (typeof body.cursor !== "string" || body.cursor === "" || body.cursor === cursor) break;
      cursor = body.cursor;
    }
    return sizes;
  }

  /**
   * GETs `url` through the host limiter and parses a 200 answer, retrying what can be retried;
   * throws SourceError when it should not be tried again.
   */
  async #get<T>(url: URL, req: GetRequest<T>): Promise<T> {
    let failures = 0, throttles = 0;
    try {
      return await retry(async () => {
        await this.limiter.acquire(req.priority ?? 0, req.signal);
        return await this.#attempt(url, req);
      }, {
        signal: req.signal,
        maxAttempts: Infinity,
        // Throttles and failures have budgets of their own.
        isRetriable: (e) =>
          e instanceof SourceError && e.context.retryable &&
          (isThrottle(e) ? ++throttles <= this.#max429 : ++failures < this.#maxAttempts),
        // The limiter already paused the whole host after a 429; this only spreads the retries.
        delay: (_, e) =>
          isThrottle(e)
            ? backoffDelay(1, THROTTLE_SPREAD, this.#random)
            : backoffDelay(failures, this.#backoff, this.#random),
        sleep: (ms, signal) => this.#clock.sleep(ms, signal),
        onRetry: (e, _, ms) =>
          this.#log.debug("retrying source request", {
            source: this.source.name,
            ...(req.collection === undefined ? { url: url.href } : { collection: req.collection }),
            error: errorMessage(e),
            delay_ms: Math.round(ms),
          }),
      });
    } catch (e) {
      if (req.signal?.aborted || !(e instanceof SourceError) || !e.context.retryable) throw e;
      const why = isThrottle(e) ? `${throttles} in a row` : `${failures} attempts`;
      throw new SourceError(`${e.message} (gave up after ${why})`, e.context, { cause: e });
    }
  }

  async #attempt<T>(url: URL, req: GetRequest<T>): Promise<T> {
    const { what, signal } = req;
    const started = performance.now();
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const attemptSignal = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const ctx = { url: url.href, collection: req.collection };
    let res: Response;
    try {
      res = await this.#ky.get(url, { signal: attemptSignal });
    } catch (cause) {
      this.#observer.response?.(this.source.name, "error", performance.now() - started);
      if (signal?.aborted) throw signal.reason;
      const why = timeout.aborted ? `timed out after ${this.#timeoutMs} ms` : describe(cause);
      throw new SourceError(`request to ${this.source.name} for ${what} failed: ${why}`, {
        ...ctx,
        retryable: true,
      }, { cause });
    }
    let body: string;
    try {
      body = await readCapped(res, this.#maxBody);
    } catch (cause) {
      this.#observer.response?.(this.source.name, res.status, performance.now() - started);
      if (signal?.aborted) throw signal.reason;
      if (cause instanceof BodyTooLargeError) {
        throw new SourceError(cause.message, { ...ctx, status: res.status, retryable: false }, {
          cause,
        });
      }
      const why = timeout.aborted ? `timed out after ${this.#timeoutMs} ms` : describe(cause);
      throw new SourceError(
        `reading ${this.source.name}'s answer for ${what} failed: ${why}`,
        {
          ...ctx,
          status: res.status,
          retryable: true,
        },
        { cause },
      );
    }
    this.#observer.response?.(this.source.name, res.status, performance.now() - started);
    if (res.status !== 200) {
      const retryable = res.status === 429 || res.status >= 500 || res.status === 408;
      throw new SourceError(
        `${this.source.name} answered ${res.status} for ${what}${errorBodyText(body)}`,
        { ...ctx, status: res.status, retryable },
      );
    }
    return req.parse(body);
  }
}

/** One GET through {@link SourceClient}: what it is for (in messages) and how to read a 200. */
interface GetRequest<T> {
  readonly what: string;
  readonly collection?: string;
  readonly parse: (body: string) => T;
  readonly signal?: AbortSignal;
  readonly priority?: number;
}

/** Validates a listReposByCollection body; malformed bodies are retryable SourceErrors. */
export function parsePage(body: string, source: string, collection: string): SourcePage {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (cause) {
    throw new SourceError(
      `${source} sent malformed JSON for ${collection} (${body.length} characters, not shown)`,
      { collection, status: 200, retryable: true },
      { cause },
    );
  }
  if (
    typeof json !== "object" || json === null || !Array.isArray((json as { repos?: unknown }).repos)
  ) {
    throw new SourceError(`${source} sent a body without a "repos" array for ${collection}`, {
      collection,
      status: 200,
      retryable: true,
    });
  }
  const { repos, cursor } = json as { repos: unknown[]; cursor?: unknown };
  if (cursor !== undefined && cursor !== null && typeof cursor !== "string") {
    throw new SourceError(`${source} sent a non-string cursor for ${collection}`, {
      collection,
      status: 200,
      retryable: true,
    });
  }
  const dids: string[] = [];
  let invalid = 0;
  for (const entry of repos) {
    const did = typeof entry === "object" && entry !== null
      ? (entry as { did?: unknown }).did
      : undefined;
    if (isDid(did)) dids.push(did);
    else invalid++;
  }
  return {
    dids,
    invalid,
    cursor: typeof cursor === "string" && cursor !== "" ? cursor : undefined,
  };
}

/**
 * What of an error body goes into messages (and so into `last_error`): an XRPC error object's
 * `error` and `message`, and nothing of any other body, which may come from anything the source URL
 * points at (an internal service, a metadata endpoint) and is not shown.
 */
export function errorBodyText(body: string): string {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  const { error, message } = (typeof json === "object" && json !== null ? json : {}) as {
    error?: unknown;
    message?: unknown;
  };
  if (typeof error !== "string" || !/^[A-Za-z][A-Za-z0-9]{0,63}$/.test(error)) {
    return body.length === 0 ? "" : ` (a ${body.length}-character body that is not an XRPC error)`;
  }
  const text = typeof message === "string"
    ? `${error}: ${message.replace(/\p{Cc}+/gu, " ").trim()}`
    : error;
  return `: ${JSON.stringify(text.length > 200 ? text.slice(0, 200) + "…" : text)}`;
}

function describe(err: unknown): string {
  const e = err as { message?: string; cause?: { message?: string; code?: string } };
  const inner = e?.cause?.code ?? e?.cause?.message;
  return inner ? `${e.message} (${inner})` : e?.message ?? String(err);
}

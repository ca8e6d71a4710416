/**
 * The live consumer: reads a firehose or a Jetstream, turns events into index writes, and saves the
 * stream's cursor in the same LevelDB batch as the pairs it covers. It reconnects with back-off
 * and jitter, treats a silent socket as dead, and resumes from the durable cursor: after a crash
 * the stream resends what followed it, and every write is idempotent, so each event counts once.
 */
import { type IndexStore, type LiveCounts, type LiveStep, PresentCache } from "../index/mod.ts";
import {
  type Backoff,
  type Clock,
  errorMessage,
  isNsid,
  type Logger,
  retry,
  type RetryAttempt,
  sleep,
  systemClock,
} from "../util/mod.ts";
import { type LiveEvent, SKIP_KINDS, type SkipKind } from "./event.ts";
import { decodeFirehoseFrame } from "./firehose.ts";
import { decodeJetstreamMessage } from "./jetstream.ts";
import { type CommitDecision, decideCommit } from "./decide.ts";
import { newPlanCounts, type PlanCounts, planEvent } from "./plan.ts";
import { connectUrl, type StreamEndpoint } from "./url.ts";

/** What is saved with the cursor, in the index (atomically) and mirrored to Postgres. */
export interface LiveCheckpoint {
  readonly kind: "firehose" | "jetstream";
  /** The last event applied: firehose seq or Jetstream time_us. */
  readonly cursor: number;
  /** Its event time, ms since the epoch (null when the stream sent none). */
  readonly eventTime: number | null;
  readonly accountsDeleted: number;
  readonly outdatedCursors: number;
  /** Since when a catch-up backfill is needed (events may have been missed), or null. */
  readonly catchUpSince: number | null;
  readonly catchUpReason: string | null;
}

/** The consumer's state as status, the page, the CLI and metrics show it. */
export interface LiveStatus {
  url: string;
  kind: "firehose" | "jetstream";
  connected: boolean;
  /** The last durable cursor (null before the first). */
  cursor: number | null;
  event_time: string | null;
  /** Now minus the event time of the last durable event. */
  lag_seconds: number | null;
  /** Median and 99th percentile of (durable time − event time) over the last 10,000 events. */
  lag_p50_seconds: number | null;
  lag_p99_seconds: number | null;
  events_per_sec: number;
  ops_per_sec: number;
  pairs_added: number;
  pairs_removed: number;
  accounts_deleted: number;
  reconnects: number;
  /** Of reconnects: the queue outgrew its bound (the stream came faster than it was indexed). */
  queue_overflows: number;
  last_error: string | null;
  outdated_cursor: number;
  catch_up_needed: boolean;
  catch_up_reason: string | null;
  events: number;
  ops: number;
  skipped: Record<SkipKind, number>;
  invalid_ops: number;
  deletes_kept: number;
  deletes_removed: number;
  accounts: Record<string, number>;
  stream_errors: number;
  /** Of pairs_removed: pairs a commit proved gone (issue 13). */
  pairs_removed_by_proof: number;
  /** Of pairs_added: pairs whose commit proved the repo's first record in the collection. */
  pairs_added_by_first_record: number;
  /** Delete ops that removed nothing for want of proof, by reason (durable, like the pairs). */
  deletes_kept_by_reason: Record<string, number>;
  /** Pairs live indexing added and removed, per collection. */
  collections: Record<string, LiveCollectionStatus>;
}

/** One collection's live counts (see LiveStatus). */
export interface LiveCollectionStatus {
  added: number;
  removed: number;
  removed_by_proof: number;
  added_by_first_record: number;
  deletes_kept: Record<string, number>;
}

/** Totals and per-collection rows of the index's live counts. */
export function collectionCounts(counts: ReadonlyMap<string, Readonly<LiveCounts>>): {
  added: number;
  removed: number;
  removedByProof: number;
  addedByFirstRecord: number;
  keptByReason: Record<string, number>;
  collections: Record<string, LiveCollectionStatus>;
} {
  let added = 0, removed = 0, removedByProof = 0, addedByFirstRecord = 0;
  const keptByReason: Record<string, number> = {};
  const collections: Record<string, LiveCollectionStatus> = {};
  for (const [name, c] of counts) {
    added += c.added;
    removed += c.removed;
    removedByProof += c.removedByProof ?? 0;
    addedByFirstRecord += c.addedByFirstRecord ?? 0;
    for (const [r, n] of Object.entries(c.deletesKept ?? {})) {
      keptByReason[r] = (keptByReason[r] ?? 0) + n;
    }
    collections[name] = {
      added: c.added,
      removed: c.removed,
      removed_by_proof: c.removedByProof ?? 0,
      added_by_first_record: c.addedByFirstRecord ?? 0,
      deletes_kept: { ...c.deletesKept },
    };
  }
  return { added, removed, removedByProof, addedByFirstRecord, keptByReason, collections };
}

/** Where durable state goes besides the index (Postgres, for status when the server is down). */
export interface LiveMirror {
  save(
    url: string,
    checkpoint: LiveCheckpoint,
    counts: ReadonlyMap<string, { added: number; removed: number }>,
  ): Promise<void>;
}

/** Everything a LiveConsumer needs; the numbers have defaults. */
export interface LiveConsumerOptions {
  readonly endpoint: StreamEndpoint;
  readonly index: IndexStore;
  readonly log: Logger;
  readonly mirror?: LiveMirror;
  /** A socket that sends nothing for this long is dead (default 60 s). */
  readonly idleTimeoutMs?: number;
  readonly reconnectBaseMs?: number;
  readonly reconnectMaxMs?: number;
  /** Longest a decoded event waits before its batch is written (default 100 ms). */
  readonly flushMs?: number;
  /** Steps per batch at most (default 4,000). */
  readonly maxBatch?: number;
  /** Messages held undecoded before the socket is closed and resumed from the cursor (default 20,000). */
  readonly maxQueue?: number;
  /** How far before the saved time_us a Jetstream is resumed (its cursor is a time; default 2 s). */
  readonly jetstreamRewindUs?: number;
  readonly mirrorEveryMs?: number;
  /**
   * Decides a commit's deletes and first records from its own blocks (issue 13). Default:
   * `decideCommit` against this index. Tests may swap it.
   */
  readonly decide?: (ev: Extract<LiveEvent, { type: "commit" }>) => Promise<CommitDecision>;
  readonly clock?: Clock;
  /** Told when a catch-up backfill becomes needed. */
  readonly onCatchUpNeeded?: (reason: string) => void;
}

interface Pending {
  steps: LiveStep[];
  times: number[];
  cursor: number | undefined;
  eventTime: number | null;
  startedAt: number;
}

const LAG_SAMPLES = 10_000;

/** Runs one live stream into the index until its signal aborts. */
export class LiveConsumer {
  readonly #opts: LiveConsumerOptions;
  readonly #clock: Clock;
  readonly #counts: PlanCounts = newPlanCounts();
  readonly #skipped = Object.fromEntries(SKIP_KINDS.map((k) => [k, 0])) as Record<SkipKind, number>;
  #checkpoint: LiveCheckpoint;
  #pending: Pending;
  #writing: Promise<void> = Promise.resolve();
  #inflight = 0;
  #writeFailed: unknown;
  /** The newest cursor handed to a batch (durable or not) and the deletions counted with it. */
  #seen: number;
  #accountsDeleted: number;
  #connected = false;
  #reconnects = 0;
  #overflows = 0;
  #streamErrors = 0;
  #events = 0;
  #lastError: string | null = null;
  #dropCursor = false;
  readonly #lag = new Float64Array(LAG_SAMPLES);
  #lagN = 0;
  /** (time, durable events, durable ops) samples for the rates; bounded. */
  readonly #rate: [number, number, number][] = [];
  #durableEvents = 0;
  #durableOps = 0;
  #mirrored = "";
  #socket?: WebSocket;
  /** Pairs the index holds or will hold once the planned batches are written (see #prefetch). */
  #known = new PresentCache(KNOWN_PAIRS);
  /** Accounts deleted since: their pairs in #known are stale. */
  readonly #gone = new Set<string>();

  private constructor(opts: LiveConsumerOptions, checkpoint: LiveCheckpoint) {
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    this.#checkpoint = checkpoint;
    this.#seen = checkpoint.cursor;
    this.#accountsDeleted = checkpoint.accountsDeleted;
    this.#pending = this.#fresh();
  }

  /** Loads the saved checkpoint for the endpoint (a first start marks that a backfill is needed). */
  static async open(opts: LiveConsumerOptions): Promise<LiveConsumer> {
    const saved = await opts.index.liveCheckpoint(opts.endpoint.url) as LiveCheckpoint | undefined;
    const now = (opts.clock ?? systemClock).now();
    const cp: LiveCheckpoint = saved ?? {
      kind: opts.endpoint.kind,
      cursor: -1,
      eventTime: null,
      accountsDeleted: 0,
      outdatedCursors: 0,
      catchUpSince: now,
      catchUpReason:
        "no saved cursor for this stream: events before it started are only in a backfill",
    };
    return new LiveConsumer(opts, cp);
  }

  /** The durable checkpoint. */
  get checkpoint(): LiveCheckpoint {
    return this.#checkpoint;
  }

  /** Reads and indexes until `signal` aborts; the last batch is written before it returns. */
  async run(signal: AbortSignal): Promise<void> {
    const mirrorTimer = setInterval(() => this.#mirror(), this.#opts.mirrorEveryMs ?? 2_000);
    const backoff: Backoff = {
      minTimeout: this.#opts.reconnectBaseMs ?? 1_000,
      maxTimeout: this.#opts.reconnectMaxMs ?? 60_000,
      jitter: 1,
    };
    try {
      while (!signal.aborted) {
        // Each retry() lasts until an overflow, which reconnects at once with the back-off reset.
        await retry((attempt) => this.#connectOnce(signal, attempt), {
          signal,
          maxAttempts: Infinity,
          ...backoff,
          sleep: (ms, s) => this.#clock.sleep(ms, s),
          onRetry: (err, _failures, ms) => this.#reconnecting(errorMessage(err), ms),
        }).catch(() => {/* only an abort ends it */});
        if (!signal.aborted) {
          this.#overflows++;
          this.#reconnecting("overflow", 0);
        }
      }
    } finally {
      clearInterval(mirrorTimer);
      this.#socket?.close();
      this.#flush();
      await this.#settle();
      await this.#mirror();
    }
  }

  /**
   * One connection, to its end. Resolves only after an overflow (the queue outgrew its bound: the
   * socket is dropped and resumed from the cursor at once); otherwise it throws why it ended. A
   * connection that worked for a while resets the back-off.
   */
  async #connectOnce(signal: AbortSignal, attempt: RetryAttempt): Promise<void> {
    const cursor = this.#resumeCursor();
    const url = connectUrl(this.#opts.endpoint, cursor);
    this.#opts.log.info("live stream connecting", { url, cursor: cursor ?? null });
    const started = this.#clock.now();
    const eventsBefore = this.#events;
    const how = await this.#session(url, signal, cursor === undefined).catch((err) => {
      this.#lastError = errorMessage(err);
      return "error" as const;
    });
    this.#connected = false;
    await this.#settle();
    if (how === "overflow") return;
    if (this.#events > eventsBefore && this.#clock.now() - started > 30_000) attempt.reset();
    throw new Error(how);
  }

  #reconnecting(reason: string, delayMs: number): void {
    this.#reconnects++;
    this.#opts.log.warn("live stream disconnected; reconnecting", {
      url: this.#opts.endpoint.url,
      reason,
      error: this.#lastError,
      delay_ms: Math.round(delayMs),
    });
  }

  /** Marks that a catch-up run starting at `startedAt` (ms) covered the gap, if it started after it. */
  async catchUpDone(startedAt: number): Promise<void> {
    const since = this.#checkpoint.catchUpSince;
    if (since === null || startedAt < since) return;
    this.#checkpoint = { ...this.#checkpoint, catchUpSince: null, catchUpReason: null };
    // After any batch in flight, which carries the mark.
    const write = this.#writing.then(() =>
      this.#opts.index.applyLive([], { stream: this.#opts.endpoint.url, value: this.#checkpoint })
    ).then(() => {});
    this.#writing = write.catch(() => {});
    await write;
    this.#opts.log.info("live stream: catch-up done, the index has no known gap");
  }

  /** The status object (see LiveStatus). */
  status(): LiveStatus {
    const now = this.#clock.now();
    const cp = this.#checkpoint;
    const totals = collectionCounts(this.#opts.index.liveCounts());
    const first = this.#rate[0];
    const secs = first ? (now - first[0]) / 1000 : 0;
    return {
      url: this.#opts.endpoint.url,
      kind: this.#opts.endpoint.kind,
      connected: this.#connected,
      cursor: cp.cursor >= 0 ? cp.cursor : null,
      event_time: cp.eventTime === null ? null : new Date(cp.eventTime).toISOString(),
      lag_seconds: cp.eventTime === null ? null : round((now - cp.eventTime) / 1000),
      lag_p50_seconds: this.#lagQuantile(0.5),
      lag_p99_seconds: this.#lagQuantile(0.99),
      events_per_sec: secs > 0 ? round((this.#durableEvents - first[1]) / secs) : 0,
      ops_per_sec: secs > 0 ? round((this.#durableOps - first[2]) / secs) : 0,
      pairs_added: totals.added,
      pairs_removed: totals.removed,
      pairs_removed_by_proof: totals.removedByProof,
      pairs_added_by_first_record: totals.addedByFirstRecord,
      deletes_kept_by_reason: totals.keptByReason,
      accounts_deleted: cp.accountsDeleted,
      reconnects: this.#reconnects,
      queue_overflows: this.#overflows,
      last_error: this.#lastError,
      outdated_cursor: cp.outdatedCursors,
      catch_up_needed: cp.catchUpSince !== null,
      catch_up_reason: cp.catchUpReason,
      events: this.#events,
      ops: this.#counts.ops,
      skipped: { ...this.#skipped },
      invalid_ops: this.#counts.invalidOps,
      deletes_kept: this.#counts.deletesKept,
      deletes_removed: this.#counts.deletesRemoved,
      accounts: { ...this.#counts.accounts },
      stream_errors: this.#streamErrors,
      collections: totals.collections,
    };
  }

  #resumeCursor(): number | undefined {
    if (this.#dropCursor || this.#checkpoint.cursor < 0) return undefined;
    const c = this.#checkpoint.cursor;
    if (this.#opts.endpoint.kind === "firehose") return c;
    return Math.max(0, c - (this.#opts.jetstreamRewindUs ?? 2_000_000));
  }

  /**
   * Makes the start of a connection without a cursor durable before anything from it is indexed,
   * so that a crash before the first batch replays from there instead of the tip. `cursor` is the
   * last event before the start: the first frame's seq − 1, or a Jetstream's time_us at connect.
   */
  async #startAt(cursor: number): Promise<void> {
    await this.#settle();
    const cp: LiveCheckpoint = { ...this.#checkpoint, cursor, eventTime: null };
    await this.#opts.index.applyLive([], { stream: this.#opts.endpoint.url, value: cp });
    this.#checkpoint = cp;
    this.#seen = cursor;
    this.#dropCursor = false;
    this.#opts.log.info("live stream: started without a cursor; the start is durable", { cursor });
  }

  /** One connection: resolves with why it ended, after every message it delivered is handled. */
  async #session(
    url: string,
    signal: AbortSignal,
    fromTip: boolean,
  ): Promise<"closed" | "idle" | "overflow" | "error"> {
    // A Jetstream's cursor is a time: the start is known before the first message.
    if (fromTip && this.#opts.endpoint.kind === "jetstream") {
      await this.#startAt(Math.floor(this.#clock.now() * 1000));
      fromTip = false;
    }
    const idleMs = this.#opts.idleTimeoutMs ?? 60_000;
    const maxQueue = this.#opts.maxQueue ?? 20_000;
    const firehose = this.#opts.endpoint.kind === "firehose";
    return new Promise((resolve) => {
      const queue: (ArrayBuffer | string)[] = [];
      let how: "closed" | "idle" | "overflow" | "error" = "closed";
      let open = true, draining = false, lastMessage = this.#clock.now();
      let wake: (() => void) | undefined;
      const ws = new WebSocket(url);
      this.#socket = ws;
      ws.binaryType = "arraybuffer";
      const close = (why: typeof how, error?: string) => {
        if (how === "closed") how = why;
        if (error) this.#lastError = error;
        try {
          ws.close();
        } catch { /* already closing */ }
        finish();
      };
      const onAbort = () => close("closed");
      signal.addEventListener("abort", onAbort, { once: true });
      const idle = setInterval(() => {
        if (this.#clock.now() - lastMessage > idleMs) {
          close("idle", `no message for ${Math.round(idleMs / 1000)} s`);
        }
      }, Math.max(50, Math.min(5_000, idleMs / 4)));
      ws.onopen = () => {
        this.#connected = true;
        lastMessage = this.#clock.now();
        this.#opts.log.info("live stream connected", { url });
      };
      ws.onmessage = (e) => {
        lastMessage = this.#clock.now();
        if (!open) return;
        queue.push(e.data);
        if (queue.length > maxQueue) close("overflow");
        wake?.();
      };
      ws.onerror = (e) => {
        const msg = (e as ErrorEvent).message;
        if (msg) this.#lastError = msg;
      };
      ws.onclose = (e) => {
        if (how === "closed" && e.code !== 1000 && e.code !== 1005) {
          this.#lastError = `connection closed (${e.code}${e.reason ? ` ${e.reason}` : ""})`;
          how = "error";
        }
        finish();
      };
      const finish = () => {
        if (!open) return;
        open = false;
        this.#connected = false;
        wake?.();
      };
      // Handles queued messages, one after another, until the connection ends and the queue is empty.
      const drain = async () => {
        if (draining) return;
        draining = true;
        try {
          for (;;) {
            while (queue.length > 0) {
              // A chunk at a time: its index reads are one round trip, not one per event.
              const events = queue.splice(0, CHUNK).map((m) =>
                typeof m === "string"
                  ? (firehose ? badType("text message on a firehose") : decodeJetstreamMessage(m))
                  : (firehose
                    ? decodeFirehoseFrame(new Uint8Array(m))
                    : badType("binary message on a Jetstream"))
              );
              if (fromTip) {
                const first = events.find((ev) => "cursor" in ev && ev.cursor !== undefined);
                if (first && "cursor" in first && first.cursor !== undefined) {
                  fromTip = false;
                  await this.#startAt(first.cursor - 1);
                }
              }
              const held = await this.#prefetch(events);
              for (const ev of events) {
                const stop = await this.#handle(ev, held);
                if (stop) close("error", stop);
                if (this.#shouldFlush()) {
                  // At most one batch being written while the next is built.
                  if (this.#inflight > 0) await this.#writing;
                  this.#flush();
                }
                if (this.#writeFailed !== undefined) throw this.#writeFailed;
              }
            }
            if (!open) break;
            const waitMs = this.#pending.times.length > 0
              ? Math.max(
                0,
                this.#pending.startedAt + (this.#opts.flushMs ?? 100) - this.#clock.now(),
              )
              : 1_000;
            // Until the flush is due, or a message or the end of the connection wakes it.
            const woken = new AbortController();
            wake = () => woken.abort();
            await sleep(waitMs, woken.signal).catch(() => {});
            wake = undefined;
            if (this.#pending.times.length > 0 && queue.length === 0) {
              if (this.#inflight > 0) await this.#writing;
              this.#flush();
            }
            if (this.#writeFailed !== undefined) throw this.#writeFailed;
          }
          this.#flush();
          await this.#writing;
          if (this.#writeFailed !== undefined) throw this.#writeFailed;
        } catch (err) {
          how = "error";
          this.#lastError = errorMessage(err);
          try {
            ws.close();
          } catch { /* closing */ }
        } finally {
          clearInterval(idle);
          signal.removeEventListener("abort", onAbort);
          resolve(how);
        }
      };
      drain();
    });
  }

  /**
   * Whether the index holds each (collection, repo) that a chunk's firehose creates name and this
   * consumer does not know of, read in one getMany per collection, all at once: `decideCommit`
   * asks it to skip needless proofs, and a read per op would make every event wait for a LevelDB
   * round trip. A read that a batch in flight overtakes only costs a proof that was not needed.
   */
  async #prefetch(events: readonly LiveEvent[]): Promise<Map<string, boolean>> {
    const read = new Map<string, boolean>();
    if (this.#opts.decide) return read;
    const byCollection = new Map<string, string[]>();
    for (const ev of events) {
      if (ev.type !== "commit" || !ev.firehose) continue;
      for (const op of ev.ops) {
        if (op.action !== "create" || !isNsid(op.collection)) continue;
        const key = pairKey(op.collection, ev.did);
        if (read.has(key) || this.#knows(key, ev.did)) continue;
        read.set(key, false);
        let dids = byCollection.get(op.collection);
        if (!dids) byCollection.set(op.collection, dids = []);
        dids.push(ev.did);
      }
    }
    await Promise.all([...byCollection].map(async ([collection, dids]) => {
      const held = await this.#opts.index.holdsMany(collection, dids);
      dids.forEach((did, i) => held[i] && read.set(pairKey(collection, did), true));
    }));
    return read;
  }

  /** True when the index holds the pair, or will once the batches planned so far are written. */
  #knows(key: string, did: string): boolean {
    return this.#known.has(key) && !this.#gone.has(did);
  }

  /** Remembers what planned steps change, for later `holds` questions. */
  #learn(steps: readonly LiveStep[], from: number, read: Map<string, boolean>): void {
    for (let i = from; i < steps.length; i++) {
      const s = steps[i];
      if (s.kind === "add" || s.kind === "remove") {
        const key = pairKey(s.collection, s.did);
        read.set(key, s.kind === "add");
        if (s.kind === "add") this.#known.add(key);
        else this.#known.delete(key);
      } else if (s.kind === "delete-account") {
        if (this.#gone.size >= KNOWN_PAIRS / 20) {
          this.#gone.clear();
          this.#known = new PresentCache(KNOWN_PAIRS);
        }
        this.#gone.add(s.did);
        for (const key of read.keys()) if (key.endsWith("\x00" + s.did)) read.set(key, false);
      }
    }
  }

  /** Applies one decoded event to the pending batch; returns a reason to close the connection. */
  async #handle(ev: LiveEvent, read = new Map<string, boolean>()): Promise<string | undefined> {
    const log = this.#opts.log;
    this.#events++;
    const before = this.#pending.steps.length;
    try {
      return await this.#plan(ev, read, log);
    } finally {
      this.#learn(this.#pending.steps, before, read);
    }
  }

  async #plan(
    ev: LiveEvent,
    read: Map<string, boolean>,
    log: Logger,
  ): Promise<string | undefined> {
    switch (ev.type) {
      case "commit": {
        const holds = (c: string, did: string) => {
          const key = pairKey(c, did);
          const h = read.get(key) ?? (this.#knows(key, did) || undefined);
          return h === undefined ? this.#opts.index.holds(c, did) : Promise.resolve(h);
        };
        const decision = this.#opts.decide
          ? await this.#opts.decide(ev)
          : await decideCommit(ev, holds);
        planEvent(ev, this.#pending.steps, this.#counts, decision);
        this.#advance(ev.cursor, ev.timeMs);
        return;
      }
      case "account": {
        const before = this.#pending.steps.length;
        planEvent(ev, this.#pending.steps, this.#counts);
        if (this.#pending.steps[before]?.kind === "delete-account") {
          this.#accountsDeleted++;
          log.info("live stream: account deleted, removing it from every collection", {
            did: ev.did,
            cursor: ev.cursor,
          });
        } else if (!ev.active) {
          log.debug("live stream: account inactive, its pairs stay", {
            did: ev.did,
            status: ev.status ?? null,
          });
        }
        this.#advance(ev.cursor, ev.timeMs);
        return;
      }
      case "skip":
        this.#skipped[ev.kind]++;
        if (ev.kind === "malformed") {
          log.warn("live stream: malformed message skipped", { detail: ev.detail });
        }
        if (ev.cursor !== undefined) this.#advance(ev.cursor, ev.timeMs ?? NaN);
        return;
      case "info":
        if (ev.name === "OutdatedCursor") {
          log.warn("live stream: the relay no longer holds our cursor; events were missed", {
            cursor: this.#checkpoint.cursor,
            message: ev.message ?? null,
          });
          this.#checkpoint = {
            ...this.#checkpoint,
            outdatedCursors: this.#checkpoint.outdatedCursors + 1,
          };
          this.#needCatchUp(
            `the relay no longer held cursor ${this.#checkpoint.cursor} (OutdatedCursor)`,
          );
          // Deletes proven before the gap may be undone by creates we missed: listings may re-add.
          await this.#opts.index.markLiveGap(this.#clock.now());
        } else log.info("live stream: info", { name: ev.name, message: ev.message ?? null });
        return;
      case "error":
        this.#streamErrors++;
        if (ev.error === "FutureCursor") {
          // The relay has not reached our cursor (restored from a backup, or reset): start from now.
          this.#dropCursor = true;
          this.#needCatchUp(`the relay refused cursor ${this.#checkpoint.cursor} (FutureCursor)`);
          await this.#opts.index.markLiveGap(this.#clock.now());
        }
        return `stream error ${ev.error}${ev.message ? `: ${ev.message}` : ""}`;
    }
  }

  #advance(cursor: number, timeMs: number): void {
    const p = this.#pending;
    if (p.times.length === 0) p.startedAt = this.#clock.now();
    p.times.push(timeMs);
    if (this.#dropCursor || cursor > this.#seen) {
      this.#dropCursor = false;
      this.#seen = cursor;
      p.cursor = cursor;
      if (Number.isFinite(timeMs)) p.eventTime = timeMs;
    }
  }

  #needCatchUp(reason: string): void {
    if (this.#checkpoint.catchUpSince === null) {
      this.#checkpoint = {
        ...this.#checkpoint,
        catchUpSince: this.#clock.now(),
        catchUpReason: reason,
      };
    }
    this.#opts.onCatchUpNeeded?.(reason);
  }

  #shouldFlush(): boolean {
    const p = this.#pending;
    return p.steps.length >= (this.#opts.maxBatch ?? 4_000) ||
      (p.times.length > 0 && this.#clock.now() - p.startedAt >= (this.#opts.flushMs ?? 100));
  }

  #fresh(): Pending {
    return {
      steps: [],
      times: [],
      cursor: undefined,
      eventTime: null,
      startedAt: 0,
    };
  }

  /**
   * Starts writing the pending batch with its cursor, after the batch before it. A failed write
   * fails every later one (`#writeFailed`); the cursor stays where it was and the stream resends.
   */
  #flush(): void {
    const p = this.#pending;
    if (p.times.length === 0) return;
    this.#pending = this.#fresh();
    const url = this.#opts.endpoint.url;
    const cursor = p.cursor, eventTime = p.eventTime, deleted = this.#accountsDeleted;
    const ops = p.steps.length;
    this.#inflight++;
    const write = this.#writing.then(async () => {
      if (this.#writeFailed !== undefined) throw this.#writeFailed;
      const cp: LiveCheckpoint = {
        ...this.#checkpoint,
        cursor: cursor ?? this.#checkpoint.cursor,
        eventTime: cursor === undefined ? this.#checkpoint.eventTime : eventTime,
        accountsDeleted: deleted,
      };
      await this.#opts.index.applyLive(p.steps, { stream: url, value: cp });
      this.#checkpoint = {
        ...this.#checkpoint,
        cursor: cp.cursor,
        eventTime: cp.eventTime,
        accountsDeleted: cp.accountsDeleted,
      };
      const now = this.#clock.now();
      for (const t of p.times) {
        if (Number.isFinite(t)) this.#lag[this.#lagN++ % LAG_SAMPLES] = (now - t) / 1000;
      }
      this.#durableEvents += p.times.length;
      this.#durableOps += ops;
      const last = this.#rate[this.#rate.length - 1];
      if (!last || now - last[0] >= 1000) {
        this.#rate.push([now, this.#durableEvents, this.#durableOps]);
        if (this.#rate.length > 11) this.#rate.shift();
      }
    });
    this.#writing = write.then(() => {}, (err) => {
      this.#writeFailed ??= err;
    }).finally(() => this.#inflight--);
  }

  /** Waits for writes in flight; after a failure, forgets what was not written (it is resent). */
  async #settle(): Promise<void> {
    await this.#writing;
    if (this.#writeFailed !== undefined) {
      this.#opts.log.error("live stream: a batch was not written; resuming from the saved cursor", {
        error: errorMessage(this.#writeFailed),
        cursor: this.#checkpoint.cursor,
      });
      this.#lastError = errorMessage(this.#writeFailed);
      this.#writeFailed = undefined;
      this.#pending = this.#fresh();
      this.#known = new PresentCache(KNOWN_PAIRS);
      this.#seen = this.#checkpoint.cursor;
      this.#accountsDeleted = this.#checkpoint.accountsDeleted;
    }
  }

  #lagQuantile(q: number): number | null {
    const n = Math.min(this.#lagN, LAG_SAMPLES);
    if (n === 0) return null;
    const sorted = this.#lag.slice(0, n).sort();
    return round(sorted[Math.min(n - 1, Math.floor(n * q))]);
  }

  async #mirror(): Promise<void> {
    const m = this.#opts.mirror;
    if (!m) return;
    const key = JSON.stringify(this.#checkpoint);
    if (key === this.#mirrored) return;
    try {
      await m.save(this.#opts.endpoint.url, this.#checkpoint, this.#opts.index.liveCounts());
      this.#mirrored = key;
    } catch (err) {
      this.#opts.log.debug("live stream: Postgres mirror not updated", {
        error: errorMessage(err),
      });
    }
  }
}

/** Messages decoded and planned together (their index reads are one round trip). */
const CHUNK = 1_000;
/** Pairs the consumer remembers as held (first in, first out). */
const KNOWN_PAIRS = 200_000;

function pairKey(collection: string, did: string): string {
  return collection + "\x00" + did;
}

function badType(detail: string): LiveEvent {
  return { type: "skip", kind: "malformed", detail };
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

/** Status from the Postgres mirror, for a server that runs no consumer now (or has not started it). */
export function mirroredStatus(
  row: {
    url: string;
    kind: string;
    cursor: number;
    eventTime: Date | null;
    accountsDeleted: number;
    outdatedCursors: number;
    catchUpSince: Date | null;
    catchUpReason: string | null;
  },
  counts: ReadonlyMap<string, LiveCounts>,
  now: number,
): LiveStatus {
  const totals = collectionCounts(counts);
  const t = row.eventTime?.getTime() ?? null;
  return {
    url: row.url,
    kind: row.kind === "jetstream" ? "jetstream" : "firehose",
    connected: false,
    cursor: row.cursor >= 0 ? row.cursor : null,
    event_time: t === null ? null : new Date(t).toISOString(),
    lag_seconds: t === null ? null : round((now - t) / 1000),
    lag_p50_seconds: null,
    lag_p99_seconds: null,
    events_per_sec: 0,
    ops_per_sec: 0,
    pairs_added: totals.added,
    pairs_removed: totals.removed,
    pairs_removed_by_proof: totals.removedByProof,
    pairs_added_by_first_record: totals.addedByFirstRecord,
    deletes_kept_by_reason: totals.keptByReason,
    accounts_deleted: row.accountsDeleted,
    reconnects: 0,
    queue_overflows: 0,
    last_error: "not consuming: LIVE_STREAM_URL is not set on this server",
    outdated_cursor: row.outdatedCursors,
    catch_up_needed: row.catchUpSince !== null,
    catch_up_reason: row.catchUpReason,
    events: 0,
    ops: 0,
    skipped: Object.fromEntries(SKIP_KINDS.map((k) => [k, 0])) as Record<SkipKind, number>,
    invalid_ops: 0,
    deletes_kept: 0,
    deletes_removed: 0,
    accounts: {},
    stream_errors: 0,
    collections: totals.collections,
  };
}

/**
 * The simulated relay's live streams over its world: a `subscribeRepos` firehose (DAG-CBOR frames
 * with CAR blocks) and a Jetstream (`/subscribe`, JSON), both from one event log. The log grows over
 * time, keeps a bounded replay backlog addressable by cursor (seq, or time_us), and carries account
 * deletions, deactivations, identity and sync events, unknown types and malformed frames. New pairs
 * are appended to the world too, so the relay's `listReposByCollection` lists them as bsky.network
 * would; deleted accounts stay listed there (sources never remove) and leave `truth()`.
 */
import { Buffer } from "node:buffer";
import type http from "node:http";
import type { Duplex } from "node:stream";
import { encode, toBytes } from "@atcute/cbor";
import { type CommitProducer, type CommitWrite, SimpleCommitProducer, tid } from "./commit.ts";
import { type ProofMode, SimRepos } from "./repo.ts";
import { formatDid, seededRandom, type SimWorld } from "./world.ts";
import { acceptWebSocket, refuseUpgrade, type SimSocket } from "./ws.ts";

/** How often each kind of event happens, per generated event (the rest are commits). */
export interface StreamMix {
  /** Share of commits by an account never seen before. */
  newAccount: number;
  /** Share of creates in a collection the world has never seen. */
  newCollection: number;
  /** Share of commits by an account writing again in a collection it wrote to recently. */
  repeat: number;
  /** Share of commits with 2–5 ops. */
  multiOp: number;
  /** Of ops on a pair the account already holds: updates and deletes (the rest are creates). */
  update: number;
  delete: number;
  /** Share of events that delete an account. */
  accountDelete: number;
  /** Share of events that deactivate (or take down) an account, reactivated later. */
  deactivate: number;
  identity: number;
  sync: number;
  /** Frames of a type the consumer does not know. */
  unknown: number;
  /** Frames that are not valid DAG-CBOR (or JSON). */
  malformed: number;
  /** With real repos: share of commits whose proof is withheld, corrupted or pre-v1.1. */
  unprovable: number;
}

/** A mix shaped like the network: mostly creates by known accounts, rare account events. */
export const DEFAULT_MIX: StreamMix = {
  newAccount: 0.01,
  newCollection: 0.002,
  repeat: 0.8,
  multiOp: 0.05,
  update: 0.05,
  delete: 0.1,
  accountDelete: 0.003,
  deactivate: 0.002,
  identity: 0.01,
  sync: 0.002,
  unknown: 0.001,
  malformed: 0.001,
  unprovable: 0,
};

/** Options for a SimStream. */
export interface SimStreamOptions {
  readonly seed?: number;
  /** Events per second generated while `start()`ed. */
  readonly rate?: number;
  /** Most events kept for replay (default 200,000); older cursors get `OutdatedCursor`. */
  readonly backlog?: number;
  readonly mix?: Partial<StreamMix>;
  readonly producer?: CommitProducer;
  /**
   * Keep every account's repo as a real MST (lib/sim/repo.ts) and send real sync v1.1 commits:
   * updates and deletes touch records the repo holds, a delete can take a collection's last record,
   * and `truth()` is the repos' (a repo is in a collection while it holds a record there).
   */
  readonly realRepos?: boolean;
  /** Wall clock in ms (tests may fake it). */
  readonly now?: () => number;
}

/** Faults that can change at runtime. */
export interface StreamFaults {
  /** Stop sending to connected subscribers (the socket stays open: an idle, dead stream). */
  hang?: boolean;
  /** Drop each connection without a close frame after this many messages. */
  dropAfter?: number;
  /** Refuse new connections with HTTP 503. */
  refuse?: boolean;
}

/** Counters for tests and the CLI. */
export interface StreamStats {
  events: number;
  connections: number;
  sent: number;
  accountsDeleted: number;
  pairsAdded: number;
}

type Desc =
  | { kind: "commit"; did: string; ops: { w: CommitWrite; cid: string | null }[] }
  | { kind: "account"; did: string; active: boolean; status?: string }
  | { kind: "identity"; did: string }
  | { kind: "sync"; did: string }
  | { kind: "unknown"; did: string }
  | { kind: "malformed" };

interface Entry {
  /** Firehose seq (a malformed entry repeats the previous one and is never addressed). */
  readonly seq: number;
  /** time_us of the first Jetstream message of this entry; one more per further op. */
  readonly us: number;
  readonly time: string;
  readonly frame: Uint8Array;
  readonly desc: Desc;
}

// @atcute/cbor's encoder takes 1 KiB Buffers from node's pool; Deno refills its 8 KiB pool slowly.
Buffer.poolSize = 1 << 20;

const FIREHOSE = "/xrpc/com.atproto.sync.subscribeRepos";
const JETSTREAM = "/subscribe";
const SEND_CHUNK = 256 * 1024;

/** A live event log over a world, served as a firehose and as a Jetstream. */
export class SimStream {
  readonly stats: StreamStats = {
    events: 0,
    connections: 0,
    sent: 0,
    accountsDeleted: 0,
    pairsAdded: 0,
  };
  readonly #world: SimWorld;
  readonly #rand: () => number;
  readonly #mix: StreamMix;
  readonly #producer: CommitProducer;
  readonly #repos?: SimRepos;
  readonly #idOf = new Map<string, number>();
  #unprovable = 0;
  readonly #now: () => number;
  readonly #max: number;
  #entries: Entry[] = [];
  /** Absolute index of `#entries[0]`. */
  #base = 0;
  #seq = 0;
  /** The newest seq no longer held: a cursor before it has missed events. */
  #droppedSeq = 0;
  #us = 0;
  /** Recently written pairs, mostly written again (active accounts keep liking and posting). */
  readonly #recent: [number, string][] = [];
  #rate: number;
  #timer?: ReturnType<typeof setInterval>;
  #releaser?: ReturnType<typeof setInterval>;
  /** Events generated ahead, not in the log yet (see `hold`). */
  #held: Entry[] = [];
  #generating: Promise<void> = Promise.resolve();
  #wake: (() => void)[] = [];
  #faults: StreamFaults = {};
  readonly #subs = new Set<SimSocket>();
  /** Ids per collection, built when a collection is first touched. */
  readonly #members = new Map<string, Set<number>>();
  readonly #deleted = new Set<number>();
  readonly #inactive = new Set<number>();
  #newCollections = 0;

  constructor(world: SimWorld, opts: SimStreamOptions = {}) {
    this.#world = world;
    this.#rand = seededRandom((opts.seed ?? world.seed) ^ 0x57ea);
    this.#mix = { ...DEFAULT_MIX, ...opts.mix };
    if (opts.realRepos) {
      const repos = new SimRepos({
        now: opts.now,
        sign: false,
        // The collections the world lists an account in, before the stream touches it.
        history: (did) => {
          const id = this.#idOf.get(did);
          if (id === undefined) return [];
          return this.#world.collections().filter((c) => this.#membersOf(c).has(id));
        },
      });
      this.#repos = repos;
      this.#producer = {
        commit: (did, writes, time) =>
          repos.commit(did, writes, time, { proof: this.#proofMode() }),
      };
    } else this.#producer = opts.producer ?? new SimpleCommitProducer();
    this.#now = opts.now ?? Date.now;
    this.#max = opts.backlog ?? 200_000;
    this.#rate = opts.rate ?? 0;
  }

  /** The last seq issued (0 before any event). */
  get lastSeq(): number {
    return this.#seq;
  }

  /** The last time_us issued. */
  get lastTimeUs(): number {
    return this.#us;
  }

  /** The oldest seq still held for replay. */
  get oldestSeq(): number {
    return this.#entries.find((e) => e.desc.kind !== "malformed")?.seq ?? this.#seq + 1;
  }

  /** The firehose frames held for replay, oldest first (for benchmarks that skip the socket). */
  frames(): Uint8Array[] {
    return this.#entries.map((e) => e.frame);
  }

  /** Accounts deleted so far (their DIDs stay in the world's listing). */
  deletedDids(): string[] {
    return [...this.#deleted].map((id) => formatDid(id, this.#world.salt));
  }

  /** Changes runtime faults (an undefined field turns that fault off). */
  setFaults(partial: StreamFaults): void {
    this.#faults = { ...this.#faults, ...partial };
    this.#wakeAll();
  }

  /** Events per second while started. */
  setRate(rate: number): void {
    this.#rate = rate;
  }

  /** Starts growth over time at the configured rate. */
  start(): void {
    if (this.#timer) return;
    let last = this.#now(), carry = 0;
    this.#timer = setInterval(() => {
      const now = this.#now();
      carry += (now - last) / 1000 * this.#rate;
      last = now;
      const n = Math.floor(carry);
      carry -= n;
      if (n > 0) this.generate(n).catch((err) => console.error("sim stream:", err));
    }, 10);
  }

  /** Stops growth and releases (connections stay open). */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    clearInterval(this.#releaser);
    this.#releaser = undefined;
  }

  /** Appends `n` events now; resolves when they are in the log and sent to waiting subscribers. */
  generate(n: number): Promise<void> {
    const run = this.#generating.then(async () => {
      for (let i = 0; i < n; i++) this.#push(await this.#entry(this.#next()));
      this.#wakeAll();
    });
    this.#generating = run.catch(() => {});
    return run;
  }

  /**
   * Generates `n` firehose events now and holds them back; `release` lets them into the log at a
   * set rate, each stamped with the time it is released. So a benchmark can offer a rate that the
   * generator could not keep up with live. Do not `generate` while held events remain.
   */
  hold(n: number): Promise<void> {
    const run = this.#generating.then(async () => {
      for (let i = 0; i < n; i++) this.#held.push(await this.#entry(this.#next()));
    });
    this.#generating = run.catch(() => {});
    return run;
  }

  /** Held events not yet released. */
  get held(): number {
    return this.#held.length;
  }

  /** Releases held events at `rate` per second from now; resolves when the last is in the log. */
  release(rate: number): Promise<void> {
    const t0 = this.#now();
    let released = 0;
    return new Promise((resolve) => {
      const tick = () => {
        const due = Math.floor((this.#now() - t0) * rate / 1000) - released;
        const time = new Date(this.#now()).toISOString();
        for (let i = 0; i < due && this.#held.length > 0; i++) {
          const e = this.#held.shift()!;
          retime(e.frame, time);
          this.#push({ ...e, time });
          released++;
        }
        if (due > 0) this.#wakeAll();
        if (this.#held.length === 0) {
          clearInterval(this.#releaser);
          this.#releaser = undefined;
          resolve();
        }
      };
      this.#releaser = setInterval(tick, 2);
    });
  }

  /**
   * The collection's DIDs as the live index must hold them: listed or added, minus deleted accounts
   * (and, with real repos, minus repos that hold no record there any more).
   */
  truth(collection: string): string[] {
    const salt = this.#world.salt;
    const out: string[] = [];
    const seen = new Set<number>();
    for (const id of this.#world.ids(collection)) {
      if (this.#deleted.has(id) || seen.has(id)) continue;
      seen.add(id);
      const did = formatDid(id, salt);
      if (this.#repos && !this.#repos.holds(this.#did(id), collection)) continue;
      out.push(did);
    }
    return out;
  }

  /** The repos, when the stream keeps real ones. */
  get repos(): SimRepos | undefined {
    return this.#repos;
  }

  /** Every n-th commit (n = 1/unprovable) proves nothing, cycling through the ways a proof fails. */
  #proofMode(): ProofMode {
    const share = this.#mix.unprovable;
    if (share <= 0 || this.#rand() >= share) return "full";
    const modes: ProofMode[] = ["withheld", "corrupted", "no-prev-data"];
    return modes[this.#unprovable++ % modes.length];
  }

  /** Closes every subscriber and stops growth. */
  close(): void {
    this.stop();
    for (const s of this.#subs) s.destroy();
    this.#subs.clear();
    this.#wakeAll();
  }

  /** Serves an HTTP upgrade for either stream path; false when the path is not a stream. */
  handleUpgrade(req: http.IncomingMessage, socket: Duplex): boolean {
    const url = new URL(req.url ?? "/", "http://sim");
    const kind = url.pathname === FIREHOSE
      ? "firehose"
      : url.pathname === JETSTREAM
      ? "jetstream"
      : undefined;
    if (!kind) return false;
    if (this.#faults.refuse) {
      refuseUpgrade(socket, 503, '{"error":"Unavailable"}');
      return true;
    }
    const raw = url.searchParams.get("cursor");
    if (raw !== null && !/^\d{1,16}$/.test(raw)) {
      refuseUpgrade(socket, 400, '{"error":"InvalidRequest","message":"bad cursor"}');
      return true;
    }
    const ws = acceptWebSocket(req, socket);
    if (!ws) return true;
    this.stats.connections++;
    this.#subs.add(ws);
    ws.closed.then(() => {
      this.#subs.delete(ws);
      this.#wakeAll();
    });
    const cursor = raw === null ? undefined : Number(raw);
    (kind === "firehose" ? this.#serveFirehose(ws, cursor) : this.#serveJetstream(ws, cursor))
      .catch(() => ws.destroy());
    return true;
  }

  async #serveFirehose(ws: SimSocket, cursor: number | undefined): Promise<void> {
    let pos: number;
    if (cursor === undefined) pos = this.#base + this.#entries.length;
    else if (cursor > this.#seq) {
      ws.queue(errorFrame("FutureCursor", "Cursor in the future."));
      await ws.flush();
      ws.close(1000, "future cursor");
      return;
    } else {
      if (cursor < this.#droppedSeq) {
        ws.queue(
          infoFrame("OutdatedCursor", "Requested cursor exceeded limit. Possibly missing events"),
        );
        pos = this.#base;
      } else pos = this.#base + upperBound(this.#entries, cursor);
    }
    await this.#pump(ws, pos, (e) => {
      ws.queue(e.frame);
      return 1;
    });
  }

  async #serveJetstream(ws: SimSocket, cursor: number | undefined): Promise<void> {
    let pos = this.#base + this.#entries.length;
    if (cursor !== undefined) {
      // Jetstream replays from the first event at or after the cursor's time.
      const i = this.#entries.findIndex((e) => e.us + opCount(e.desc) - 1 >= cursor);
      pos = i < 0 ? this.#base + this.#entries.length : this.#base + i;
    }
    await this.#pump(ws, pos, (e) => {
      const msgs = jetstreamMessages(e);
      let n = 0;
      for (const [us, m] of msgs) {
        if (cursor !== undefined && us < cursor) continue;
        ws.queue(m);
        n++;
      }
      return n;
    });
  }

  /** Sends entries from absolute position `pos` on, live, with the socket's backpressure. */
  async #pump(ws: SimSocket, pos: number, send: (e: Entry) => number): Promise<void> {
    let sent = 0;
    while (!ws.isClosed) {
      if (this.#faults.hang) {
        await ws.flush();
        await this.#waitForChange();
        continue;
      }
      if (pos < this.#base) {
        ws.queue(errorFrame("ConsumerTooSlow", "Stream consumer too slow"));
        await ws.flush();
        ws.close(1008, "consumer too slow");
        return;
      }
      const end = this.#base + this.#entries.length;
      if (pos >= end) {
        await ws.flush();
        await this.#waitForChange();
        continue;
      }
      while (pos < end && ws.queued < SEND_CHUNK) {
        sent += send(this.#entries[pos - this.#base]);
        pos++;
        const drop = this.#faults.dropAfter;
        if (drop !== undefined && sent >= drop) {
          await ws.flush();
          ws.destroy();
          return;
        }
      }
      this.stats.sent += sent;
      await ws.flush();
    }
  }

  #waitForChange(): Promise<void> {
    return new Promise((r) => this.#wake.push(r));
  }

  #wakeAll(): void {
    const w = this.#wake;
    this.#wake = [];
    for (const r of w) r();
  }

  /** Builds the log entry of an event (numbering it); `#push` puts it in the log. */
  async #entry(desc: Desc): Promise<Entry> {
    const nowMs = this.#now();
    const time = new Date(nowMs).toISOString();
    const ops = opCount(desc);
    const us = Math.max(this.#us + 1, nowMs * 1000);
    this.#us = us + ops - 1;
    let seq = this.#seq;
    let frame: Uint8Array;
    if (desc.kind === "malformed") {
      // Half truncated CBOR, half not CBOR at all.
      frame = this.#rand() < 0.5
        ? new Uint8Array([0xa2, 0x62, 0x6f, 0x70, 0x01])
        : new TextEncoder().encode("not a frame");
    } else {
      seq = this.#seq += 1 + (this.#rand() < 0.1 ? Math.floor(this.#rand() * 3) : 0);
      frame = await this.#frame(desc, seq, time);
    }
    return { seq, us, time, frame, desc };
  }

  #push(entry: Entry): void {
    this.#entries.push(entry);
    this.stats.events++;
    if (this.#entries.length > this.#max) {
      const drop = Math.max(1, Math.floor(this.#max / 10));
      this.#droppedSeq = this.#entries[drop - 1].seq;
      this.#entries = this.#entries.slice(drop);
      this.#base += drop;
    }
  }

  async #frame(desc: Exclude<Desc, { kind: "malformed" }>, seq: number, time: string) {
    switch (desc.kind) {
      case "commit": {
        const body = await this.#producer.commit(desc.did, desc.ops.map((o) => o.w), time);
        body.ops.forEach((o, i) => desc.ops[i].cid = o.cid?.$link ?? null);
        return frame("#commit", { ...body, seq, blocks: toBytes(body.blocks) });
      }
      case "account":
        return frame("#account", {
          seq,
          did: desc.did,
          time,
          active: desc.active,
          status: desc.status,
        });
      case "identity":
        return frame("#identity", { seq, did: desc.did, time, handle: "sim.test" });
      case "sync":
        return frame("#sync", {
          seq,
          did: desc.did,
          time,
          rev: tid(Date.parse(time) * 1000),
          blocks: toBytes(new Uint8Array()),
        });
      case "unknown":
        return frame("#future", { seq, did: desc.did, time });
    }
  }

  /** Draws the next event and applies it to the world's truth. */
  #next(): Desc {
    const r = this.#rand, m = this.#mix;
    let x = r();
    if ((x -= m.malformed) < 0) return { kind: "malformed" };
    if ((x -= m.unknown) < 0) return { kind: "unknown", did: this.#did(this.#pickAccount()) };
    if ((x -= m.identity) < 0) return { kind: "identity", did: this.#did(this.#pickAccount()) };
    if ((x -= m.sync) < 0) return { kind: "sync", did: this.#did(this.#pickAccount()) };
    if ((x -= m.accountDelete) < 0) {
      const id = this.#pickAccount();
      this.#deleted.add(id);
      this.#inactive.delete(id);
      this.stats.accountsDeleted++;
      return { kind: "account", did: this.#did(id), active: false, status: "deleted" };
    }
    if ((x -= m.deactivate) < 0) {
      // Reactivate one that is inactive, or deactivate (or take down) another.
      const back = this.#inactive.size > 0 && r() < 0.5;
      if (back) {
        const id = this.#inactive.values().next().value!;
        this.#inactive.delete(id);
        return { kind: "account", did: this.#did(id), active: true };
      }
      const id = this.#pickAccount();
      this.#inactive.add(id);
      const status = r() < 0.7 ? "deactivated" : r() < 0.5 ? "takendown" : "suspended";
      return { kind: "account", did: this.#did(id), active: false, status };
    }
    return this.#commit();
  }

  #commit(): Desc {
    const r = this.#rand, m = this.#mix;
    const fresh = r() < m.newAccount;
    const again = !fresh && this.#recent.length > 0 && r() < m.repeat;
    let pick = again ? this.#recent[Math.floor(r() * this.#recent.length)] : undefined;
    if (pick && (this.#deleted.has(pick[0]) || this.#inactive.has(pick[0]))) pick = undefined;
    const id = fresh ? this.#world.accountCount : pick?.[0] ?? this.#pickAccount();
    const n = !fresh && r() < m.multiOp ? 2 + Math.floor(r() * 4) : 1;
    const ops: { w: CommitWrite; cid: string | null }[] = [];
    const us = Math.max(this.#us + 1, this.#now() * 1000);
    const did = this.#did(id);
    const taken = new Set<string>();
    const entered = new Set<string>();
    for (let k = 0; k < n; k++) {
      const collection = fresh && k === 0
        ? "app.bsky.actor.profile"
        : k === 0 && pick
        ? pick[1]
        : this.#pickCollection();
      const members = this.#membersOf(collection);
      const repos = this.#repos;
      // With real repos, updates and deletes touch records the repo holds (not yet touched here).
      const free = repos?.rkeys(did, collection).filter((k) => !taken.has(`${collection}/${k}`));
      const held = repos ? free!.length > 0 : members.has(id);
      const y = r();
      let action: CommitWrite["action"] = held && y < m.update
        ? "update"
        : held && y < m.update + m.delete
        ? "delete"
        : "create";
      const profile = collection === "app.bsky.actor.profile";
      let rkey = profile ? "self" : tid(us + k, id);
      if (repos && profile && action === "create" && repos.holds(did, collection)) {
        if (!held) continue; // its one profile record is already written in this commit
        action = "update";
      }
      if (repos && action !== "create") rkey = free![Math.floor(r() * free!.length)];
      if (repos && taken.has(`${collection}/${rkey}`)) continue; // e.g. a second profile create
      taken.add(`${collection}/${rkey}`);
      const record = action === "delete"
        ? undefined
        : { $type: collection, createdAt: new Date(us / 1000).toISOString(), n: k };
      ops.push({ w: { action, collection, rkey, record }, cid: null });
      if (!again && action === "create") {
        if (this.#recent.length < 4096) this.#recent.push([id, collection]);
        else this.#recent[Math.floor(r() * 4096)] = [id, collection];
      }
      const newPair = repos ? !repos.holds(did, collection) && !entered.has(collection) : !held;
      if (newPair && action === "create") {
        entered.add(collection);
        this.stats.pairsAdded++;
        // A repo coming back to a collection it left is listed already: sources never remove.
        if (!members.has(id)) {
          members.add(id);
          this.#world.addId(collection, id);
        }
      }
    }
    if (ops.length === 0) return this.#commit();
    return { kind: "commit", did, ops };
  }

  #did(id: number): string {
    const did = formatDid(id, this.#world.salt);
    if (this.#repos) this.#idOf.set(did, id);
    return did;
  }

  /** A random existing account that is neither deleted nor inactive. */
  #pickAccount(): number {
    const pool = this.#world.accountCount;
    for (;;) {
      const id = Math.floor(this.#rand() * pool);
      if (!this.#deleted.has(id) && !this.#inactive.has(id)) return id;
    }
  }

  /** Collections weighted by size (so large ones see most writes), sometimes a new one. */
  #pickCollection(): string {
    if (this.#rand() < this.#mix.newCollection) {
      return `dev.sim.live.c${++this.#newCollections}x${this.#world.seed}`;
    }
    const cols = this.#world.collections();
    const weights = cols.map((c) => this.#world.size(c) + 1);
    let x = this.#rand() * weights.reduce((a, b) => a + b, 0);
    for (let i = 0; i < cols.length; i++) if ((x -= weights[i]) < 0) return cols[i];
    return cols[cols.length - 1];
  }

  #membersOf(collection: string): Set<number> {
    let s = this.#members.get(collection);
    if (!s) this.#members.set(collection, s = new Set(this.#world.ids(collection)));
    return s;
  }
}

function opCount(desc: Desc): number {
  return desc.kind === "commit" ? desc.ops.length : 1;
}

/** First index whose seq is greater than `cursor` (entries are sorted by seq). */
function upperBound(entries: readonly Entry[], cursor: number): number {
  let lo = 0, hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (entries[mid].seq <= cursor) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The CBOR bytes of the map key `time` followed by the head of a 24-byte text string. */
const TIME_KEY = [0x64, 0x74, 0x69, 0x6d, 0x65, 0x78, 0x18];

/**
 * Rewrites a frame's body `time` (an ISO string of 24 characters, like `iso`) in place. DAG-CBOR
 * sorts shorter keys first, so the body's `time` comes before its blocks and is the first match.
 */
function retime(frame: Uint8Array, iso: string): void {
  const bytes = new TextEncoder().encode(iso);
  if (bytes.length !== 24) return;
  outer: for (let i = 0; i + TIME_KEY.length + 24 <= frame.length; i++) {
    for (let k = 0; k < TIME_KEY.length; k++) if (frame[i + k] !== TIME_KEY[k]) continue outer;
    frame.set(bytes, i + TIME_KEY.length);
    return;
  }
}

function frame(t: string, body: Record<string, unknown>): Uint8Array {
  const head = encode({ op: 1, t });
  const b = encode(body);
  const out = new Uint8Array(head.length + b.length);
  out.set(head);
  out.set(b, head.length);
  return out;
}

function errorFrame(error: string, message: string): Uint8Array {
  const head = encode({ op: -1 });
  const b = encode({ error, message });
  const out = new Uint8Array(head.length + b.length);
  out.set(head);
  out.set(b, head.length);
  return out;
}

function infoFrame(name: string, message: string): Uint8Array {
  return frame("#info", { name, message });
}

/** The Jetstream messages of one entry, with their time_us. */
function jetstreamMessages(e: Entry): [number, string][] {
  const d = e.desc;
  switch (d.kind) {
    case "malformed":
      return [[e.us, '{"did":"did:plc:x","time_us":']];
    case "commit":
      return d.ops.map((o, k) => {
        const us = e.us + k;
        const commit: Record<string, unknown> = {
          rev: tid(us),
          operation: o.w.action,
          collection: o.w.collection,
          rkey: o.w.rkey,
        };
        if (o.w.record) {
          commit.record = o.w.record;
          commit.cid = o.cid;
        }
        return [us, JSON.stringify({ did: d.did, time_us: us, kind: "commit", commit })];
      });
    case "account": {
      const account: Record<string, unknown> = {
        active: d.active,
        did: d.did,
        seq: e.seq,
        time: e.time,
      };
      if (d.status) account.status = d.status;
      return [[e.us, JSON.stringify({ did: d.did, time_us: e.us, kind: "account", account })]];
    }
    case "identity":
      return [[
        e.us,
        JSON.stringify({
          did: d.did,
          time_us: e.us,
          kind: "identity",
          identity: { did: d.did, handle: "sim.test", seq: e.seq, time: e.time },
        }),
      ]];
    case "sync":
      // Jetstream has no sync events.
      return [];
    case "unknown":
      return [[e.us, JSON.stringify({ did: d.did, time_us: e.us, kind: "future" })]];
  }
}

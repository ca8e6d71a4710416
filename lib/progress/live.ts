/** The live stream's state in Postgres: a mirror of the index's checkpoint, for status. */
import type { Sql } from "postgres";

/** A live stream row as status reads it back. */
export interface LiveStreamRow {
  readonly url: string;
  readonly kind: string;
  readonly cursor: number;
  readonly eventTime: Date | null;
  readonly accountsDeleted: number;
  readonly outdatedCursors: number;
  readonly catchUpSince: Date | null;
  readonly catchUpReason: string | null;
  readonly updatedAt: Date;
}

/** What the consumer mirrors (a LiveCheckpoint, structurally). */
export interface LiveMirrorState {
  readonly kind: string;
  readonly cursor: number;
  readonly eventTime: number | null;
  readonly accountsDeleted: number;
  readonly outdatedCursors: number;
  readonly catchUpSince: number | null;
  readonly catchUpReason: string | null;
}

/** Reads and writes `live_stream` and `live_collection`. */
export class LiveStreamStore {
  readonly #last = new Map<string, string>();
  constructor(readonly sql: Sql) {}

  /** Upserts the stream's row and the per-collection counts that changed since the last call. */
  async save(
    url: string,
    s: LiveMirrorState,
    counts: ReadonlyMap<string, { added: number; removed: number }>,
  ): Promise<void> {
    const date = (ms: number | null) => ms === null || !Number.isFinite(ms) ? null : new Date(ms);
    await this.sql`
      INSERT INTO live_stream (url, kind, cursor, event_time, accounts_deleted, outdated_cursors,
        catch_up_since, catch_up_reason, updated_at)
      VALUES (${url}, ${s.kind}, ${s.cursor}, ${date(s.eventTime)}, ${s.accountsDeleted},
        ${s.outdatedCursors}, ${date(s.catchUpSince)}, ${s.catchUpReason}, now())
      ON CONFLICT (url) DO UPDATE SET kind = EXCLUDED.kind, cursor = EXCLUDED.cursor,
        event_time = EXCLUDED.event_time, accounts_deleted = EXCLUDED.accounts_deleted,
        outdated_cursors = EXCLUDED.outdated_cursors, catch_up_since = EXCLUDED.catch_up_since,
        catch_up_reason = EXCLUDED.catch_up_reason, updated_at = now()`;
    const changed = [...counts].filter(([c, n]) => this.#last.get(c) !== `${n.added}/${n.removed}`);
    for (let i = 0; i < changed.length; i += 1000) {
      const rows = changed.slice(i, i + 1000).map((
        [c, n],
      ) => [c, String(n.added), String(n.removed)]);
      await this.sql`
        INSERT INTO live_collection (collection, pairs_added, pairs_removed)
        SELECT v.c, v.a::bigint, v.r::bigint FROM (VALUES ${this.sql(rows)}) AS v(c, a, r)
        ON CONFLICT (collection) DO UPDATE SET pairs_added = EXCLUDED.pairs_added,
          pairs_removed = EXCLUDED.pairs_removed, updated_at = now()`;
    }
    for (const [c, n] of changed) this.#last.set(c, `${n.added}/${n.removed}`);
  }

  /** The most recently updated stream row, if any. */
  async latest(): Promise<LiveStreamRow | undefined> {
    const [r] = await this.sql`SELECT * FROM live_stream ORDER BY updated_at DESC LIMIT 1`;
    if (!r) return undefined;
    return {
      url: r.url as string,
      kind: r.kind as string,
      cursor: Number(r.cursor),
      eventTime: (r.event_time as Date | null) ?? null,
      accountsDeleted: Number(r.accounts_deleted),
      outdatedCursors: Number(r.outdated_cursors),
      catchUpSince: (r.catch_up_since as Date | null) ?? null,
      catchUpReason: (r.catch_up_reason as string | null) ?? null,
      updatedAt: r.updated_at as Date,
    };
  }

  /** Per-collection live counts. */
  async collections(): Promise<Map<string, { added: number; removed: number }>> {
    const rows = await this.sql`SELECT * FROM live_collection`;
    return new Map(rows.map((r) => [r.collection as string, {
      added: Number(r.pairs_added),
      removed: Number(r.pairs_removed),
    }]));
  }
}

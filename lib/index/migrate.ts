/** Rewrites an index written with an older key layout (1 or 2) into the current one. */
import type { ClassicLevel } from "classic-level";
import { compactDid, DICT, encodeId, END, parseV1Rbc, rbcPrefix, V1, V2_CBR } from "./keys.ts";

const CHUNK = 10_000;

/**
 * Moves every version 1 key to the current layout, in batches that each delete the old keys they
 * rewrite, so an interrupted migration resumes where it stopped. Returns how many entries moved.
 */
export async function migrateIndex(db: ClassicLevel<string, string>): Promise<number> {
  const ids = new Map<string, string>();
  for await (const [key, id] of db.iterator({ gt: DICT, lt: DICT + END })) {
    ids.set(key.slice(DICT.length), id);
  }
  let moved = 0;
  let after: string = V1.RBC;
  for (;;) {
    const entries = await db.iterator({ gt: after, lt: V1.RBC + END, limit: CHUNK }).all();
    if (entries.length === 0) break;
    const batch = db.batch();
    for (const [key, value] of entries) {
      const parsed = parseV1Rbc(key);
      if (!parsed) continue;
      let id = ids.get(parsed.collection);
      if (id === undefined) {
        id = encodeId(ids.size);
        ids.set(parsed.collection, id);
        batch.put(DICT + parsed.collection, id);
      }
      batch.put(rbcPrefix(id) + compactDid(parsed.did), value);
      batch.del(key);
      batch.del(V1.CBR + parsed.did + "\x00" + parsed.collection);
      moved++;
    }
    await batch.write();
    after = entries[entries.length - 1][0];
  }
  // Version 1 DID→collection keys without their rbc key carry nothing to keep.
  await dropDidKeys(db);
  return moved;
}

/**
 * Deletes every DID→collection key (layouts 1 and 2 kept one per pair; layout 3 keeps none), in
 * chunks, moving the start forward so each chunk does not step over the deletions before it again.
 * Idempotent, so an interrupted sweep resumes on the next open. Returns how many keys went.
 */
export async function dropDidKeys(db: ClassicLevel<string, string>): Promise<number> {
  let after = V2_CBR, dropped = 0;
  for (;;) {
    const keys = await db.keys({ gt: after, lt: V2_CBR + END, limit: CHUNK }).all();
    if (keys.length === 0) break;
    const batch = db.batch();
    for (const key of keys) batch.del(key);
    await batch.write();
    dropped += keys.length;
    after = keys[keys.length - 1];
  }
  return dropped;
}

/** True when the index holds any version 1 key (left by an older build, even after a migration). */
export async function hasV1Keys(db: ClassicLevel<string, string>): Promise<boolean> {
  for (const prefix of [V1.RBC, V1.CBR]) {
    const first = await db.keys({ gt: prefix, lt: prefix + END, limit: 1 }).all();
    if (first.length > 0) return true;
  }
  return false;
}

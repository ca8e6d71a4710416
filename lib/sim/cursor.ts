/** The simulated relay's cursors: opaque, bound to one collection and one relay's secret. */
import { fnv1a, mix32 } from "./world.ts";

function cursorTag(secret: string, collection: string, position: number): string {
  const key = `${secret}|${collection}|${position}`;
  return fnv1a(key).toString(16).padStart(8, "0") +
    mix32(fnv1a(key + "#")).toString(16).padStart(8, "0");
}

/** Opaque cursor: base64url of `collection|position|tag`, valid only for that collection and secret. */
export function encodeSimCursor(secret: string, collection: string, position: number): string {
  const raw = `${collection}|${position}|${cursorTag(secret, collection, position)}`;
  return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The position a cursor encodes, or undefined when it is garbage or belongs elsewhere. */
export function decodeSimCursor(
  secret: string,
  collection: string,
  cursor: string,
): number | undefined {
  if (!/^[A-Za-z0-9_-]{1,2000}$/.test(cursor)) return undefined;
  let raw: string;
  try {
    raw = atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
  } catch {
    return undefined;
  }
  const parts = raw.split("|");
  if (parts.length !== 3 || parts[0] !== collection || !/^\d{1,15}$/.test(parts[1])) {
    return undefined;
  }
  const position = Number(parts[1]);
  return parts[2] === cursorTag(secret, collection, position) ? position : undefined;
}

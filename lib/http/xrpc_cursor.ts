/** The cursor this service issues for `listReposByCollection`: opaque to clients, the last DID inside. */
import { isDid } from "../util/mod.ts";

/** Encodes an XRPC cursor: opaque base64url of the last DID served. */
export function encodeCursor(did: string): string {
  const bytes = new TextEncoder().encode(did);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Decodes an XRPC cursor; undefined when it is not one this server could have issued. */
export function decodeCursor(cursor: string): string | undefined {
  if (cursor.length > 4096 || !/^[A-Za-z0-9_-]+$/.test(cursor)) return undefined;
  try {
    const bin = atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
    const bytes = Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
    const did = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return isDid(did) && encodeCursor(did) === cursor ? did : undefined;
  } catch {
    return undefined;
  }
}

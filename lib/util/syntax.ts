/** Syntax checks for AT Protocol identifiers, following the atproto specs. */

const NSID_RE =
  /^[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+\.[a-zA-Z][a-zA-Z0-9]{0,62}$/;
const DID_RE = /^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/;
const BAD_PERCENT_RE = /%(?![0-9A-Fa-f]{2})/;

/** True when `s` is a syntactically valid NSID (at least three segments, at most 317 chars). */
export function isNsid(s: unknown): s is string {
  if (typeof s !== "string") return false;
  // A stream names the same few hundred collections again and again: the regex runs once for each.
  if (validNsids.has(s)) return true;
  // The authority (everything before the name segment) is a domain: at most 253 chars.
  if (s.length > 317 || !NSID_RE.test(s) || s.lastIndexOf(".") > 253) return false;
  if (validNsids.size >= 4_096) validNsids.clear();
  validNsids.add(s);
  return true;
}
const validNsids = new Set<string>();

/** True when `s` is a syntactically valid DID (any method, at most 2048 chars). */
export function isDid(s: unknown): s is string {
  return typeof s === "string" && s.length <= 2048 && DID_RE.test(s) && !BAD_PERCENT_RE.test(s);
}

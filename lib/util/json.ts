/** Reading untrusted JSON values field by field. */

/** A plain JSON object. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `v` when it is a string. */
export function asString(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** `v` when it is a finite number. */
export function asNumber(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

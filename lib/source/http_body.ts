/** Reading HTTP bodies from untrusted servers with a size cap. */
import { SourceError } from "../util/mod.ts";

/** Reads a response body as text, refusing (and cancelling) bodies larger than `max` bytes. */
export async function readCapped(res: Response, max: number): Promise<string> {
  const declared = Number(res.headers.get("content-length") ?? NaN);
  if (declared > max) {
    await res.body?.cancel();
    throw tooLarge(res, declared, max);
  }
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel();
      throw tooLarge(res, size, max);
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.byteLength;
  }
  return new TextDecoder().decode(all);
}

function tooLarge(res: Response, size: number, max: number): SourceError {
  return new SourceError(
    `response from ${res.url} is larger than ${max} bytes (at least ${size})`,
    {
      url: res.url,
      status: res.status,
      retryable: false,
    },
  );
}

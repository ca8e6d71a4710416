/** Reading HTTP bodies from untrusted servers with a size cap. */

/** A body larger than the reader allows; callers turn it into their own error. */
export class BodyTooLargeError extends Error {
  override name = "BodyTooLargeError";
  constructor(
    readonly context: { url: string; status: number; size: number; max: number },
  ) {
    super(
      `response from ${context.url} is larger than ${context.max} bytes (at least ${context.size})`,
    );
  }
}

/** Reads a response body as text; a body over `max` bytes is cancelled with a BodyTooLargeError. */
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

function tooLarge(res: Response, size: number, max: number): BodyTooLargeError {
  return new BodyTooLargeError({ url: res.url, status: res.status, size, max });
}

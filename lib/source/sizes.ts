/** Collection sizes from a source's collection directory (`/v1/listCollections`), when it offers one. */
import { readCapped } from "./http_body.ts";
import { type SourceClient, USER_AGENT } from "./client.ts";

/**
 * Asks the source how many DIDs each collection has. The endpoint is optional and non-standard,
 * so any failure yields an empty map and the caller falls back to other hints.
 */
export async function listCollectionSizes(
  client: SourceClient,
  signal: AbortSignal,
): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  let cursor: string | undefined;
  for (let page = 0; page < 100; page++) {
    const url = new URL(client.source.baseUrl + "/v1/listCollections");
    if (cursor) url.searchParams.set("cursor", cursor);
    await client.limiter.acquire(0, signal);
    const res = await fetch(url, {
      signal: AbortSignal.any([signal, AbortSignal.timeout(15_000)]),
      headers: { "user-agent": USER_AGENT },
    });
    client.limiter.observe(res.status, res.headers);
    if (!res.ok) {
      await res.body?.cancel();
      break;
    }
    const body = JSON.parse(await readCapped(res, 8 * 1024 * 1024)) as {
      collections?: unknown;
      cursor?: unknown;
    };
    const cols = body.collections;
    if (cols && typeof cols === "object" && !Array.isArray(cols)) {
      for (const [k, v] of Object.entries(cols)) if (typeof v === "number") sizes.set(k, v);
    }
    if (typeof body.cursor !== "string" || body.cursor === "" || body.cursor === cursor) break;
    cursor = body.cursor;
  }
  return sizes;
}

import { Buffer } from "node:buffer";

/**
 * Gives node's Buffer pool 1 MiB. @atcute's encoders and hashes take small Buffers from it, and Deno
 * refills its 8 KiB pool slowly: MST work (building commits, proving them) costs much less this way.
 */
export function widenBufferPool(): void {
  if (Buffer.poolSize < 1 << 20) Buffer.poolSize = 1 << 20;
}

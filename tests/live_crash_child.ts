/**
 * Test child: runs a LiveConsumer from `url` into the index at `dir` with batches that are never
 * written (no flush time, no size limit), printing its status as a JSON line every 20 ms until it
 * is killed: the parent kills it with SIGKILL to crash it before its first batch.
 */
import { IndexStore } from "../lib/index/mod.ts";
import { LiveConsumer, parseStreamUrl } from "../lib/stream/mod.ts";
import { silentLogger } from "../lib/util/mod.ts";

const [url, dir] = Deno.args;
const index = await IndexStore.open({ path: dir });
const consumer = await LiveConsumer.open({
  endpoint: parseStreamUrl(url),
  index,
  log: silentLogger,
  flushMs: 3_600_000,
  maxBatch: Number.MAX_SAFE_INTEGER,
});
consumer.run(new AbortController().signal);
const out = Deno.stdout.writable.getWriter();
setInterval(() => {
  const s = consumer.status();
  out.write(
    new TextEncoder().encode(JSON.stringify({ connected: s.connected, events: s.events }) + "\n"),
  );
}, 20);

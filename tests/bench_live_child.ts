/** Bench child: consumes a sim firehose's backlog from cursor 0 into a fresh index; prints JSON. */
import process from "node:process";
import { IndexStore } from "../lib/index/mod.ts";
import { LiveConsumer, parseStreamUrl } from "../lib/stream/mod.ts";
import { silentLogger } from "../lib/util/mod.ts";

const [url, dir, lastArg] = Deno.args;
const last = Number(lastArg);
const index = await IndexStore.open({ path: dir });
const endpoint = parseStreamUrl(url);
await index.applyLive([], {
  stream: endpoint.url,
  value: {
    kind: endpoint.kind,
    cursor: 0,
    eventTime: null,
    accountsDeleted: 0,
    outdatedCursors: 0,
    catchUpSince: null,
    catchUpReason: null,
  },
});
const consumer = await LiveConsumer.open({ endpoint, index, log: silentLogger });
const ac = new AbortController();
const started = performance.now();
const cpu0 = process.cpuUsage();
const running = consumer.run(ac.signal);
while (consumer.checkpoint.cursor < last) await new Promise((r) => setTimeout(r, 20));
const ms = performance.now() - started;
const cpu = process.cpuUsage(cpu0);
const s = consumer.status();
ac.abort();
await running;
await index.close();
console.log(JSON.stringify({
  ms,
  cpuMs: (cpu.user + cpu.system) / 1000,
  events: s.events,
  ops: s.ops,
  reconnects: s.reconnects,
}));

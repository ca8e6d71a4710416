/**
 * Scale bench worker: fetches XRPC pages every 100 ms on its own thread, so that their latency is
 * the service's and not the wait for the bench's main thread, which also serves the sim relay's pages.
 * Messages in: `{ urls }` starts, `{ stop: true }` stops; out: each page's latency and size,
 * `{ ms, repos }[]`.
 */
/** This worker's scope, typed here so the file checks with the rest of the tests. */
const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent<{ urls?: string[]; stop?: boolean }>) => void;
  postMessage(message: unknown): void;
};

scope.onmessage = async (e) => {
  if (e.data.stop) {
    stopped = true;
    return;
  }
  const out: { ms: number; repos: number }[] = [];
  for (const url of e.data.urls ?? []) {
    if (stopped) break;
    const next = performance.now() + 100;
    const t = performance.now();
    const res = await fetch(url);
    const text = await res.text();
    const ms = performance.now() - t;
    if (!res.ok) throw new Error(`XRPC ${url} answered ${res.status}: ${text.slice(0, 300)}`);
    out.push({ ms, repos: (JSON.parse(text) as { repos: unknown[] }).repos.length });
    await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
  }
  scope.postMessage(out);
};
let stopped = false;

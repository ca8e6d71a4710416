/**
 * Test helper worker: fetches `url`, sets `flag[0]` to 1 once the whole answer is in (so a thread
 * that blocks can see it arrive), then posts `{ status, body }`.
 */
const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent<{ url: string; flag: SharedArrayBuffer }>) => void;
  postMessage(message: unknown): void;
};

scope.onmessage = async (e) => {
  const flag = new Int32Array(e.data.flag);
  try {
    const res = await fetch(e.data.url);
    const body = await res.text();
    Atomics.store(flag, 0, 1);
    scope.postMessage({ status: res.status, body });
  } catch (err) {
    Atomics.store(flag, 0, 2);
    scope.postMessage({ error: (err as Error).message });
  }
};

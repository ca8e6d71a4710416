/**
 * The HTTP front: a worker thread that owns the port. It answers listReposByCollection from its own
 * IndexReader and hands every other request to the main thread's handler. A backfill keeps the main
 * thread's event loop busy; listings served there waited behind it for tens of milliseconds.
 */
import type { LogLevel } from "../util/mod.ts";
import type { Logger } from "../util/mod.ts";
import { BusyError, errorMessage, InputError } from "../util/mod.ts";

/** What the front tells the main thread. */
export type FrontMessage =
  | { type: "listening"; hostname: string; port: number }
  | { type: "bind-failed"; addrInUse: boolean; message: string }
  | {
    type: "request";
    id: number;
    method: string;
    url: string;
    headers: [string, string][];
    body: ArrayBuffer | null;
  }
  | { type: "cancel"; id: number }
  | { type: "indexed"; error?: string }
  | { type: "log"; level: LogLevel; msg: string; fields?: Record<string, unknown> }
  | { type: "finished" };

/** What the main thread tells the front. */
export type MainMessage =
  | { type: "listen"; hostname: string; port: number }
  | { type: "index"; path: string; listings: SharedArrayBuffer }
  | { type: "head"; id: number; status: number; headers: [string, string][] }
  | { type: "chunk"; id: number; bytes: Uint8Array }
  | { type: "end"; id: number }
  | { type: "fail"; id: number; message: string }
  | { type: "shutdown" };

/** Options for startFront(). */
export interface FrontOptions {
  readonly hostname: string;
  readonly port: number;
  /** Answers every request the front does not answer itself. */
  readonly handler: (req: Request) => Response | Promise<Response>;
  readonly log: Logger;
}

/** The running front, seen from the main thread. */
export interface HttpFront {
  readonly addr: { hostname: string; port: number };
  /** Resolves once the port is closed and the front's index handle released. */
  readonly finished: Promise<void>;
  /**
   * From now on the front lists from the index at `path` itself (IndexStore.path and .listings).
   * Resolves once it does; rejects if it cannot, and listings then stay with the handler.
   */
  serveIndex(index: { path: string; listings: { buffer: SharedArrayBuffer } }): Promise<void>;
  /** Closes the port, cutting open responses, and ends the worker. */
  shutdown(): Promise<void>;
}

/**
 * Starts the front and binds the port. A port in use is a BusyError naming PORT; a host that cannot
 * be bound an InputError naming HOST.
 */
export async function startFront(opts: FrontOptions): Promise<HttpFront> {
  const worker = new Worker(new URL("./front_worker.ts", import.meta.url), { type: "module" });
  const send = (m: MainMessage, transfer: Transferable[] = []) => worker.postMessage(m, transfer);
  const listening = Promise.withResolvers<{ hostname: string; port: number }>();
  const finished = Promise.withResolvers<void>();
  const answering = new Map<number, () => void>();
  let indexed: PromiseWithResolvers<void> | undefined;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    for (const cancel of answering.values()) cancel();
    worker.terminate();
    finished.resolve();
  };

  const answer = async (m: Extract<FrontMessage, { type: "request" }>) => {
    const aborted = new AbortController();
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    answering.set(m.id, () => {
      aborted.abort();
      reader?.cancel().catch(() => {});
    });
    try {
      const res = await opts.handler(
        new Request(m.url, {
          method: m.method,
          headers: m.headers,
          body: m.body,
          signal: aborted.signal,
        }),
      );
      send({ type: "head", id: m.id, status: res.status, headers: [...res.headers] });
      if (res.body) {
        reader = res.body.getReader();
        if (aborted.signal.aborted) await reader.cancel();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          // A copy the front can own: the chunk may be a view into a buffer the stream reuses.
          const bytes = value.slice();
          send({ type: "chunk", id: m.id, bytes }, [bytes.buffer]);
        }
      }
      send({ type: "end", id: m.id });
    } catch (err) {
      if (!ended) send({ type: "fail", id: m.id, message: errorMessage(err) });
    } finally {
      answering.delete(m.id);
    }
  };

  worker.onmessage = (e: MessageEvent<FrontMessage>) => {
    const m = e.data;
    switch (m.type) {
      case "request":
        answer(m);
        break;
      case "cancel":
        answering.get(m.id)?.();
        break;
      case "log":
        opts.log[m.level](m.msg, m.fields);
        break;
      case "indexed":
        if (m.error === undefined) indexed?.resolve();
        else indexed?.reject(new Error(m.error));
        break;
      case "listening":
        listening.resolve({ hostname: m.hostname, port: m.port });
        break;
      case "bind-failed":
        end();
        listening.reject(
          m.addrInUse
            ? new BusyError(
              `port ${opts.port} on ${opts.hostname} is already in use by another process (PORT)`,
            )
            : new InputError(
              `HOST ${
                JSON.stringify(opts.hostname)
              } cannot be bound on port ${opts.port}: ${m.message}`,
              "HOST",
            ),
        );
        break;
      case "finished":
        end();
        break;
    }
  };
  worker.onerror = (e) => {
    e.preventDefault();
    opts.log.error("HTTP front failed", { error: e.message });
    listening.reject(new Error(`the HTTP front failed to start: ${e.message}`));
    end();
  };

  send({ type: "listen", hostname: opts.hostname, port: opts.port });
  const addr = await listening.promise;
  return {
    addr,
    finished: finished.promise,
    serveIndex(index) {
      if (ended) return Promise.reject(new Error("the HTTP front has stopped"));
      indexed = Promise.withResolvers<void>();
      send({ type: "index", path: index.path, listings: index.listings.buffer });
      return indexed.promise;
    },
    async shutdown() {
      if (!ended) send({ type: "shutdown" });
      await finished.promise;
    },
  };
}

/** The HTTP front's thread (see front.ts): the port, listings from its own IndexReader, the rest forwarded. */
import { Hono } from "hono";
import { IndexReader } from "../index/reader.ts";
import { errorMessage, type Logger, type LogLevel } from "../util/mod.ts";
import { errorBoundary, listReposByCollection, urlLimit, XRPC_LIST } from "./xrpc.ts";
import type { FrontMessage, MainMessage } from "./front.ts";

/** This worker's scope, typed here so that the file checks with the rest of lib/. */
const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent<MainMessage>) => void;
  postMessage(message: FrontMessage): void;
};
const send = (m: FrontMessage) => scope.postMessage(m);
/** V8's collector, when the process runs with --expose-gc (see IndexReaderOptions.collect). */
const gc = (globalThis as { gc?: () => void }).gc;

const emit = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) =>
  send({ type: "log", level, msg, fields });
const log: Logger = {
  debug: emit("debug"),
  info: emit("info"),
  warn: emit("warn"),
  error: emit("error"),
};

/** Forwarded requests waiting for, or streaming, the main thread's answer. */
const forwarded = new Map<
  number,
  { head: PromiseWithResolvers<Response>; body?: ReadableStreamDefaultController<Uint8Array> }
>();
let nextId = 1;
let reader: IndexReader | undefined;
let opening: Promise<void> | undefined;
const stop = new AbortController();

async function forward(req: Request): Promise<Response> {
  const id = nextId++;
  const head = Promise.withResolvers<Response>();
  forwarded.set(id, { head });
  const body = req.body ? await req.arrayBuffer() : null;
  req.signal.addEventListener("abort", () => cancel(id), { once: true });
  send({ type: "request", id, method: req.method, url: req.url, headers: [...req.headers], body });
  return head.promise;
}

function cancel(id: number): void {
  if (!forwarded.delete(id)) return;
  send({ type: "cancel", id });
}

const app = new Hono();
app.use(XRPC_LIST, urlLimit);
const listRepos = listReposByCollection((col, limit, after) => reader!.listDids(col, limit, after));
app.get(XRPC_LIST, (c, next) => reader ? listRepos(c, next) : forward(c.req.raw));
app.all("*", (c) => forward(c.req.raw));
app.onError(errorBoundary(log));

function listen(hostname: string, port: number): void {
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({
      hostname,
      port,
      signal: stop.signal,
      onListen: (addr) => send({ type: "listening", hostname: addr.hostname, port: addr.port }),
    }, app.fetch);
  } catch (err) {
    send({
      type: "bind-failed",
      addrInUse: err instanceof Deno.errors.AddrInUse,
      message: errorMessage(err),
    });
    return;
  }
  server.finished.then(async () => {
    await opening;
    await reader?.close().catch(() => {});
    send({ type: "finished" });
  });
}

/** The main thread's answer to a forwarded request, as it arrives. */
function answer(m: Extract<MainMessage, { id: number }>): void {
  const f = forwarded.get(m.id);
  if (f === undefined) return;
  switch (m.type) {
    case "head": {
      // These statuses carry no body; a Response refuses one.
      const empty = [101, 103, 204, 205, 304].includes(m.status);
      const body = empty ? null : new ReadableStream<Uint8Array>({
        start: (controller) => void (f.body = controller),
        cancel: () => cancel(m.id),
      });
      f.head.resolve(new Response(body, { status: m.status, headers: m.headers }));
      break;
    }
    case "chunk":
      f.body?.enqueue(m.bytes);
      break;
    case "end":
      forwarded.delete(m.id);
      f.body?.close();
      break;
    case "fail":
      forwarded.delete(m.id);
      f.head.reject(new Error(m.message));
      f.body?.error(new Error(m.message));
      break;
  }
}

scope.onmessage = (e) => {
  const m = e.data;
  switch (m.type) {
    case "listen":
      listen(m.hostname, m.port);
      break;
    case "index":
      opening = IndexReader.open({ path: m.path, listings: m.listings, collect: gc }).then(
        (r) => {
          reader = r;
          log.info("listings are served on the HTTP front's thread");
          if (gc === undefined) {
            log.warn(
              "V8's gc is not exposed (--v8-flags=--expose-gc, as deno task start sets it): the " +
                "memory of listings' closed snapshots is freed only when this thread collects garbage",
            );
          }
          send({ type: "indexed" });
        },
        (err) => {
          // Listings then stay with the main thread, as before the front.
          log.error("HTTP front cannot list from the index", { error: errorMessage(err) });
          send({ type: "indexed", error: errorMessage(err) });
        },
      );
      break;
    case "shutdown":
      stop.abort();
      break;
    default:
      answer(m);
  }
};

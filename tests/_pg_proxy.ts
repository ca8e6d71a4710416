/** A TCP proxy in front of Postgres that can simulate a restart: connections cut, new ones refused. */
import { sleep } from "../lib/util/async.js";

/** How a simulated restart behaves. */
export interface RestartOptions {
  /** Send each client Postgres's shutdown error (FATAL 57P01) before closing, when between messages. */
  readonly fatal?: boolean;
  /**
   * While down: "refuse" closes the listening socket (ECONNREFUSED); "reset" accepts and closes at
   * once; "starting" answers the startup packet with FATAL 57P03, as Postgres does during recovery.
   */
  readonly mode?: "refuse" | "reset" | "starting";
}

/** A running proxy. */
export interface PgProxy {
  readonly port: number;
  /** `url` with its host and port replaced by the proxy's. */
  url(url: string): string;
  readonly stats: { accepted: number; refused: number; cut: number; fatalSent: number };
  /** Connections currently open through the proxy. */
  readonly open: number;
  /**
   * Cuts every connection, stays down for `downFor` ms (or, given a promise, until it settles),
   * then accepts again; resolves when back up.
   */
  restart(downFor: number | Promise<unknown>, opts?: RestartOptions): Promise<void>;
  close(): Promise<void>;
}

interface Pair {
  readonly client: Deno.TcpConn;
  readonly server: Deno.TcpConn;
  readonly frames: Framer;
  /** Settles when the server→client pump has stopped. */
  toClient: Promise<void>;
}

/** Tracks Postgres backend message boundaries (type byte, int32 length) in the server→client stream. */
class Framer {
  #need = 0;
  #head: number[] = [];
  skip = 0;
  feed(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.skip > 0) {
        this.skip--;
        i++;
      } else if (this.#need > 0) {
        const n = Math.min(this.#need, chunk.length - i);
        this.#need -= n;
        i += n;
      } else {
        this.#head.push(chunk[i++]);
        if (this.#head.length === 5) {
          const h = this.#head;
          this.#need = (((h[1] << 24) | (h[2] << 16) | (h[3] << 8) | h[4]) >>> 0) - 4;
          this.#head = [];
        }
      }
    }
  }
  get atBoundary(): boolean {
    return this.#need === 0 && this.#head.length === 0 && this.skip === 0;
  }
}

const SSL_REQUEST = 80877103;

/** A FATAL ErrorResponse with `code` and `message`. */
function fatalError(code: string, message: string): Uint8Array {
  const body = new TextEncoder().encode(`SFATAL\0VFATAL\0C${code}\0M${message}\0\0`);
  const out = new Uint8Array(5 + body.length);
  out[0] = 0x45; // 'E'
  new DataView(out.buffer).setInt32(1, body.length + 4);
  out.set(body, 5);
  return out;
}

/** What a backend sends its clients when the server shuts down. */
const ADMIN_SHUTDOWN = fatalError("57P01", "terminating connection due to administrator command");
const STARTING_UP = fatalError("57P03", "the database system is starting up");

/** Reads exactly `n` bytes, or returns undefined at end of stream. */
async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array | undefined> {
  const out = new Uint8Array(n);
  for (let off = 0; off < n;) {
    const got = await conn.read(out.subarray(off));
    if (got === null) return undefined;
    off += got;
  }
  return out;
}

/** Answers a client's startup as a recovering server does: FATAL 57P03, then close. */
async function refuseStartup(conn: Deno.Conn): Promise<void> {
  try {
    for (;;) {
      const head = await readExactly(conn, 8);
      if (!head) return;
      const view = new DataView(head.buffer);
      if (view.getInt32(4) === SSL_REQUEST) {
        await writeAll(conn, new TextEncoder().encode("N"));
        continue;
      }
      const rest = view.getInt32(0) - 8;
      if (rest > 0 && !(await readExactly(conn, rest))) return;
      await writeAll(conn, STARTING_UP);
      return;
    }
  } catch {
    /* client gone */
  } finally {
    closeQuietly(conn);
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** Starts a proxy on 127.0.0.1 (a free port) forwarding to `target`. */
export function startPgProxy(
  target: { hostname: string; port: number } = { hostname: "127.0.0.1", port: 5432 },
): PgProxy {
  let listener: Deno.TcpListener | undefined = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const pairs = new Set<Pair>();
  const stats = { accepted: 0, refused: 0, cut: 0, fatalSent: 0 };
  let down: RestartOptions["mode"] | false = false;
  let closed = false;

  const accept = async (l: Deno.TcpListener) => {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await l.accept();
      } catch {
        return;
      }
      if (down || closed) {
        stats.refused++;
        if (down === "starting") refuseStartup(conn);
        else closeQuietly(conn);
        continue;
      }
      handle(conn).catch(() => closeQuietly(conn));
    }
  };

  const handle = async (client: Deno.TcpConn) => {
    let server: Deno.TcpConn;
    try {
      server = await Deno.connect({ hostname: target.hostname, port: target.port });
    } catch {
      closeQuietly(client);
      return;
    }
    if (down || closed) {
      closeQuietly(client);
      closeQuietly(server);
      return;
    }
    stats.accepted++;
    const pair: Pair = { client, server, frames: new Framer(), toClient: Promise.resolve() };
    pairs.add(pair);
    let first = true;
    const toServer = (async () => {
      const buf = new Uint8Array(64 * 1024);
      for (;;) {
        const n = await client.read(buf);
        if (n === null) break;
        const chunk = buf.subarray(0, n);
        if (first && n >= 8 && new DataView(chunk.buffer).getInt32(4) === SSL_REQUEST) {
          pair.frames.skip = 1; // the one-byte S/N answer is not a framed message
        }
        first = false;
        await writeAll(server, chunk);
      }
    })().catch(() => {});
    pair.toClient = (async () => {
      const buf = new Uint8Array(64 * 1024);
      for (;;) {
        const n = await server.read(buf);
        if (n === null) break;
        const chunk = buf.subarray(0, n);
        await writeAll(client, chunk);
        pair.frames.feed(chunk);
      }
    })().catch(() => {});
    await Promise.all([toServer, pair.toClient]);
    pairs.delete(pair);
    closeQuietly(client);
    closeQuietly(server);
  };

  accept(listener);

  const cutAll = async (fatal: boolean) => {
    const all = [...pairs];
    pairs.clear();
    for (const p of all) closeQuietly(p.server);
    await Promise.all(all.map(async (p) => {
      await p.toClient;
      if (fatal && p.frames.atBoundary) {
        try {
          await writeAll(p.client, ADMIN_SHUTDOWN);
          stats.fatalSent++;
        } catch { /* client gone */ }
      }
      closeQuietly(p.client);
      stats.cut++;
    }));
  };

  return {
    port,
    stats,
    get open() {
      return pairs.size;
    },
    url(url: string) {
      const u = new URL(url);
      u.hostname = "127.0.0.1";
      u.port = String(port);
      return u.href;
    },
    async restart(downFor, opts = {}) {
      down = opts.mode ?? "refuse";
      if (down === "refuse") {
        listener?.close();
        listener = undefined;
      }
      await cutAll(opts.fatal ?? false);
      await (typeof downFor === "number" ? sleep(downFor) : downFor.catch(() => {}));
      if (closed) return;
      if (!listener) {
        listener = Deno.listen({ hostname: "127.0.0.1", port });
        accept(listener);
      }
      down = false;
    },
    async close() {
      closed = true;
      try {
        listener?.close();
      } catch { /* closed */ }
      listener = undefined;
      await cutAll(false);
    },
  };
}

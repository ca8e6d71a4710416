/**
 * The server side of a WebSocket on a raw socket, for the simulated streams: the handshake, unmasked
 * frames written in batches with the socket's backpressure, and the client's close and ping frames.
 */
import type http from "node:http";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type { Duplex } from "node:stream";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** One accepted WebSocket connection. */
export class SimSocket {
  readonly #socket: Duplex;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #inbox: Buffer = Buffer.alloc(0);
  #closed = false;
  readonly closed: Promise<void>;

  constructor(socket: Duplex) {
    this.#socket = socket;
    let done!: () => void;
    this.closed = new Promise((r) => done = r);
    const end = () => {
      this.#closed = true;
      done();
    };
    socket.on("close", end);
    socket.on("error", end);
    socket.on("data", (chunk: Buffer) => this.#read(chunk));
  }

  /** True once the connection is gone. */
  get isClosed(): boolean {
    return this.#closed;
  }

  /** Queues a binary (Uint8Array) or text (string) message; `flush` sends the batch. */
  queue(message: Uint8Array | string): void {
    const payload = typeof message === "string" ? Buffer.from(message, "utf8") : message;
    const head = frameHead(typeof message === "string" ? 0x1 : 0x2, payload.length);
    this.#pending.push(head, Buffer.from(payload.buffer, payload.byteOffset, payload.length));
    this.#pendingBytes += head.length + payload.length;
  }

  /** Bytes queued and not yet flushed. */
  get queued(): number {
    return this.#pendingBytes;
  }

  /** Writes what is queued; resolves when the socket can take more (backpressure). */
  async flush(): Promise<void> {
    if (this.#pending.length === 0 || this.#closed) return;
    const data = Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    if (this.#socket.write(data)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.#socket.off("drain", done);
        this.#socket.off("close", done);
        resolve();
      };
      this.#socket.on("drain", done);
      this.#socket.on("close", done);
    });
  }

  /** Sends a close frame and ends the connection. */
  close(code = 1000, reason = ""): void {
    if (this.#closed) return;
    const r = Buffer.from(reason.slice(0, 100), "utf8");
    const payload = Buffer.alloc(2 + r.length);
    payload.writeUInt16BE(code, 0);
    r.copy(payload, 2);
    this.#pending.push(frameHead(0x8, payload.length), payload);
    this.#pendingBytes += payload.length + 2;
    this.flush().catch(() => {});
    this.#socket.end();
    this.#closed = true;
  }

  /** Drops the connection without a close frame, like a network fault. */
  destroy(): void {
    this.#closed = true;
    this.#socket.destroy();
  }

  /** Reads the client's frames (always masked): answers pings and closes. */
  #read(chunk: Buffer): void {
    this.#inbox = this.#inbox.length ? Buffer.concat([this.#inbox, chunk]) : chunk;
    for (;;) {
      const b = this.#inbox;
      if (b.length < 2) return;
      const opcode = b[0] & 0x0f;
      let len = b[1] & 0x7f, off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      const masked = (b[1] & 0x80) !== 0;
      const total = off + (masked ? 4 : 0) + len;
      if (b.length < total) return;
      const payload = Buffer.from(b.subarray(off + (masked ? 4 : 0), total));
      if (masked) {
        for (let i = 0; i < payload.length; i++) payload[i] ^= b[off + (i & 3)];
      }
      this.#inbox = b.subarray(total);
      if (opcode === 0x8) {
        this.close(payload.length >= 2 ? payload.readUInt16BE(0) : 1000);
        return;
      }
      if (opcode === 0x9 && !this.#closed) {
        this.#pending.push(frameHead(0xa, payload.length), payload);
        this.#pendingBytes += payload.length + 2;
        this.flush().catch(() => {});
      }
    }
  }
}

function frameHead(opcode: number, len: number): Buffer {
  if (len < 126) return Buffer.from([0x80 | opcode, len]);
  if (len < 65536) {
    const h = Buffer.alloc(4);
    h[0] = 0x80 | opcode;
    h[1] = 126;
    h.writeUInt16BE(len, 2);
    return h;
  }
  const h = Buffer.alloc(10);
  h[0] = 0x80 | opcode;
  h[1] = 127;
  h.writeBigUInt64BE(BigInt(len), 2);
  return h;
}

/** Completes the upgrade handshake; undefined (socket refused) when it is not a WebSocket request. */
export function acceptWebSocket(req: http.IncomingMessage, socket: Duplex): SimSocket | undefined {
  const key = req.headers["sec-websocket-key"];
  if (typeof key !== "string" || req.headers.upgrade?.toLowerCase() !== "websocket") {
    socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    return undefined;
  }
  const accept = createHash("sha1").update(key + GUID).digest("base64");
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  return new SimSocket(socket);
}

/** Refuses an upgrade with an HTTP status and a JSON body. */
export function refuseUpgrade(socket: Duplex, status: number, body: string): void {
  socket.end(
    `HTTP/1.1 ${status} ${status === 404 ? "Not Found" : "Bad Request"}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${
        Buffer.byteLength(body)
      }\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * Deno's TCP connections in the shape of Bun's sockets (`TcpSocket`, `TcpHandlers` in types.ts),
 * so that the raw HTTP/1.1 upstream client (core/upstream/raw-*.ts) and listener (core/listener/)
 * run on Deno too. Deno's connections are promise-based: a read loop delivers `data` (a copy:
 * the client may keep slices of it), and writes are queued and sent by one write loop, gathered
 * when several come in the same turn of the event loop. `write` takes at most 256 KiB queued
 * and reports the rest as not written, which the caller sends on `drain`, as with Bun.
 */
import { Buffer } from "node:buffer";
import type { TcpConnect, TcpHandlers, TcpSocket } from "./types.ts";

// deno-lint-ignore no-explicit-any
declare const Deno: any;

/** The part of `Deno.Conn` used here. */
export interface DenoConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
  closeWrite?(): Promise<void>;
  setNoDelay?(noDelay?: boolean): void;
  readonly remoteAddr?: { hostname?: string };
}

const HIGH_WATER = 256 * 1024;
const READ_SIZE = 64 * 1024;
const encoder = new TextEncoder();

export class DenoSocket<T> implements TcpSocket<T> {
  readonly remoteAddress: string | undefined;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #writing = false;
  #wantDrain = false;
  #ending = false;
  #closed = false;
  #paused = false;
  /** A chunk read while paused, delivered on resume. */
  #held: Buffer | undefined;
  #wake: (() => void) | undefined;
  #idleMs = 0;
  #active = false;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** `halfOpen`: the peer's end of sending (`end`) leaves ours open until we end (a listener's connections). */
  constructor(readonly conn: DenoConn, readonly handlers: TcpHandlers<T>, public data: T, readonly halfOpen = false) {
    this.remoteAddress = conn.remoteAddr?.hostname;
  }

  /** Deliver `open`, then read until the peer closes. */
  start(): void {
    this.handlers.open?.(this);
    void this.#readLoop();
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(READ_SIZE);
    for (;;) {
      let n: number | null;
      try {
        n = await this.conn.read(buf);
      } catch (e) {
        if (!this.#closed) {
          this.handlers.error?.(this, e as Error);
          this.#close(e as Error);
        }
        return;
      }
      if (this.#closed) return;
      if (n === null) {
        this.handlers.end?.(this);
        return this.halfOpen ? undefined : this.#close();
      }
      this.#active = true;
      const chunk = Buffer.from(buf.subarray(0, n));
      if (this.#paused) {
        this.#held = chunk;
        await new Promise<void>((r) => (this.#wake = r));
        this.#held = undefined;
        if (this.#closed) return;
      }
      this.handlers.data?.(this, chunk);
    }
  }

  write(data: Uint8Array | string, byteOffset = 0, byteLength?: number): number {
    if (this.#closed || this.#ending) return 0;
    const bytes = typeof data === "string"
      ? encoder.encode(data)
      : data.subarray(byteOffset, byteLength === undefined ? undefined : byteOffset + byteLength);
    const room = HIGH_WATER - this.#queued;
    const n = Math.min(room, bytes.length);
    if (n < bytes.length) this.#wantDrain = true;
    if (n <= 0) return 0;
    // A copy: callers reuse their buffers once write returns.
    this.#queue.push(bytes.slice(0, n));
    this.#queued += n;
    this.#active = true;
    if (!this.#writing) {
      this.#writing = true;
      queueMicrotask(() => void this.#writeLoop());
    }
    return typeof data === "string" && n === bytes.length ? data.length : n;
  }

  async #writeLoop(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const parts = this.#queue;
        this.#queue = [];
        let out: Uint8Array;
        if (parts.length === 1) out = parts[0]!;
        else {
          out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
          let at = 0;
          for (const p of parts) (out.set(p, at), (at += p.length));
        }
        let off = 0;
        while (off < out.length) off += await this.conn.write(off === 0 ? out : out.subarray(off));
        this.#queued -= out.length;
        if (this.#queue.length === 0 && this.#wantDrain) {
          this.#wantDrain = false;
          this.handlers.drain?.(this);
        }
      }
    } catch (e) {
      if (!this.#closed) {
        this.handlers.error?.(this, e as Error);
        this.#close(e as Error);
      }
      return;
    } finally {
      this.#writing = false;
    }
    if (this.#ending) this.#close();
  }

  end(): void {
    if (this.#closed) return;
    this.#ending = true;
    if (!this.#writing) this.#close();
  }

  terminate(): void {
    this.#close();
  }

  flush(): void {}

  timeout(seconds: number): void {
    this.#idleMs = seconds * 1000;
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (seconds <= 0 || this.#closed) return;
    this.#active = false;
    // Idle for at least `seconds` (and less than twice that): no timer reset per read or write.
    this.#timer = setInterval(() => {
      if (this.#active) return void (this.#active = false);
      this.handlers.timeout?.(this);
    }, this.#idleMs);
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  setNoDelay(noDelay = true): boolean {
    this.conn.setNoDelay?.(noDelay);
    return true;
  }

  #close(error?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#queue = [];
    try {
      this.conn.close();
    } catch {
      // Already closed by the runtime.
    }
    this.#wake?.();
    this.handlers.close?.(this, error);
    this.onClosed?.();
  }

  /** Set by the listener that accepted it, to forget it. */
  onClosed: (() => void) | undefined;
}

/** The raw upstream client's connect on Deno: plain TCP (https backends use node:http, see deno.ts). */
export const denoConnect: TcpConnect = async (o) => {
  if (o.tls !== false) throw new Error("the raw client on Deno connects over plain TCP only");
  const conn = (await Deno.connect({ hostname: o.hostname, port: o.port, transport: "tcp" })) as DenoConn;
  conn.setNoDelay?.(true);
  const socket = new DenoSocket(conn, o.handlers, o.data);
  socket.start();
  return socket;
};

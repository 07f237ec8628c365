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

/** Copies of writes are cut from this slab; one larger than SLAB_MAX gets its own buffer. */
const SLAB = 64 * 1024;
const SLAB_MAX = 4 * 1024;
let slab = new Uint8Array(SLAB);
let slabAt = 0;

/** Room for `n` bytes at `slabAt`. */
function slabFor(n: number): Uint8Array {
  if (slabAt + n > SLAB) {
    slab = new Uint8Array(SLAB);
    slabAt = 0;
  }
  return slab;
}

/**
 * A copy of `bytes` (a view of the slab when small). Not `bytes.slice()`: on a Buffer that is a
 * view, and a caller's reused buffer (the upstream client's and the listener's head scratch) would
 * be sent as it is later, another request's bytes.
 */
function copyOf(bytes: Uint8Array): Uint8Array {
  const n = bytes.length;
  if (n > SLAB_MAX) {
    const own = new Uint8Array(n);
    own.set(bytes);
    return own;
  }
  const s = slabFor(n);
  const at = slabAt;
  s.set(bytes, at);
  slabAt = at + n;
  return s.subarray(at, at + n);
}

/** `text` as UTF-8 bytes (a view of the slab when small). */
function encoded(text: string): Uint8Array {
  if (text.length * 3 > SLAB_MAX) return encoder.encode(text);
  const s = slabFor(text.length * 3);
  const at = slabAt;
  const { written } = encoder.encodeInto(text, s.subarray(at));
  slabAt = at + written;
  return s.subarray(at, at + written);
}

/** `parts` as one buffer: a view when they lie end to end in one slab (a connection's writes of one turn usually do). */
function joined(parts: Uint8Array[]): Uint8Array {
  const first = parts[0]!;
  let total = first.length;
  let adjacent = true;
  for (let i = 1; i < parts.length; i++) {
    const prev = parts[i - 1]!, p = parts[i]!;
    if (p.buffer !== prev.buffer || p.byteOffset !== prev.byteOffset + prev.length) adjacent = false;
    total += p.length;
  }
  if (adjacent) return new Uint8Array(first.buffer, first.byteOffset, total);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
}

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
  /** The idle timeout asked for (0: none) and the period of the running timer. */
  #idleMs = 0;
  #timerMs = 0;
  #active = false;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** `halfOpen`: the peer's end of sending (`end`) leaves ours open until we end (a listener's connections). */
  constructor(readonly conn: DenoConn, readonly handlers: TcpHandlers<T>, public data: T, readonly halfOpen = false) {
    this.remoteAddress = conn.remoteAddr?.hostname;
  }

  /** Deliver `open`, then read until the peer closes. */
  start(): void {
    if (this.#call("open")) void this.#readLoop();
  }

  /**
   * Run a handler as Bun does: what it throws goes to `error` and closes the connection, never to
   * an unhandled rejection (or an uncaught timer error) that would end the process. False if it threw.
   */
  #call(name: "open" | "end" | "drain" | "timeout"): boolean {
    try {
      this.handlers[name]?.(this);
      return true;
    } catch (e) {
      this.#threw(e);
      return false;
    }
  }

  #threw(e: unknown): void {
    try {
      this.handlers.error?.(this, e as Error);
    } catch {
      // An error handler that throws: closing is all that is left.
    }
    this.#close(e as Error);
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(READ_SIZE);
    for (;;) {
      let n: number | null;
      try {
        n = await this.conn.read(buf);
      } catch (e) {
        // A socket error goes to `close` with the error, as on Bun; `error` is for what a handler threw.
        if (!this.#closed) this.#close(e as Error);
        return;
      }
      if (this.#closed) return;
      if (n === null) {
        if (!this.#call("end")) return;
        return this.halfOpen ? undefined : this.#close();
      }
      this.#active = true;
      // allocUnsafe: small chunks come from node:buffer's shared pool (Buffer.from made a new ArrayBuffer each).
      const chunk = Buffer.allocUnsafe(n);
      chunk.set(n === READ_SIZE ? buf : buf.subarray(0, n));
      if (this.#paused) {
        this.#held = chunk;
        await new Promise<void>((r) => (this.#wake = r));
        this.#held = undefined;
        if (this.#closed) return;
      }
      // Not through #call: no closure made per read on this path.
      try {
        this.handlers.data?.(this, chunk);
      } catch (e) {
        return this.#threw(e);
      }
    }
  }

  write(data: Uint8Array | string, byteOffset = 0, byteLength?: number): number {
    if (this.#closed || this.#ending) return 0;
    // A copy: callers reuse their buffers once write returns.
    const text = typeof data === "string";
    const bytes = text ? encoded(data) : data.subarray(byteOffset, byteLength === undefined ? undefined : byteOffset + byteLength);
    const room = HIGH_WATER - this.#queued;
    const n = Math.min(room, bytes.length);
    if (n < bytes.length) this.#wantDrain = true;
    if (n <= 0) return 0;
    this.#queue.push(text ? bytes.subarray(0, n) : copyOf(n < bytes.length ? bytes.subarray(0, n) : bytes));
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
        const out = parts.length === 1 ? parts[0]! : joined(parts);
        let off = 0;
        while (off < out.length) off += await this.conn.write(off === 0 ? out : out.subarray(off));
        this.#queued -= out.length;
        if (this.#queue.length === 0 && this.#wantDrain) {
          this.#wantDrain = false;
          if (!this.#call("drain")) return;
        }
      }
    } catch (e) {
      if (!this.#closed) this.#close(e as Error);
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
    const ms = seconds > 0 ? seconds * 1000 : 0;
    this.#idleMs = ms;
    // The listener sets the same timeout after every request: the running interval serves it,
    // its next tick skipped (a new interval per request cost ~8% of the CPU under Deno). Off (0)
    // leaves it ticking idle.
    this.#active = true;
    if (ms === 0 || this.#closed || this.#timerMs === ms) return;
    clearInterval(this.#timer);
    this.#timerMs = ms;
    this.#active = false;
    // Idle for at least `seconds` (and less than twice that): no timer reset per read or write.
    this.#timer = setInterval(() => {
      if (this.#idleMs === 0) return;
      if (this.#active) return void (this.#active = false);
      this.#call("timeout");
    }, ms);
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
    try {
      this.handlers.close?.(this, error);
    } catch (e) {
      try {
        this.handlers.error?.(this, e as Error);
      } catch {
        // Nothing more to tell.
      }
    }
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

/**
 * HTTP/2 frames (RFC 9113 §4, §6): the types, flags, error codes and settings a server reads and
 * writes, and the connection's output: frames are appended to one buffer, reused, and written
 * once per turn of the event loop (one system call for everything answered in it).
 */
import { Buffer } from "node:buffer";

export const DATA = 0x0,
  HEADERS = 0x1,
  PRIORITY = 0x2,
  RST_STREAM = 0x3,
  SETTINGS = 0x4,
  PUSH_PROMISE = 0x5,
  PING = 0x6,
  GOAWAY = 0x7,
  WINDOW_UPDATE = 0x8,
  CONTINUATION = 0x9;

export const END_STREAM = 0x1, ACK = 0x1, END_HEADERS = 0x4, PADDED = 0x8, PRIORITY_FLAG = 0x20;

/** Error codes (§7). */
export const NO_ERROR = 0x0,
  PROTOCOL_ERROR = 0x1,
  INTERNAL_ERROR = 0x2,
  FLOW_CONTROL_ERROR = 0x3,
  STREAM_CLOSED = 0x5,
  FRAME_SIZE_ERROR = 0x6,
  REFUSED_STREAM = 0x7,
  CANCEL = 0x8,
  COMPRESSION_ERROR = 0x9,
  ENHANCE_YOUR_CALM = 0xb;

/** Settings identifiers (§6.5.2, RFC 8441 §3). */
export const S_HEADER_TABLE_SIZE = 0x1,
  S_ENABLE_PUSH = 0x2,
  S_MAX_CONCURRENT_STREAMS = 0x3,
  S_INITIAL_WINDOW_SIZE = 0x4,
  S_MAX_FRAME_SIZE = 0x5,
  S_MAX_HEADER_LIST_SIZE = 0x6,
  S_ENABLE_CONNECT_PROTOCOL = 0x8;

/** The largest frame payload this side accepts (the default: SETTINGS_MAX_FRAME_SIZE not sent). */
export const MAX_FRAME = 16384;
export const MAX_WINDOW = 0x7fffffff;
export const DEFAULT_WINDOW = 65535;

/** Frames gathered past this are written at once; a buffer grown past it is dropped once written. */
const OUT_SIZE = 64 * 1024;
/** The output buffer's size to begin with (made when first needed, dropped while the connection is idle). */
const OUT_START = 16 * 1024;
const NONE = Buffer.alloc(0);
/**
 * Output buffers not in use. A connection takes one when it has frames to write and gives it back
 * once they are written (the kernel or `pending` has them): buffers are held per turn of the event
 * loop, not per connection, and an idle connection holds none.
 */
const FREE: Buffer[] = [];
const FREE_MAX = 64;
/** Output waiting for the socket beyond this makes answers wait (stream.write returns false). */
const WRITE_HIGH = 256 * 1024;

/** The socket as the output needs it (TcpSocket). */
interface Writable {
  write(data: Uint8Array, byteOffset?: number, byteLength?: number): number;
}

/**
 * Frames waiting to be written, in one growing buffer, written once per turn of the event loop
 * (or at once past {@link OUT_SIZE}); what the kernel does not take waits in `pending` for drain.
 */
export class FrameOut {
  buf: Buffer = NONE;
  len = 0;
  pending: Buffer | undefined;
  /** Nothing more is written (the socket is closed). */
  closed = false;
  #scheduled = false;
  readonly #flushFn = () => this.flush();

  constructor(readonly socket: Writable) {}

  /** Bytes not taken by the kernel yet, and frames not written yet. */
  get queued(): number {
    return (this.pending?.length ?? 0) + this.len;
  }

  /** Writers wait (for drain) past this. */
  get full(): boolean {
    return this.queued >= WRITE_HIGH;
  }

  /** Frames were added: write them this turn. */
  wrote(): void {
    if (this.len >= OUT_SIZE) return this.flush();
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flushFn);
    }
  }

  flush(): void {
    this.#scheduled = false;
    if (this.len === 0 || this.closed) return;
    if (this.pending !== undefined) {
      this.pending = Buffer.concat([this.pending, this.buf.subarray(0, this.len)]);
      return this.#taken();
    }
    const n = this.socket.write(this.buf, 0, this.len);
    if (n < this.len) this.pending = Buffer.from(this.buf.subarray(n > 0 ? n : 0, this.len));
    this.#taken();
  }

  /** The socket has room: true once everything waiting has been written. */
  drain(): boolean {
    const p = this.pending;
    if (p === undefined) return true;
    const n = this.socket.write(p);
    if (n < p.length) {
      this.pending = n > 0 ? p.subarray(n) : p;
      return false;
    }
    this.pending = undefined;
    if (this.len > 0) this.flush();
    return this.pending === undefined;
  }

  /** Make room for `n` more bytes. */
  room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    if (this.buf === NONE && n <= OUT_START && FREE.length > 0) {
      this.buf = FREE.pop()!;
      return;
    }
    const b = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n, OUT_START));
    if (this.len > 0) this.buf.copy(b, 0, 0, this.len);
    this.buf = b;
  }

  /** A frame header for a payload of `length` bytes, with room made for the payload. */
  head(length: number, type: number, flags: number, stream: number): void {
    this.room(9 + length);
    const b = this.buf;
    let p = this.len;
    b[p++] = length >>> 16;
    b[p++] = (length >>> 8) & 0xff;
    b[p++] = length & 0xff;
    b[p++] = type;
    b[p++] = flags;
    b[p++] = (stream >>> 24) & 0x7f;
    b[p++] = (stream >>> 16) & 0xff;
    b[p++] = (stream >>> 8) & 0xff;
    b[p++] = stream & 0xff;
    this.len = p;
  }

  u32(v: number): void {
    const b = this.buf;
    let p = this.len;
    b[p++] = v >>> 24;
    b[p++] = (v >>> 16) & 0xff;
    b[p++] = (v >>> 8) & 0xff;
    b[p++] = v & 0xff;
    this.len = p;
  }

  bytes(src: Uint8Array, start: number, end: number): void {
    // Buffer.copy makes no view; a plain Uint8Array (a body chunk) needs one unless whole.
    if (Buffer.isBuffer(src)) src.copy(this.buf, this.len, start, end);
    else this.buf.set(start === 0 && end === src.length ? src : src.subarray(start, end), this.len);
    this.len += end - start;
  }

  rst(stream: number, code: number): void {
    this.head(4, RST_STREAM, 0, stream);
    this.u32(code);
  }

  windowUpdate(stream: number, increment: number): void {
    this.head(4, WINDOW_UPDATE, 0, stream);
    this.u32(increment);
  }

  goaway(lastStream: number, code: number): void {
    this.head(8, GOAWAY, 0, 0);
    this.u32(lastStream & MAX_WINDOW);
    this.u32(code);
  }

  settings(pairs: readonly number[]): void {
    this.head(pairs.length * 3, SETTINGS, 0, 0);
    for (let i = 0; i < pairs.length; i += 2) {
      this.buf[this.len++] = pairs[i]! >>> 8;
      this.buf[this.len++] = pairs[i]! & 0xff;
      this.u32(pairs[i + 1]!);
    }
  }

  /** What was written is gone: the buffer goes back to the free list (one a burst made large, to the collector). */
  #taken(): void {
    this.len = 0;
    const b = this.buf;
    this.buf = NONE;
    if (b.length === OUT_START && FREE.length < FREE_MAX) FREE.push(b);
  }
}

/** The payload length in a frame header at `b[i]`. */
export function frameLength(b: Uint8Array, i: number): number {
  return (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
}

/**
 * A frame split across reads, put together in a buffer of its own size: joining the reads instead
 * would copy every byte of a large upload once more (and keep each read alive with it).
 */
export class PartialFrame {
  buf: Buffer;
  have: number;

  /** The start of a frame: `b` from `i` to its end. */
  constructor(b: Buffer, i: number) {
    const rest = b.length - i;
    this.buf = Buffer.allocUnsafe(rest >= 9 ? 9 + frameLength(b, i) : 9);
    this.have = b.copy(this.buf, 0, i);
  }

  /** Takes what it lacks from `b` at `i`; returns where that ends. Past the header, the length may be over MAX_FRAME: see `tooLong`. */
  add(b: Buffer, i: number): number {
    if (this.have < 9) {
      const t = b.copy(this.buf, this.have, i, i + 9 - this.have);
      this.have += t;
      i += t;
      if (this.have < 9) return i;
      const length = frameLength(this.buf, 0);
      if (length > MAX_FRAME) return i;
      const grown = Buffer.allocUnsafe(9 + length);
      this.buf.copy(grown, 0, 0, 9);
      this.buf = grown;
    }
    const t = b.copy(this.buf, this.have, i, i + this.buf.length - this.have);
    this.have += t;
    return i + t;
  }

  get tooLong(): boolean {
    return this.have >= 9 && frameLength(this.buf, 0) > MAX_FRAME;
  }

  get whole(): boolean {
    return this.have === this.buf.length && this.have >= 9;
  }
}

/**
 * One client connection speaking HTTP/2 (RFC 9113), on bytes: the preface, frames parsed from
 * the socket's reads, settings, flow control of the connection, PING, GOAWAY, errors; streams are
 * opened by request.ts and served by stream.ts. Every frame passes the abuse bounds (guard.ts)
 * before it is acted on. Frames written are gathered in one buffer (frames.ts) and written once
 * per turn of the event loop.
 */
import { Buffer } from "node:buffer";
import type { TcpSocket } from "../runtime/types.ts";
import * as F from "./frames.ts";
import { FrameGuard, GUARD } from "./guard.ts";
import { HpackDecoder, HpackEncoder } from "./hpack.ts";
import type { H2Stream, StreamHost } from "./stream.ts";
import { headerBlock, type RequestHost } from "./request.ts";
import { settingsFrame, windowUpdate } from "./flow.ts";

/** The socket's side, as the listener hands it over (ClientConn: closeTaken). */
export interface Taken {
  closeTaken(graceful: boolean): void;
}

/** What the connection needs of the listener's HTTP/2 front (front.ts). */
export interface Front extends RequestHost {
  onAbuse(clientIp: string, reason: string): void;
  gone(c: H2Connection): void;
}

/** How long a connection closed on an error keeps reading (and dropping), so that its GOAWAY is not lost to a reset. */
const LINGER_MS = 1000;
const PREFACE_LENGTH = 24;
const ENCODER = new HpackEncoder();

export class H2Connection implements StreamHost {
  readonly out: F.FrameOut;
  /** One encoder for every connection: a block is encoded and copied into `out` at once. */
  readonly enc = ENCODER;
  readonly dec = new HpackDecoder();
  readonly streams = new Map<number, H2Stream>();
  readonly guard: FrameGuard;
  sendWindow = F.DEFAULT_WINDOW;
  maxFrame = 16384;
  /** The client's SETTINGS_INITIAL_WINDOW_SIZE: each stream's send window to begin with. */
  peerWindow = F.DEFAULT_WINDOW;
  /** This side's receive window for the connection, and what was consumed since the last WINDOW_UPDATE. */
  recvWindow: number;
  #credit = 0;
  readonly connWindow: number;
  /** The highest stream the client opened. */
  lastStream = 0;
  /** Streams open, answered in full, reset before their answer; when the last one closed. */
  active = 0;
  answered = 0;
  prematureResets = 0;
  /** Streams opened so far; the sweep's idle clock (front.ts): since when, and at which count of opened streams. */
  opens = 0;
  idleSince = 0;
  idleAt = -1;
  /** Streams whose answer waits for a window, and since when one has. */
  blocked = 0;
  blockedSince = 0;
  abusive: string | undefined;
  /** GOAWAY sent: no new streams. Dead: nothing more is parsed (an error, abuse, the socket gone). */
  goaway = false;
  dead = false;
  /** A frame begun in an earlier read. */
  #part: F.PartialFrame | undefined;
  #preface = PREFACE_LENGTH;
  #settings = false;
  /** A header block in progress (HEADERS without END_HEADERS): its stream, flags, fragments. */
  blockStream = 0;
  blockFlags = 0;
  blockParts: Buffer[] = [];
  #waitWindow = new Set<H2Stream>();
  #waitRoom = new Set<H2Stream>();
  #released = false;

  constructor(
    readonly front: Front,
    readonly socket: TcpSocket<unknown>,
    readonly taken: Taken,
    readonly clientIp: string,
  ) {
    this.out = new F.FrameOut(socket);
    const s = front.settings;
    this.guard = new FrameGuard(this, s.maxHeaderListSize);
    // The connection's receive window: a few streams' worth, so one paused stream does not stop the others.
    this.connWindow = Math.min(F.MAX_WINDOW, Math.max(F.DEFAULT_WINDOW, s.initialWindowSize * 4));
    this.recvWindow = this.connWindow;
    this.out.settings([
      F.S_MAX_CONCURRENT_STREAMS,
      s.maxConcurrentStreams,
      F.S_INITIAL_WINDOW_SIZE,
      s.initialWindowSize,
      F.S_MAX_HEADER_LIST_SIZE,
      s.maxHeaderListSize,
      F.S_ENABLE_CONNECT_PROTOCOL,
      1,
    ]);
    if (this.connWindow > F.DEFAULT_WINDOW) this.out.windowUpdate(0, this.connWindow - F.DEFAULT_WINDOW);
    this.wrote();
  }

  get full(): boolean {
    return this.out.full;
  }

  // ---- reading ----

  onData(b: Buffer): void {
    if (this.dead) return;
    let i = 0;
    const n = b.length;
    if (this.#preface > 0) {
      const take = Math.min(this.#preface, n);
      this.#preface -= take;
      i = take;
    }
    this.guard.tick();
    const part = this.#part;
    if (part !== undefined) {
      i = part.add(b, i);
      if (part.tooLong) return this.error(F.FRAME_SIZE_ERROR, `a frame of ${F.frameLength(part.buf, 0)} bytes`);
      if (!part.whole) return;
      this.#part = undefined;
      if (!this.#one(part.buf, 0, part.buf.length - 9)) return;
    }
    while (n - i >= 9) {
      const length = F.frameLength(b, i);
      if (length > F.MAX_FRAME) return this.error(F.FRAME_SIZE_ERROR, `a frame of ${length} bytes`);
      if (n - i < 9 + length) break;
      if (!this.#one(b, i, length)) return;
      i += 9 + length;
    }
    if (i < n) this.#part = new F.PartialFrame(b, i);
    this.front.dispatch();
  }

  /** The frame at `b[i]`, whole: false when the connection ended over it. */
  #one(b: Buffer, i: number, length: number): boolean {
    const type = b[i + 3]!;
    const flags = b[i + 4]!;
    const id = ((b[i + 5]! & 0x7f) << 24) | (b[i + 6]! << 16) | (b[i + 7]! << 8) | b[i + 8]!;
    const why = this.guard.check(type, flags, length, id);
    if (why !== undefined) {
      this.abuse(why);
      return false;
    }
    this.#frame(type, flags, id, b, i + 9, i + 9 + length);
    return !this.dead;
  }

  #frame(type: number, flags: number, id: number, b: Buffer, p: number, end: number): void {
    if (!this.#settings) {
      if (type !== F.SETTINGS || (flags & F.ACK) !== 0) return this.error(F.PROTOCOL_ERROR, "the preface is not followed by SETTINGS");
      this.#settings = true;
    }
    if (this.blockStream !== 0 && type !== F.CONTINUATION) return this.error(F.PROTOCOL_ERROR, "a frame inside a header block");
    switch (type) {
      case F.DATA:
        return this.#data(flags, id, b, p, end);
      case F.HEADERS:
      case F.CONTINUATION:
        return headerBlock(this, type, flags, id, b, p, end);
      case F.PRIORITY:
        if (id === 0) return this.error(F.PROTOCOL_ERROR, "PRIORITY on stream 0");
        if (end - p !== 5) return this.streamError(id, F.FRAME_SIZE_ERROR);
        if ((b.readUInt32BE(p) & F.MAX_WINDOW) === id) return this.streamError(id, F.PROTOCOL_ERROR);
        return;
      case F.RST_STREAM: {
        if (id === 0) return this.error(F.PROTOCOL_ERROR, "RST_STREAM on stream 0");
        if (end - p !== 4) return this.error(F.FRAME_SIZE_ERROR, "RST_STREAM of the wrong size");
        const s = this.streams.get(id);
        if (s !== undefined) return s.gone();
        if (id > this.lastStream) return this.error(F.PROTOCOL_ERROR, "RST_STREAM on an idle stream");
        return;
      }
      case F.SETTINGS:
        return settingsFrame(this, flags, id, b, p, end);
      case F.PUSH_PROMISE:
        return this.error(F.PROTOCOL_ERROR, "PUSH_PROMISE from a client");
      case F.PING:
        if (id !== 0) return this.error(F.PROTOCOL_ERROR, "PING on a stream");
        if (end - p !== 8) return this.error(F.FRAME_SIZE_ERROR, "PING of the wrong size");
        if ((flags & F.ACK) === 0) {
          this.out.head(8, F.PING, F.ACK, 0);
          this.out.bytes(b, p, end);
          this.wrote();
        }
        return;
      case F.GOAWAY:
        if (id !== 0) return this.error(F.PROTOCOL_ERROR, "GOAWAY on a stream");
        // The client opens no more streams; those open finish.
        if (!this.goaway) this.close();
        return;
      case F.WINDOW_UPDATE:
        return windowUpdate(this, id, b, p, end);
    }
    // Unknown frame types are ignored (§4.1, §5.5).
  }

  #data(flags: number, id: number, b: Buffer, p: number, end: number): void {
    if (id === 0) return this.error(F.PROTOCOL_ERROR, "DATA on stream 0");
    const length = end - p;
    if (length > this.recvWindow) return this.error(F.FLOW_CONTROL_ERROR, "DATA beyond the connection's window");
    this.recvWindow -= length;
    let start = p;
    let stop = end;
    if ((flags & F.PADDED) !== 0) {
      const pad = length > 0 ? b[p]! : 0;
      if (length === 0 || pad >= length) return this.error(F.PROTOCOL_ERROR, "padding longer than the frame");
      start = p + 1;
      stop = end - pad;
    }
    const s = this.streams.get(id);
    if (s === undefined || s.remoteDone) {
      this.consumed(length);
      if (s === undefined && id > this.lastStream) return this.error(F.PROTOCOL_ERROR, "DATA on an idle stream");
      if (s !== undefined) this.streamError(id, F.STREAM_CLOSED);
      return;
    }
    if (length > s.recvWindow) {
      this.consumed(length);
      return this.streamError(id, F.FLOW_CONTROL_ERROR);
    }
    s.recvWindow -= length;
    // Padding counts against the windows; it is given back at once.
    if (stop - start < length) this.consumed(length - (stop - start));
    if (s.declared >= 0 && s.received + (stop - start) > s.declared) {
      this.consumed(stop - start);
      return this.streamError(id, F.PROTOCOL_ERROR);
    }
    if (stop > start) s.data(b.subarray(start, stop));
    if ((flags & F.END_STREAM) !== 0 && !s.closed) {
      if (s.declared >= 0 && s.received !== s.declared) return this.streamError(id, F.PROTOCOL_ERROR);
      s.remoteEnd();
    }
  }

  /** A window grew: the streams waiting on it go on, first come first served. */
  windowOpened(): void {
    if (this.#waitWindow.size === 0) return;
    const waiting = [...this.#waitWindow];
    this.#waitWindow.clear();
    for (const s of waiting) {
      if (this.sendWindow <= 0) this.#waitWindow.add(s);
      else s.flush();
    }
  }

  // ---- what streams ask of the connection (StreamHost) ----

  waitWindow(s: H2Stream): void {
    this.#waitWindow.add(s);
  }

  waitRoom(s: H2Stream): void {
    this.#waitRoom.add(s);
  }

  block(waiting: boolean): void {
    if (waiting) {
      if (this.blocked++ === 0) this.blockedSince = performance.now();
    } else this.blocked--;
  }

  consumed(n: number): void {
    this.#credit += n;
    if (this.#credit >= this.connWindow >>> 2) {
      this.out.windowUpdate(0, this.#credit);
      this.recvWindow += this.#credit;
      this.#credit = 0;
      this.wrote();
    }
  }

  opened(s: H2Stream): void {
    this.streams.set(s.id, s);
    this.active++;
    this.opens++;
  }

  released(s: H2Stream): void {
    if (this.streams.delete(s.id)) {
      this.#waitWindow.delete(s);
      this.#waitRoom.delete(s);
      const n = s.unconsumed;
      if (n > 0) this.consumed(n);
      if (--this.active === 0) {
        if (this.goaway && !this.dead) this.#finish(true);
      }
    }
  }

  /** A stream error (§5.4.2): RST_STREAM with `code`, the stream closed. */
  streamError(id: number, code: number): void {
    const s = this.streams.get(id);
    if (s !== undefined) s.reset(code);
    else {
      this.out.rst(id, code);
      this.wrote();
    }
  }

  premature(): void {
    if (++this.prematureResets > GUARD.maxPremature && this.prematureResets > this.answered) {
      this.abuse(`${this.prematureResets} streams reset before their answer, ${this.answered} answered (rapid reset)`);
    }
  }

  // ---- writing ----

  wrote(): void {
    this.out.wrote();
  }

  flush(): void {
    this.out.flush();
  }

  onDrain(): void {
    if (!this.out.drain()) return;
    if (this.#finishOnDrain) return this.#finish(true);
    if (this.full || this.#waitRoom.size === 0) return;
    const waiting = [...this.#waitRoom];
    this.#waitRoom.clear();
    for (const s of waiting) s.room();
  }

  // ---- closing ----

  /** A connection error (§5.4.1): GOAWAY with `code`, then the connection closed. */
  error(code: number, reason: string, calm = false): void {
    if (this.dead) return;
    if (calm) {
      this.abusive = reason;
      this.front.onAbuse(this.clientIp, reason);
    }
    this.dead = true;
    if (!this.goaway) {
      this.goaway = true;
      this.out.goaway(this.lastStream, code);
    }
    this.#abortAll();
    this.flush();
    // Reading (and dropping) what still comes for a moment: closing with unread input makes the kernel reset, losing the GOAWAY.
    const t = setTimeout(() => this.#finish(this.out.pending === undefined), LINGER_MS);
    (t as { unref?: () => void }).unref?.();
  }

  /** Past an abuse bound: GOAWAY (ENHANCE_YOUR_CALM) and close. */
  abuse(reason: string): void {
    this.error(F.ENHANCE_YOUR_CALM, reason, true);
  }

  /** GOAWAY (NO_ERROR), then close once the open streams are done (shutdown, idle, the client's GOAWAY). */
  close(): void {
    if (this.goaway || this.dead) return;
    this.goaway = true;
    this.out.goaway(this.lastStream, F.NO_ERROR);
    this.wrote();
    if (this.active === 0) this.#finish(true);
  }

  #abortAll(): void {
    for (const s of [...this.streams.values()]) s.gone();
  }

  #finishOnDrain = false;

  #finish(graceful: boolean): void {
    if (this.#released) return;
    this.flush();
    // A graceful close writes everything first (the socket's drain comes back here).
    if (graceful && this.out.pending !== undefined) return void (this.#finishOnDrain = true);
    this.dead = true;
    this.#released = true;
    this.out.closed = true;
    this.#abortAll();
    this.taken.closeTaken(graceful && this.out.pending === undefined);
    this.front.gone(this);
  }

  /** The client's FIN: nothing more comes; the streams in flight are cancelled. */
  onEnd(): void {
    this.#finish(false);
  }

  onClose(_error?: string): void {
    this.#finish(false);
  }

  onShutdown(): void {
    this.close();
  }
}

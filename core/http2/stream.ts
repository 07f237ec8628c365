/**
 * One HTTP/2 stream of a connection served by conn.ts (RFC 9113 §5.1): its state, its request
 * body coming in (credited back to the client as it is consumed: a reader that pauses stops the
 * WINDOW_UPDATEs, so the client stops sending), and its answer going out within both flow-control
 * windows (a chunk that does not fit waits, and `write` returns false until `onDrain`: the
 * upstream read waits with it, so a slow client never makes the proxy hold a whole response).
 */
import type { Buffer } from "node:buffer";
import type { HeaderBlock } from "../http1/bytes.ts";
import { encodeResponse } from "./fields.ts";
import { CONTINUATION, DATA, END_HEADERS, END_STREAM, type FrameOut, HEADERS, NO_ERROR } from "./frames.ts";
import type { HpackEncoder } from "./hpack.ts";

/** What a stream needs of its connection (H2Connection, conn.ts). */
export interface StreamHost {
  readonly out: FrameOut;
  readonly enc: HpackEncoder;
  /** The connection's send window (the client's WINDOW_UPDATEs on stream 0). */
  sendWindow: number;
  /** The client's SETTINGS_MAX_FRAME_SIZE. */
  readonly maxFrame: number;
  /** Frames were added to `out`: write them this turn. */
  wrote(): void;
  /** The output waiting for the socket is over its bound: writers wait (for `room`). */
  readonly full: boolean;
  /** `s` waits for the connection's window, or for the socket (onDrain when either opens). */
  waitWindow(s: H2Stream): void;
  waitRoom(s: H2Stream): void;
  /** A stream's answer starts (true) or stops waiting for a flow-control window (the stall bound). */
  block(waiting: boolean): void;
  /** `n` bytes of request bodies consumed: the connection's receive window gets them back. */
  consumed(n: number): void;
  /** The stream is closed (both ends done, or reset): forget it. */
  released(s: H2Stream): void;
}

export class H2Stream {
  /** The client's window for what this side sends, and this side's for what the client sends. */
  sendWindow: number;
  recvWindow: number;
  /** END_STREAM received, and sent; closed: both, or reset. */
  remoteDone = false;
  localDone = false;
  closed = false;
  /** Request body bytes received, and the Content-Length declared (-1: none). */
  received = 0;
  declared = -1;
  /** Body bytes for a reader, an end, a close (reset: true when not both ends finished), room to write again. */
  onData: ((chunk: Buffer) => void) | undefined;
  onEnd: (() => void) | undefined;
  onClose: ((reset: boolean) => void) | undefined;
  onDrain: (() => void) | undefined;
  #early: Buffer[] | undefined;
  #paused = false;
  /** Bytes delivered while paused, credited on resume. */
  #held = 0;
  /** Bytes consumed, not yet given back with a WINDOW_UPDATE. */
  #credit = 0;
  /** Answer bytes waiting for the window: the chunk and how far it has gone, and END_STREAM after it. */
  #queue: Uint8Array | undefined;
  #queueAt = 0;
  #endAfter = false;
  #blocked = false;
  #discard = false;
  /** `write` returned false: `onDrain` is owed. */
  #wantDrain = false;

  constructor(
    readonly host: StreamHost,
    readonly id: number,
    sendWindow: number,
    readonly window: number,
  ) {
    this.sendWindow = sendWindow;
    this.recvWindow = window;
  }

  // ---- coming in ----

  /** DATA for this stream (already checked against its window). */
  data(chunk: Buffer): void {
    this.received += chunk.length;
    this.#deliver(chunk);
  }

  #deliver(chunk: Buffer): void {
    if (this.#discard) return this.#consume(chunk.length);
    const f = this.onData;
    if (f === undefined) {
      (this.#early ??= []).push(chunk);
      return;
    }
    f(chunk);
    if (this.#paused) this.#held += chunk.length;
    else this.#consume(chunk.length);
  }

  /** END_STREAM from the client. */
  remoteEnd(): void {
    this.remoteDone = true;
    if (this.onData !== undefined || this.#discard) this.onEnd?.();
    if (this.localDone) this.#close(false);
  }

  /** Start delivering the body (what came early first). */
  read(onData: (chunk: Buffer) => void, onEnd: () => void): void {
    this.onData = onData;
    this.onEnd = onEnd;
    const early = this.#early;
    this.#early = undefined;
    if (early !== undefined) { for (const c of early) if (!this.closed) this.#deliver(c); }
    if (this.remoteDone && !this.closed) onEnd();
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    const n = this.#held;
    this.#held = 0;
    if (n > 0) this.#consume(n);
  }

  /** The body is not wanted: what comes is dropped and credited at once. */
  discard(): void {
    this.#discard = true;
    this.onData = undefined;
    let n = this.#held;
    this.#held = 0;
    if (this.#early !== undefined) { for (const c of this.#early) n += c.length; }
    this.#early = undefined;
    if (n > 0) this.#consume(n);
    // Answered already: the client may stop sending what nobody reads (§8.1).
    if (this.localDone && !this.remoteDone) this.reset(NO_ERROR);
  }

  #consume(n: number): void {
    this.host.consumed(n);
    if (this.remoteDone || this.closed) return;
    this.#credit += n;
    // Given back in pieces of a quarter window: few WINDOW_UPDATEs, the client never waits on them.
    if (this.#credit >= this.window >>> 2 || this.#credit >= 65536) {
      this.host.out.windowUpdate(this.id, this.#credit);
      this.recvWindow += this.#credit;
      this.#credit = 0;
      this.host.wrote();
    }
  }

  /** Bytes received but not consumed (early or held): given back to the connection when the stream goes. */
  get unconsumed(): number {
    let n = this.#held;
    if (this.#early !== undefined) { for (const c of this.#early) n += c.length; }
    return n;
  }

  // ---- going out ----

  /** HEADERS (and CONTINUATION) for the answer; `skip`: a header not to send. */
  respond(status: number, headers: readonly string[] | HeaderBlock, length: number, end: boolean, skip?: string): void {
    if (this.closed || this.localDone) return;
    const enc = this.host.enc;
    encodeResponse(enc, status, headers, length, skip);
    const out = this.host.out;
    const max = this.host.maxFrame;
    let at = 0;
    const total = enc.len;
    const flags = end ? END_STREAM : 0;
    if (total <= max) {
      out.head(total, HEADERS, flags | END_HEADERS, this.id);
      out.bytes(enc.buf, 0, total);
    } else {
      out.head(max, HEADERS, flags, this.id);
      out.bytes(enc.buf, 0, max);
      for (at = max; at < total; at += max) {
        const n = Math.min(max, total - at);
        out.head(n, CONTINUATION, at + n === total ? END_HEADERS : 0, this.id);
        out.bytes(enc.buf, at, at + n);
      }
    }
    this.host.wrote();
    if (end) this.#localEnd();
  }

  /**
   * Body bytes (END_STREAM after them when `end`). false: they wait for the window or for the
   * socket; write no more until `onDrain`.
   */
  write(data: Uint8Array, end: boolean): boolean {
    if (this.closed || this.localDone) return true;
    if (this.#queue !== undefined) {
      // Only one chunk waits at a time (the writer waits for onDrain); join if one comes anyway.
      const rest = this.#queue.subarray(this.#queueAt);
      const joined = new Uint8Array(rest.length + data.length);
      joined.set(rest);
      joined.set(data, rest.length);
      this.#queue = joined;
      this.#queueAt = 0;
      this.#endAfter ||= end;
      this.#wantDrain = true;
      return false;
    }
    this.#queue = data;
    this.#queueAt = 0;
    this.#endAfter = end;
    this.flush();
    if (this.closed) return true;
    if (this.#queue === undefined && (!this.host.full || this.localDone)) return true;
    this.#wantDrain = true;
    if (this.#queue === undefined) this.host.waitRoom(this);
    return false;
  }

  /** The socket took what waited: a writer told to wait goes on. */
  room(): void {
    if (!this.#wantDrain || this.#queue !== undefined || this.closed) return;
    this.#wantDrain = false;
    this.onDrain?.();
  }

  /** END_STREAM (after what waits). */
  end(): void {
    if (this.#queue !== undefined) this.#endAfter = true;
    else this.write(EMPTY, true);
  }

  /** Send what waits, as far as both windows go; called again when a window opens. */
  flush(): void {
    const q = this.#queue;
    if (q === undefined || this.closed) return;
    const host = this.host;
    const out = host.out;
    const max = host.maxFrame;
    let at = this.#queueAt;
    const total = q.length;
    while (at < total || (at === total && total === 0)) {
      const room = Math.min(this.sendWindow, host.sendWindow, max);
      if (room <= 0 && total > 0) break;
      const n = Math.min(room, total - at);
      const last = at + n === total;
      out.head(n, DATA, last && this.#endAfter ? END_STREAM : 0, this.id);
      out.bytes(q, at, at + n);
      at += n;
      this.sendWindow -= n;
      host.sendWindow -= n;
      if (total === 0) break;
    }
    host.wrote();
    if (at < total) {
      this.#queueAt = at;
      if (!this.#blocked) {
        this.#blocked = true;
        host.block(true);
      }
      host.waitWindow(this);
      return;
    }
    this.#queue = undefined;
    this.#queueAt = 0;
    if (this.#blocked) {
      this.#blocked = false;
      host.block(false);
    }
    if (this.#endAfter) this.#localEnd();
    else if (!this.#wantDrain) return;
    else if (!host.full) this.room();
    else host.waitRoom(this);
  }

  /** Whether an answer's bytes wait for a window. */
  get waiting(): boolean {
    return this.#queue !== undefined;
  }

  #localEnd(): void {
    this.localDone = true;
    if (this.remoteDone) return this.#close(false);
    // The answer is complete and the body is not being read: the client may stop sending (§8.1).
    if (this.onData === undefined || this.#discard) this.reset(NO_ERROR);
  }

  /** RST_STREAM with `code` (nothing if already closed). */
  reset(code: number): void {
    if (this.closed) return;
    this.host.out.rst(this.id, code);
    this.host.wrote();
    this.#close(code !== NO_ERROR || !this.localDone);
  }

  /** The client reset the stream, or the connection is gone. */
  gone(): void {
    this.#close(true);
  }

  #close(reset: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.#queue = undefined;
    if (this.#blocked) {
      this.#blocked = false;
      this.host.block(false);
    }
    this.host.released(this);
    this.onClose?.(reset);
    this.onDrain?.();
  }
}

const EMPTY = new Uint8Array(0);

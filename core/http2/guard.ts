/**
 * Bounds on abusive HTTP/2 clients, counted from the frames as the connection parses them
 * (conn.ts calls {@link FrameGuard.check} with each frame's header before acting on the frame;
 * {@link FrameGuard.feed} reads the same from raw bytes), a few operations per frame.
 *
 * Counted per connection, over fixed windows of {@link GUARD.windowMs}:
 * - rapid reset (CVE-2023-44487): RST_STREAM frames from the client, more than
 *   {@link GUARD.maxResets} in a window, or more than twice the streams answered once there were
 *   {@link GUARD.ratioAfter} (a client that cancels most of what it asks for). A stream reset in
 *   the read that opened it never reaches the gateway (streams are handed to it at the end of a
 *   read), so it costs little; one reset after the gateway started on it costs a backend request
 *   and its keep-alive connection, so those "premature" resets have a lower bound: more than
 *   {@link GUARD.maxPremature}, and more than the streams answered (Envoy's premature-reset rule);
 * - CONTINUATION flood (2024): a header block in more than {@link GUARD.maxBlockFrames} frames, or
 *   larger than twice max_header_list_size (compressed, so well above what decodes to the limit);
 * - SETTINGS and PING floods: more than {@link GUARD.maxControl} of them (ACKs aside), each of
 *   which makes the server write an answer;
 * - empty frames (CVE-2019-9518): DATA, HEADERS or CONTINUATION frames with no payload and no
 *   END_STREAM, more than {@link GUARD.maxEmpty};
 * - a window that never opens: see front.ts (streams waiting for WINDOW_UPDATE that never comes).
 * Past a bound the connection gets GOAWAY (ENHANCE_YOUR_CALM) and is closed; nothing more it
 * sends is parsed.
 */

export const GUARD = {
  windowMs: 10_000,
  maxResets: 1000,
  ratioAfter: 100,
  maxControl: 500,
  maxEmpty: 100,
  maxBlockFrames: 32,
  /** Streams the gateway had started on (a backend request) that the client reset before their answer. */
  maxPremature: 16,
} as const;

const DATA = 0, HEADERS = 1, RST_STREAM = 3, SETTINGS = 4, PING = 6, WINDOW_UPDATE = 8, CONTINUATION = 9;
const END_STREAM = 0x1, ACK = 0x1, END_HEADERS = 0x4;
const PREFACE_LENGTH = 24;

/** What the guard reads of its connection: streams answered in full (rapid reset's ratio). */
export interface GuardedConn {
  readonly answered: number;
}

export class FrameGuard {
  /** Preface bytes still to pass (the listener checked them). */
  #preface = PREFACE_LENGTH;
  /** A frame header split across reads. */
  readonly #head = new Uint8Array(9);
  #headAt = 0;
  /** Payload bytes of the current frame still to skip. */
  #skip = 0;
  #windowStart = 0;
  resets = 0;
  #resetsInWindow = 0;
  #control = 0;
  #empty = 0;
  /** In a header block (HEADERS without END_HEADERS, then CONTINUATION frames). */
  #blockFrames = 0;
  #blockBytes = 0;
  /** After feed() found a reason: where in the chunk the frame that crossed the bound begins (the bytes before it may be parsed). */
  stopAt = 0;
  /** The highest stream a client's HEADERS opened (a GOAWAY's last stream). */
  lastStream = 0;
  /** When the client last sent a WINDOW_UPDATE or SETTINGS (performance.now() ms). */
  windowMovedAt = performance.now();
  readonly #maxBlockBytes: number;

  constructor(
    readonly conn: GuardedConn,
    maxHeaderListSize: number,
  ) {
    this.#maxBlockBytes = 2 * maxHeaderListSize + 16 * 1024;
  }

  /** Inside a header block (HEADERS without END_HEADERS so far). */
  get inHeaderBlock(): boolean {
    return this.#blockFrames > 0;
  }

  #now = 0;

  /** A read begins: the clock for the frames in it, and a new counting window when one is over. */
  tick(): void {
    const now = performance.now();
    this.#now = now;
    if (now - this.#windowStart > GUARD.windowMs) {
      this.#windowStart = now;
      this.#resetsInWindow = 0;
      this.#control = 0;
      this.#empty = 0;
    }
  }

  /**
   * One frame's header, as the HTTP/2 connection parses it (conn.ts): the reason to close the
   * connection, or undefined.
   */
  check(type: number, flags: number, length: number, stream: number): string | undefined {
    if (type === HEADERS && stream > this.lastStream) this.lastStream = stream;
    return this.#frame(type, flags, length, this.#now);
  }

  /** Look at `chunk`'s frame headers; the reason to close the connection, or undefined. */
  feed(chunk: Uint8Array): string | undefined {
    this.tick();
    const now = this.#now;
    let i = 0;
    const n = chunk.length;
    if (this.#preface > 0) {
      const take = Math.min(this.#preface, n);
      this.#preface -= take;
      i = take;
    }
    while (i < n) {
      if (this.#skip > 0) {
        const take = Math.min(this.#skip, n - i);
        this.#skip -= take;
        i += take;
        continue;
      }
      const head = this.#head;
      const start = i - this.#headAt;
      let h: Uint8Array;
      let at: number;
      if (this.#headAt === 0 && n - i >= 9) {
        h = chunk;
        at = i;
        i += 9;
      } else {
        while (this.#headAt < 9 && i < n) head[this.#headAt++] = chunk[i++]!;
        if (this.#headAt < 9) break;
        this.#headAt = 0;
        h = head;
        at = 0;
      }
      const length = (h[at]! << 16) | (h[at + 1]! << 8) | h[at + 2]!;
      if (h[at + 3] === HEADERS) {
        const id = ((h[at + 5]! & 0x7f) << 24) | (h[at + 6]! << 16) | (h[at + 7]! << 8) | h[at + 8]!;
        if (id > this.lastStream) this.lastStream = id;
      }
      const why = this.#frame(h[at + 3]!, h[at + 4]!, length, now);
      if (why !== undefined) {
        this.stopAt = Math.max(0, start);
        return why;
      }
      this.#skip = length;
    }
    return undefined;
  }

  #frame(type: number, flags: number, length: number, now: number): string | undefined {
    if (this.#blockFrames > 0) {
      // Inside a header block only CONTINUATION may come (the session refuses anything else).
      if (type === CONTINUATION) {
        this.#blockFrames++;
        this.#blockBytes += length;
        if (this.#blockFrames > GUARD.maxBlockFrames)
          return `a header block in more than ${GUARD.maxBlockFrames} frames (CONTINUATION flood)`;
        if (this.#blockBytes > this.#maxBlockBytes) return `a header block of more than ${this.#maxBlockBytes} bytes (CONTINUATION flood)`;
        if ((flags & END_HEADERS) !== 0) this.#blockFrames = 0;
        else if (length === 0 && ++this.#empty > GUARD.maxEmpty) return "empty CONTINUATION frames (flood)";
      }
      return undefined;
    }
    switch (type) {
      case HEADERS:
        if ((flags & END_HEADERS) === 0) {
          this.#blockFrames = 1;
          this.#blockBytes = length;
          if (length > this.#maxBlockBytes) return `a header block of more than ${this.#maxBlockBytes} bytes`;
        } else if (length === 0 && ++this.#empty > GUARD.maxEmpty) return "empty HEADERS frames (flood)";
        return undefined;
      case DATA:
        if (length === 0 && (flags & END_STREAM) === 0 && ++this.#empty > GUARD.maxEmpty) return "empty DATA frames (flood)";
        return undefined;
      case RST_STREAM:
        this.resets++;
        if (++this.#resetsInWindow > GUARD.maxResets)
          return `more than ${GUARD.maxResets} stream resets in ${GUARD.windowMs / 1000} s (rapid reset)`;
        if (this.resets >= GUARD.ratioAfter && this.resets > 2 * this.conn.answered) {
          return `${this.resets} stream resets for ${this.conn.answered} streams answered (rapid reset)`;
        }
        return undefined;
      case SETTINGS:
        if ((flags & ACK) !== 0) return undefined;
        this.windowMovedAt = now;
        if (++this.#control > GUARD.maxControl)
          return `more than ${GUARD.maxControl} SETTINGS and PING frames in ${GUARD.windowMs / 1000} s (flood)`;
        return undefined;
      case PING:
        if ((flags & ACK) !== 0) return undefined;
        if (++this.#control > GUARD.maxControl)
          return `more than ${GUARD.maxControl} SETTINGS and PING frames in ${GUARD.windowMs / 1000} s (flood)`;
        return undefined;
      case WINDOW_UPDATE:
        this.windowMovedAt = now;
        return undefined;
    }
    return undefined;
  }
}

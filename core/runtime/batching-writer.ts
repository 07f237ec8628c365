/**
 * The log writer both runtimes hand out: lines gathered as bytes in one buffer and written every
 * 50 ms or `chunk` bytes, in whole lines. A log line need not reach its file sooner than nginx's
 * `buffer=` would have it there, and one write(2) per line cost Bun's FileSink a syscall a request
 * (strace: 5194 writes for ~5200 requests). Bytes rather than a string: the access log encodes its
 * lines straight into the buffer (core/telemetry/log.ts), with no string, rope or UTF-8 pass per request.
 */
import type { ByteSource, Writer } from "./types.ts";

/** Where the bytes go. `write` must be done with `bytes` when it returns (copied or written): the buffer is reused. */
export interface ByteSink {
  write(bytes: Uint8Array): void;
  flush(): void;
  close(): Promise<void>;
  /** Open the file's path again (a file sink only); what was written before is in the old file. */
  reopen?(): void;
}

const encoder = new TextEncoder();

/** `write(text)` as a ByteSource: one object, refilled per call. */
const textSource = {
  text: "",
  fill(buf: Uint8Array, at: number): number {
    return at + encoder.encodeInto(this.text, buf.subarray(at)).written;
  },
};

export class BatchingWriter implements Writer {
  readonly #out: ByteSink;
  readonly #chunk: number;
  readonly #delayMs: number;
  /** `chunk` plus room for a line that passes it (its bytes move to the front after the write). */
  #buf: Uint8Array;
  #at = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(out: ByteSink, chunk = 64 * 1024, delayMs = 50) {
    this.#out = out;
    this.#chunk = chunk;
    this.#delayMs = delayMs;
    this.#buf = new Uint8Array(chunk + 64 * 1024);
  }

  write(text: string): void {
    if (text.length === 0) return;
    textSource.text = text;
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    this.writeBytes(3 * text.length, textSource);
    textSource.text = "";
  }

  writeBytes(maxBytes: number, source: ByteSource): void {
    if (this.#closed) return;
    if (this.#at + maxBytes > this.#buf.length) {
      this.#writeGathered();
      if (maxBytes > this.#buf.length) {
        // Longer than the buffer (a huge log record): on its own.
        const tmp = new Uint8Array(maxBytes);
        this.#out.write(tmp.subarray(0, source.fill(tmp, 0)));
        this.#out.flush();
        return;
      }
    }
    const start = this.#at;
    const end = (this.#at = source.fill(this.#buf, start));
    if (end >= this.#chunk) {
      if (end > this.#chunk && start > 0) {
        // The lines before this one make a whole chunk; this one starts the next.
        this.#out.write(this.#buf.subarray(0, start));
        this.#out.flush();
        this.#buf.copyWithin(0, start, end);
        this.#at = end - start;
      }
      if (this.#at >= this.#chunk) this.#writeGathered();
    }
    if (this.#at > 0 && this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), this.#delayMs);
      // A pending log flush must not keep the process alive (Bun, Node; Deno's timers are numbers).
      (this.#timer as { unref?: () => void }).unref?.();
    }
  }

  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#closed) return;
    this.#writeGathered();
  }

  /** Gathered lines go to the file as it was; later ones to the file the path names now. */
  reopen(): void {
    if (this.#closed || this.#out.reopen === undefined) return;
    this.#writeGathered();
    this.#out.reopen();
  }

  async close(): Promise<void> {
    this.flush();
    this.#closed = true;
    await this.#out.close();
  }

  /**
   * Writes what is gathered, flushed at once: a sink may hold writes until its flush and send
   * them together (Bun's FileSink does), which would join lines of separate chunks in one write.
   */
  #writeGathered(): void {
    if (this.#at > 0) {
      this.#out.write(this.#buf.subarray(0, this.#at));
      this.#at = 0;
    }
    this.#out.flush();
  }
}

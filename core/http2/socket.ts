/**
 * A client's TCP socket, taken over from the HTTP/1.1 listener, as the node `Duplex` that
 * `node:http2` serves a session on (`server.emit("connection", duplex)`). Measured on this
 * machine: Bun's node:http2 answered 85–102k req/s of h2load on sockets handed over this way,
 * against 53–61k with its own `listen()` (32 connections × 10 streams, 100 B).
 *
 * Backpressure both ways: bytes read are pushed to the session, and the socket pauses when the
 * session has not taken them; what the kernel does not take is queued and the write's callback
 * waits for `drain`, so the session sees a full socket (its `writableLength`).
 */
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import type { TcpSocket } from "../runtime/types.ts";

/** Frames gathered past this many bytes are written at once rather than at the end of the turn. */
const BATCH_MAX = 64 * 1024;

function chainCallbacks(
  a: ((error?: Error | null) => void) | undefined,
  b: (error?: Error | null) => void,
): (error?: Error | null) => void {
  return a === undefined ? b : (e) => {
    a(e);
    b(e);
  };
}

/** The connection the socket came from (ClientConn in core/listener/), as far as this needs it. */
export interface TakenConn {
  /** The session is done with the socket: close it (after a FIN when `graceful`) and forget the connection. */
  closeTaken(graceful: boolean): void;
}

export class SocketDuplex extends Duplex {
  socket: TcpSocket<unknown> | undefined;
  conn: TakenConn | undefined;
  /** Bytes given to the kernel's write but not taken yet, and the callback of the write they belong to. */
  #out: Uint8Array | undefined;
  #outCb: ((error?: Error | null) => void) | undefined;
  #paused = false;
  #released = false;
  /** Bytes received, and bytes written to the socket (for the abuse bounds and tests). */
  bytesRead = 0;
  bytesWritten = 0;
  /**
   * Called with each chunk before the session sees it: -1 passes it all, otherwise only the bytes
   * before that index go on (the connection is being closed; nothing after is parsed).
   */
  inspect: ((chunk: Buffer) => number) | undefined;
  /** Called once when the socket is gone (closed by either side). */
  onGone: (() => void) | undefined;
  /** The server is shutting down gracefully (the session sends GOAWAY). */
  onShutdown: (() => void) | undefined;
  /** The socket took everything queued (bodies waiting for room may go on). */
  onWritten: (() => void) | undefined;
  /**
   * When the session is destroyed, keep reading (and dropping) what the client sends for this
   * long before closing: closing with unread input makes the kernel answer with RST, which throws
   * away the GOAWAY still unread on the client's side (nginx's lingering close). 0: close at once
   * (set for connections closed for abuse or a protocol error, session.ts).
   */
  lingerMs = 0;

  constructor() {
    super({ allowHalfOpen: false, decodeStrings: true, highWaterMark: 64 * 1024 });
  }

  /** Start serving `socket`; `first` are the bytes the listener read already (the preface). */
  attach(socket: TcpSocket<unknown>, conn: TakenConn, first: Buffer | undefined): void {
    this.socket = socket;
    this.conn = conn;
    if (first !== undefined && first.length > 0) this.onData(first);
  }

  get remoteAddress(): string | undefined {
    return this.socket?.remoteAddress;
  }

  /** Bytes the session wrote that the kernel has not taken yet. */
  get queued(): number {
    return (this.#out?.length ?? 0) + this.#batchBytes + this.writableLength;
  }

  override _read(): void {
    if (this.#paused) {
      this.#paused = false;
      this.socket?.resume();
    }
  }

  /**
   * The session writes each frame on its own (a response is HEADERS, then DATA, often from
   * separate callbacks): frames are gathered and written once per turn of the event loop, one
   * system call for all the streams answered in it. Accepted at once up to {@link BATCH_MAX}; the
   * write's callback waits only when the socket is full (backpressure).
   */
  #batch: Buffer[] | undefined;
  #batchBytes = 0;
  readonly #flushBatch = () => this.#flush();

  override _write(chunk: Buffer, _encoding: string, cb: (error?: Error | null) => void): void {
    if (this.socket === undefined || this.#released) return cb();
    if (this.#out !== undefined) {
      // The socket is full: queued behind what waits for drain; the callback waits with it.
      this.#out = Buffer.concat([this.#out, chunk]);
      this.#outCb = chainCallbacks(this.#outCb, cb);
      return;
    }
    if (this.#batch === undefined) {
      this.#batch = [chunk];
      this.#batchBytes = chunk.length;
      setImmediate(this.#flushBatch);
    } else {
      this.#batch.push(chunk);
      this.#batchBytes += chunk.length;
    }
    if (this.#batchBytes < BATCH_MAX) return cb();
    this.#flush();
    if (this.#out === undefined) cb();
    else this.#outCb = chainCallbacks(this.#outCb, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (error?: Error | null) => void): void {
    this._write(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)), "buffer", cb);
  }

  #flush(): void {
    const batch = this.#batch;
    if (batch === undefined) return;
    this.#batch = undefined;
    this.#batchBytes = 0;
    const socket = this.socket;
    if (socket === undefined || this.#released) return;
    const data = batch.length === 1 ? batch[0]! : Buffer.concat(batch);
    if (this.#out !== undefined) {
      this.#out = Buffer.concat([this.#out, data]);
      return;
    }
    const n = socket.write(data);
    this.bytesWritten += n > 0 ? n : 0;
    if (n < data.length) this.#out = n > 0 ? data.subarray(n) : data;
  }

  override _final(cb: (error?: Error | null) => void): void {
    // One turn later: a session that ends the socket on an error emits the error after this, and
    // its handler writes the GOAWAY the session does not (session.ts H2Connection.failed).
    setImmediate(() => {
      this.#release(true);
      cb();
    });
  }

  override _destroy(error: Error | null, cb: (error?: Error | null) => void): void {
    this.#release(false);
    cb(error);
  }

  #release(graceful: boolean): void {
    if (this.#released) return;
    this.#flush();
    this.#released = true;
    // What is queued still goes out while lingering (a GOAWAY among it); not when closing at once.
    if (this.lingerMs === 0) this.#out = undefined;
    const cb = this.#outCb;
    this.#outCb = undefined;
    cb?.();
    const conn = this.conn;
    if (this.lingerMs > 0 && conn !== undefined) {
      const t = setTimeout(() => conn.closeTaken(graceful && this.#out === undefined), this.lingerMs);
      (t as { unref?: () => void }).unref?.();
    } else conn?.closeTaken(graceful);
    const gone = this.onGone;
    this.onGone = undefined;
    gone?.();
  }

  // ---- the socket's events (as core/listener/upgrade.ts SocketOwner) ----

  onData(chunk: Buffer): void {
    if (this.#released) return;
    this.bytesRead += chunk.length;
    if (this.inspect !== undefined) {
      const stop = this.inspect(chunk);
      if (stop >= 0) {
        if (stop > 0) this.push(chunk.subarray(0, stop));
        return;
      }
    }
    if (!this.push(chunk) && !this.#paused) {
      this.#paused = true;
      this.socket?.pause();
    }
  }

  onDrain(): void {
    const out = this.#out;
    const socket = this.socket;
    if (out === undefined || socket === undefined) return;
    if (this.#released) {
      const n = socket.write(out);
      this.#out = n < out.length ? out.subarray(n > 0 ? n : 0) : undefined;
      return;
    }
    const n = socket.write(out);
    this.bytesWritten += n > 0 ? n : 0;
    if (n < out.length) {
      this.#out = n > 0 ? out.subarray(n) : out;
      return;
    }
    this.#out = undefined;
    const cb = this.#outCb;
    this.#outCb = undefined;
    cb?.();
    this.onWritten?.();
  }

  /**
   * Write `bytes` on the socket after what is queued, even once the session is gone (a GOAWAY
   * the session did not send). Frames are whole in each of the session's writes, so this lands
   * between two frames.
   */
  writeRaw(bytes: Uint8Array): void {
    const socket = this.socket;
    if (socket === undefined) return;
    this.#flush();
    if (this.#out !== undefined) {
      this.#out = Buffer.concat([this.#out, bytes]);
      return;
    }
    const n = socket.write(bytes);
    if (n < bytes.length) this.#out = Buffer.from(bytes.subarray(n > 0 ? n : 0));
  }

  onEnd(): void {
    // The client's FIN: no more frames. The session closes; what it still writes may not arrive.
    this.lingerMs = 0;
    this.push(null);
    this.destroy();
  }

  onClose(_error?: string): void {
    if (this.#released && this.lingerMs > 0) {
      // Lingering, and the client closed (or the proxy is closing everything): done now.
      this.lingerMs = 0;
      this.conn?.closeTaken(false);
      return;
    }
    this.destroy();
  }
}

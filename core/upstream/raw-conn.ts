/**
 * A connection of the raw upstream client and the exchange (one request/response) it carries.
 * Per-exchange state lives on its own object so that a late callback of a finished exchange
 * (a stream cancelled after its end) cannot touch the next one on the same connection.
 *
 * The bottom of the raw client: it sees the pool only through {@link ConnPool}, which the pool
 * (raw-pool.ts) implements, so the dependency goes one way (conn ← response ← pool ← client).
 */
import { Buffer } from "node:buffer";
import { UpstreamError, type UpstreamRequest, type UpstreamResponse, type UpstreamTarget } from "./types.ts";
import type { ResponseHead } from "../http1/response.ts";
import type { ChunkedDecoder } from "../http1/chunked.ts";
import type { TcpSocket } from "../runtime/types.ts";

/** The pool as its connections, exchanges and socket handlers see it (RawPool in raw-pool.ts). */
export interface ConnPool {
  readonly target: UpstreamTarget;
  /** Exchanges waiting for their response head. */
  readonly waiting: WaitList;
  /** Write the request of `ex` on a connection that is ready. */
  start(conn: Conn, ex: Exchange): void;
  /** Open a new connection for `ex`. */
  connect(ex: Exchange): void;
  /** A response ended: keep the connection for the next request, or close it. */
  release(conn: Conn, reusable: boolean): void;
  /** Close a connection that misbehaved or was closed while idle. */
  drop(conn: Conn): void;
}

export enum Phase {
  Head,
  /** Head read; a small body is being collected before the response is handed over. */
  Small,
  /** Handed over as a stream; body arriving. */
  Body,
  Done,
}

export enum Framing {
  Length,
  Chunked,
  UntilClose,
}

type Sock = TcpSocket<Conn>;

export class Conn {
  socket: Sock | undefined;
  ex: Exchange | undefined;
  /** Served a response before: a failure before any byte may be a stale keep-alive. */
  reused = false;
  closed = false;
  idleSince = 0;
  connectTimer: ReturnType<typeof setTimeout> | undefined;
  /** Bytes the kernel did not take yet; written on drain. */
  out: Uint8Array[] | undefined;
  onDrain: (() => void) | undefined;
  paused = false;
  /** Set after a 101: the connection is a tunnel's end and its socket events go there (ConnTunnel, raw-tunnel.ts). */
  tunnel: { onData(chunk: Uint8Array): void; onClose(why: string): void } | undefined;
  constructor(readonly pool: ConnPool) {}

  /**
   * Write now, or queue what the kernel did not take. A string must be ASCII (1 byte a char).
   * A reused buffer goes through {@link writeScratch} instead.
   */
  write(data: Uint8Array | string): boolean {
    if (this.out !== undefined) {
      this.out.push(typeof data === "string" ? Buffer.from(data, "latin1") : data);
      return false;
    }
    const n = this.socket!.write(data);
    if (n === data.length) return true;
    const rest = typeof data === "string" ? Buffer.from(data, "latin1") : data;
    const tail = n > 0 ? rest.subarray(n) : rest;
    this.out = [tail];
    return false;
  }

  /**
   * Write `buf[0, end)` of a reused buffer, with no view of it made unless the kernel leaves a
   * part (that part is copied): a `subarray` per request cost ~1% of the proxy's JS time.
   */
  writeScratch(buf: Uint8Array, end: number): boolean {
    if (this.out !== undefined) {
      this.out.push(Buffer.from(buf.subarray(0, end)));
      return false;
    }
    const n = this.socket!.write(buf, 0, end);
    if (n === end) return true;
    this.out = [Buffer.from(buf.subarray(n > 0 ? n : 0, end))];
    return false;
  }

  flush(): void {
    const out = this.out;
    if (out === undefined || this.socket === undefined) return;
    while (out.length > 0) {
      const d = out[0]!;
      const n = this.socket.write(d);
      if (n < d.length) {
        out[0] = n > 0 ? d.subarray(n) : d;
        return;
      }
      out.shift();
    }
    this.out = undefined;
    this.wake();
  }

  /** Wake a body pump waiting for drain (also on close, so it sees the end and stops). */
  wake(): void {
    const f = this.onDrain;
    this.onDrain = undefined;
    f?.();
  }

  destroy(): void {
    this.closed = true;
    this.ex = undefined;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.socket?.terminate();
    this.wake();
  }
}

/** One request/response on a connection. Also the abort listener (`handleEvent`). */
export class Exchange {
  conn: Conn | undefined;
  phase = Phase.Head;
  settled = false;
  /** onBodyEnd has been called. */
  ended = false;
  gotBytes = false;
  bodySent = false;
  mayRetryStale = true;
  /** When the response head is due (performance.now() ms); the pool's interval checks it. */
  deadline = 0;
  /** In the pool's {@link ConnPool.waiting} list, and its neighbours there. */
  waiting = false;
  prevWaiting: Exchange | undefined = undefined;
  nextWaiting: Exchange | undefined = undefined;
  pending: Buffer | undefined;
  head: ResponseHead | undefined;
  framing = Framing.Length;
  remaining = 0;
  decoder: ChunkedDecoder | undefined;
  small: Buffer | undefined;
  smallAt = 0;
  controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  bytes = 0;

  constructor(
    readonly pool: ConnPool,
    readonly req: UpstreamRequest,
    readonly resolve: (r: UpstreamResponse) => void,
    readonly reject: (e: UpstreamError) => void,
  ) {}

  handleEvent(): void {
    if (!this.settled) this.fail(new UpstreamError("aborted", "client closed the request", true));
    else if (this.phase === Phase.Body) this.bodyFailed("client closed the request", "aborted");
  }

  /** Reject before a response was handed over; the connection is not reusable. */
  fail(err: UpstreamError): void {
    if (this.settled) return;
    this.settled = true;
    this.phase = Phase.Done;
    this.cleanup();
    this.req.signal.removeEventListener("abort", this);
    this.conn?.destroy();
    this.reject(err);
  }

  cleanup(): void {
    this.pool.waiting.delete(this);
  }

  /** For the chunked decoder: a run of body data. */
  push(data: Uint8Array): void {
    this.bytes += data.length;
    const c = this.controller!;
    c.enqueue(data);
    if ((c.desiredSize ?? 1) <= 0 && !this.conn!.paused) {
      this.conn!.paused = true;
      this.conn!.socket?.pause();
    }
  }

  endBody(error?: string): void {
    if (this.ended) return;
    this.ended = true;
    this.req.signal.removeEventListener("abort", this);
    this.req.onBodyEnd(this.bytes, error);
  }

  /** The response was read to its end: hand the connection back (or close it). */
  complete(leftover: boolean): void {
    this.phase = Phase.Done;
    const conn = this.conn!;
    this.conn = undefined;
    // Bytes after a complete response were never asked for: never reuse such a connection.
    // Nor one that asked for an upgrade the backend declined (its state is the backend's guess).
    this.pool.release(conn, !leftover && !this.head!.close && this.bodySent && conn.out === undefined && this.req.upgrade === undefined);
  }

  bodyFailed(message: string, kind: "reset" | "aborted" = "reset"): void {
    if (this.phase !== Phase.Body) return;
    this.phase = Phase.Done;
    this.conn?.destroy();
    this.conn = undefined;
    try {
      this.controller?.error(new UpstreamError(kind, message, true));
    } catch {
      // already closed or cancelled
    }
    this.endBody(message);
  }
}

/** Exchanges linked through their own fields: adding and removing allocate nothing and leave no reference behind. */
export class WaitList {
  head: Exchange | undefined;

  add(ex: Exchange): void {
    if (ex.waiting) return;
    ex.waiting = true;
    ex.nextWaiting = this.head;
    if (this.head !== undefined) this.head.prevWaiting = ex;
    this.head = ex;
  }

  delete(ex: Exchange): void {
    if (!ex.waiting) return;
    ex.waiting = false;
    const prev = ex.prevWaiting;
    const next = ex.nextWaiting;
    if (prev !== undefined) prev.nextWaiting = next;
    else this.head = next;
    if (next !== undefined) next.prevWaiting = prev;
    ex.prevWaiting = undefined;
    ex.nextWaiting = undefined;
  }
}

// One client connection's state machine (heads, pipelining, backpressure, close): what happens between and around its requests (exchange.ts).
import { Buffer } from "node:buffer";
import { MAX_REQUEST_HEAD, parseRequestHead, RequestError, type RequestHead } from "../http1/request.ts";
import { CLOSED_BY_PROXY, type RawExchange, type TcpSocket, type TlsInfo } from "../runtime/types.ts";
import { Exchange, httpDate, REASONS } from "./exchange.ts";
import { Body, type ExchangeConn } from "./request.ts";
import { prefaceState, type SocketOwner, type UpgradableConn } from "./upgrade.ts";

/** A read with more than this behind the head is not held by the head (RequestHead.detach). */
const DETACH_ABOVE = 16 * 1024;
/** Unparsed bytes kept for a pipelined request before reading pauses. */
export const MAX_PENDING = MAX_REQUEST_HEAD;

type Sock = TcpSocket<ClientConn>;

export interface Limits {
  maxBody: number;
  idleSeconds: number;
  headerTimeoutMs: number;
}

/** What a connection needs of its server (RawServer, server.ts): an interface, so that server.ts imports the connection and not the other way round. */
export interface ConnServer {
  readonly conns: Set<ClientConn>;
  readonly limits: Limits;
  readonly closing: boolean;
  readonly scheme: "http" | "https";
  readonly handler: (ex: RawExchange) => void;
  readonly onError: (e: unknown) => void;
  /** Serve HTTP/2 on a connection whose first bytes are its preface (h2c with prior knowledge); undefined: HTTP/1.1 only. */
  readonly h2c?: ((conn: ClientConn, first: Buffer) => void) | undefined;
  checkClosed(): void;
}

/** One client connection. */
export class ClientConn implements ExchangeConn, UpgradableConn {
  socket: Sock | undefined;
  clientIp = "";
  /** Received bytes not yet parsed (a partial head, or pipelined requests waiting their turn). */
  pending: Buffer | undefined;
  /** The request being served. */
  current: Exchange | undefined;
  /** Close once the current response is written (client asked, shutdown, or unread body). */
  closeAfter = false;
  closed = false;
  paused = false;
  /** When the first byte of a head still incomplete arrived (0 when none is pending). */
  headSince = 0;
  /** TLS: when the connection opened, until its handshake is done (then 0; -1 once timed out). */
  handshakeSince = 0;
  out: Uint8Array[] | undefined;
  onDrain: (() => void) | undefined;
  /** Set once the connection left HTTP/1.1 (a tunnel after 101, HTTP/2): the socket's events go there (server.ts). */
  owner: SocketOwner | undefined;
  /** The first bytes are still to be checked for the HTTP/2 preface (an h2c listener). */
  sniff = false;
  constructor(readonly server: ConnServer) {}

  /** Hand the socket over to `owner` (upgrade.ts): no more requests are read; the idle timer is off. */
  takeover(owner: SocketOwner): Sock | undefined {
    if (this.closed || this.socket === undefined) return undefined;
    this.owner = owner;
    this.current = undefined;
    this.headSince = 0;
    this.out = undefined;
    this.socket.timeout(0);
    this.resume();
    return this.socket;
  }

  /** The owner is done with the socket. */
  closeTaken(graceful: boolean): void {
    if (!this.closed) {
      this.closed = true;
      if (graceful) this.socket?.end();
      else this.socket?.terminate();
    }
    this.server.conns.delete(this);
    this.server.checkClosed();
  }

  /** The TLS version and cipher (TLS ports), read from the socket when asked (spans). */
  tlsInfo(): TlsInfo | undefined {
    const s = this.socket;
    if (this.server.scheme !== "https" || s?.getTLSVersion === undefined) return undefined;
    const c = s.getCipher?.();
    return { protocol: s.getTLSVersion() ?? "", cipher: c?.standardName ?? c?.name ?? "" };
  }

  /**
   * Write bytes; a string is written as latin1 (a head: one byte per character). The shared
   * scratch buffer goes through {@link writeScratch} instead.
   */
  write(data: Uint8Array | string): boolean {
    if (this.closed) return false;
    // Bun writes a string as UTF-8: a header value with bytes >= 0x80 (obs-text, kept as latin1
    // characters) would go out as two bytes each, and `n` would not count characters.
    if (typeof data === "string" && Buffer.byteLength(data) !== data.length) data = Buffer.from(data, "latin1");
    if (this.out !== undefined) {
      this.out.push(typeof data === "string" ? Buffer.from(data, "latin1") : data);
      return false;
    }
    const n = this.socket!.write(data);
    if (n === data.length) return true;
    const rest = typeof data === "string" ? Buffer.from(data, "latin1") : data;
    const tail = n > 0 ? rest.subarray(n) : rest;
    this.out = [tail];
    // The client is not reading: it gets client_idle_timeout to take some of it (see flush).
    this.socket!.timeout(this.server.limits.idleSeconds);
    return false;
  }

  /**
   * `buf[from, end)` of a buffer not kept (the reused one), as Conn.writeScratch
   * (core/upstream/raw-conn.ts): no view made unless some is left over (that part is copied).
   */
  writeScratch(buf: Uint8Array, end: number, from = 0): boolean {
    if (this.closed) return false;
    if (this.out !== undefined) {
      this.out.push(Buffer.from(buf.subarray(from, end)));
      return false;
    }
    const n = this.socket!.write(buf, from, end - from);
    if (n === end - from) return true;
    this.out = [Buffer.from(buf.subarray(n > 0 ? from + n : from, end))];
    this.socket!.timeout(this.server.limits.idleSeconds);
    return false;
  }

  flush(): void {
    const out = this.out;
    const socket = this.socket;
    if (out === undefined || socket === undefined) return;
    let progress = false;
    while (out.length > 0) {
      const d = out[0]!;
      const n = socket.write(d);
      if (n < d.length) {
        out[0] = n > 0 ? d.subarray(n) : d;
        // A slow reader that reads keeps its connection; one that stopped is cut by the timer.
        if (progress || n > 0) socket.timeout(this.server.limits.idleSeconds);
        return;
      }
      progress = true;
      out.shift();
    }
    this.out = undefined;
    // Drained: a request still in flight is bounded by the pool's timeouts again, an idle
    // connection keeps the idle timer next() set.
    if (this.current !== undefined) socket.timeout(0);
    const f = this.onDrain;
    this.onDrain = undefined;
    if (f !== undefined) f();
    else if (this.current === undefined && this.pending !== undefined) this.drive(); // pipelined requests waited for this
  }

  drained(): Promise<void> {
    return this.out === undefined ? Promise.resolve() : new Promise<void>((r) => (this.onDrain = r));
  }

  /** Close after what was written has left (half-close: the client reads the whole answer). */
  end(): void {
    if (this.closed) return;
    if (this.out !== undefined) return void (this.onDrain = () => this.end());
    this.closed = true;
    this.socket?.end();
    this.server.conns.delete(this);
    this.server.checkClosed();
  }

  destroy(): void {
    const owner = this.owner;
    if (owner !== undefined) {
      // Closed by the proxy (shutdown_timeout): the owner reports it and closes the socket (closeTaken).
      return owner.onClose(CLOSED_BY_PROXY);
    }
    if (!this.closed) {
      this.closed = true;
      this.socket?.terminate();
    }
    this.server.conns.delete(this);
    const f = this.onDrain;
    this.onDrain = undefined;
    f?.();
    this.current?.abort();
    this.server.checkClosed();
  }

  pause(): void {
    if (!this.paused) {
      this.paused = true;
      this.socket?.pause();
    }
  }

  resume(): void {
    if (this.paused) {
      this.paused = false;
      this.socket?.resume();
    }
  }

  /**
   * Parse and dispatch what is buffered, while no request is being served and the answers before
   * have left: a client that pipelines requests without reading the answers gets no more of them
   * (each one held in memory) until it reads; flush() drives again once they have gone.
   */
  drive(): void {
    while (this.current === undefined && this.out === undefined && !this.closed && this.pending !== undefined) {
      const buf = this.pending;
      if (this.sniff) {
        const preface = prefaceState(buf);
        if (preface === 1) {
          if (this.headSince === 0) this.headSince = performance.now();
          return;
        }
        this.sniff = false;
        if (preface === 2) {
          this.pending = undefined;
          this.headSince = 0;
          return this.server.h2c!(this, buf);
        }
      }
      let head: RequestHead | undefined;
      try {
        head = parseRequestHead(buf, 0);
      } catch (e) {
        this.pending = undefined;
        const err = e instanceof RequestError ? e : new RequestError(400, String(e));
        return this.reject(err.status, err.message);
      }
      if (head === undefined) {
        if (this.headSince === 0) this.headSince = performance.now();
        else if (this.server.limits.headerTimeoutMs > 0 && performance.now() - this.headSince > this.server.limits.headerTimeoutMs) {
          return this.reject(408, "request head timeout");
        }
        return;
      }
      this.headSince = 0;
      // A body behind the head is given to the exchange with the read (no view of it made: see
      // IncomingRequest.feedRead); pipelined requests behind a bodyless one wait as a view.
      const at = head.end;
      const body = at < buf.length && (head.contentLength > 0 || head.chunked);
      this.pending = at < buf.length && !body ? buf.subarray(at) : undefined;
      // A body or pipelined requests behind the head: the head keeps only its own bytes.
      if (buf.length - at > DETACH_ABOVE) head.detach();
      this.dispatch(head, body ? buf : undefined, at);
    }
    // Too much waiting behind the current request (or an answer not yet read): stop reading until it is answered.
    if (this.pending !== undefined && this.pending.length > MAX_PENDING && (this.current !== undefined || this.out !== undefined))
      this.pause();
  }

  /** An unusable request: answer its status and close (what follows cannot be framed). */
  reject(status: number, message: string): void {
    this.pending = undefined;
    this.closeAfter = true;
    const body = `${message}\n`;
    this.write(
      `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
        `content-length: ${Buffer.byteLength(body, "latin1")}\r\nconnection: close\r\ndate: ${httpDate()}\r\n\r\n${body}`,
    );
    this.end();
  }

  /** Serve `head`; `read`: the read it came in, with its body's first bytes at `at`. */
  dispatch(head: RequestHead, read?: Buffer, at = 0): void {
    const server = this.server;
    if (server.limits.maxBody > 0 && head.contentLength > server.limits.maxBody) {
      return this.reject(413, "request body too large");
    }
    const ex = new Exchange(this, head);
    this.current = ex;
    if (server.closing || !head.keepAlive) this.closeAfter = true;
    // A request in flight is bounded by the pool's timeouts, not the idle timer: the timer is left
    // running (disarming it cost a native call a request) and the `timeout` handler ignores it
    // while a request is in flight, unless an earlier answer is still waiting to be read.
    if (read !== undefined && ex.bodyState !== Body.None) ex.feedRead(read, at);
    else if (ex.bodyState !== Body.None && this.pending !== undefined) {
      const rest = this.pending;
      this.pending = undefined;
      ex.feed(rest);
    }
    try {
      server.handler(ex);
    } catch (e) {
      ex.fail(e);
    }
  }

  /** The current exchange is over (answer written, or failed): serve what is pipelined next. */
  next(): void {
    const ex = this.current;
    this.current = undefined;
    // A body the handler did not read to its end leaves the stream unframed: close.
    if (ex !== undefined && ex.bodyState !== Body.None && ex.bodyState !== Body.Done) this.closeAfter = true;
    if (this.closeAfter || this.closed) return this.end();
    this.socket?.timeout(this.server.limits.idleSeconds);
    this.resume();
    if (this.pending !== undefined) this.drive();
    if (this.server.closing && this.current === undefined) this.end();
  }
}

/**
 * The client-facing HTTP/1.1 listener on Bun, on raw TCP (`Bun.listen`), used instead of
 * `Bun.serve` for the proxy port.
 *
 * Why our own: with `Bun.serve` every request pays for a `Request` with its `Headers`, an
 * `AbortSignal`, a `getpeername()` for the client address and a `Response` whose body completes
 * outside the handler; measured on this machine that was 10–25 µs of a 50–80 µs request
 * (bench/README.md). Here a request is parsed once from bytes (core/http1/request.ts, as strict
 * as Bun.serve: smuggling-prone framing is refused) and the proxy's answer is written as bytes;
 * a `Request`/`Response` is made only for routes with middleware (Hono).
 *
 * One request at a time per connection: pipelined requests wait, buffered, until the one before
 * has been answered (RFC 9112 §9.3.2 keeps responses in order).
 */
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import { Buffer } from "node:buffer";
import { ChunkedDecoder, LAST_CHUNK, writeChunk } from "../http1/chunked.ts";
import { MAX_REQUEST_HEAD, parseRequestHead, RequestError, type RequestHead } from "../http1/request.ts";
import type { ForwardLines, Listener, RawExchange, ServeOptions } from "./types.ts";
import { CONNECTION_CLOSE, CONTENT_LENGTH, latin1, put, putBlock, putInt, TE_CHUNKED, type HeaderBlock } from "../http1/bytes.ts";

const CONTINUE = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n");
/** Request body bytes received ahead of the reader before reading pauses. */
const MAX_BODY_AHEAD = 64 * 1024;
/** A read with more than this behind the head is not held by the head (RequestHead.detach). */
const DETACH_ABOVE = 16 * 1024;
/** Unparsed bytes kept for a pipelined request before reading pauses. */
const MAX_PENDING = MAX_REQUEST_HEAD;

const REASONS: Record<number, string> = {
  100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
  301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified", 307: "Temporary Redirect",
  308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
  405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 413: "Content Too Large",
  414: "URI Too Long", 417: "Expectation Failed", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
  499: "Client Closed Request", 500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
  503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
};

/** The reused buffer for whole answers (see Exchange.respond); larger ones get their own. */
const SCRATCH_SIZE = 128 * 1024;
let shared: Buffer | undefined;

/** Headers the listener writes itself (framing, connection management); never copied from an answer. */
const OWN = new Set(["content-length", "transfer-encoding", "connection", "keep-alive"]);

// The Date header, formatted at most once a second.
let dateSecond = 0;
let dateValue = "";
function httpDate(): string {
  const now = Date.now();
  const s = (now / 1000) | 0;
  if (s !== dateSecond) {
    dateSecond = s;
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}

const ascii = (s: string) => Buffer.from(s, "latin1");
const HTTP11 = ascii("HTTP/1.1 ");
const DATE = ascii("date: ");
const CONNECTION_KEEP_ALIVE = ascii("connection: keep-alive\r\n");

/** At least the bytes {@link Exchange.#writeHead} writes for these headers (status line, date, framing, connection). */
function headBound(statusText: string, headers: readonly string[] | HeaderBlock): number {
  let n = 160 + statusText.length;
  if (!Array.isArray(headers)) return n + (headers as HeaderBlock).size;
  for (let i = 0; i < headers.length; i++) n += headers[i]!.length + 2;
  return n;
}

type Sock = Socket<ClientConn>;

interface Limits {
  maxBody: number;
  idleSeconds: number;
  headerTimeoutMs: number;
}

/** One client connection. */
class ClientConn {
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
  out: Uint8Array[] | undefined;
  onDrain: (() => void) | undefined;
  constructor(readonly server: RawServer) {}

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

  /** `buf[0, end)` of the reused buffer, as Conn.writeScratch (bun-conn.ts): no view made unless some is left over. */
  writeScratch(buf: Uint8Array, end: number): boolean {
    if (this.closed) return false;
    if (this.out !== undefined) {
      this.out.push(Buffer.from(buf.subarray(0, end)));
      return false;
    }
    const n = this.socket!.write(buf, 0, end);
    if (n === end) return true;
    this.out = [Buffer.from(buf.subarray(n > 0 ? n : 0, end))];
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
      this.pending = head.end < buf.length ? buf.subarray(head.end) : undefined;
      // A body or pipelined requests behind the head: the head keeps only its own bytes.
      if (buf.length - head.end > DETACH_ABOVE) head.detach();
      this.dispatch(head);
    }
    // Too much waiting behind the current request (or an answer not yet read): stop reading until it is answered.
    if (this.pending !== undefined && this.pending.length > MAX_PENDING && (this.current !== undefined || this.out !== undefined)) this.pause();
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

  dispatch(head: RequestHead): void {
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
    if (ex.bodyState !== Body.None && this.pending !== undefined) {
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

const enum Body {
  None,
  Length,
  Chunked,
  Done,
  Failed,
}

function fire(l: EventListenerObject | (() => void)): void {
  if (typeof l === "function") l();
  else l.handleEvent(new Event("abort"));
}

/** One request on a connection, and its answer. */
class Exchange implements RawExchange {
  readonly method: string;
  readonly target: string;
  readonly host: string;
  /** The parsed head: its header strings are made on first read, its lines forwarded as bytes. */
  readonly head: RequestHead;
  readonly clientIp: string;
  readonly bodyLength: number;
  /**
   * The body stream, made when first asked for (undefined until then; null once the whole body
   * was taken as bytes). Until then received bytes wait in `#chunks`: a small body that came with
   * its head is handed over whole ({@link wholeBody}), with no stream, reader or timer.
   */
  #stream: ReadableStream<Uint8Array> | null | undefined;
  #chunks: Uint8Array[] | undefined;
  #buffered = 0;
  /** Why the body failed (for a stream made afterwards). */
  #bodyError: Error | undefined;
  #cancelled = false;
  bodyState: Body;
  remaining = 0;
  decoder: ChunkedDecoder | undefined;
  controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  received = 0;
  fault = 0;
  answered = false;
  done = false;
  minor: number;
  expectContinue: boolean;
  /**
   * Abort listeners (the upstream exchange, a retry's backoff): usually one, often none. The
   * first in a field of its own, the rest in an array: no array, push and splice per request.
   */
  #listener: EventListenerObject | (() => void) | undefined;
  #listeners: (EventListenerObject | (() => void))[] | undefined;
  aborted = false;
  #request: Request | undefined;
  /** The response body being written, so a client that leaves can cancel it. */
  reader: ReadableStreamDefaultReader<Uint8Array> | undefined;

  constructor(
    readonly conn: ClientConn,
    head: RequestHead,
  ) {
    this.method = head.method;
    this.target = head.target;
    this.host = head.host;
    this.head = head;
    this.clientIp = conn.clientIp;
    this.minor = head.minor;
    this.expectContinue = head.expectContinue;
    if (head.chunked) {
      this.bodyLength = -1;
      this.bodyState = Body.Chunked;
      this.decoder = new ChunkedDecoder();
    } else if (head.contentLength > 0) {
      this.bodyLength = head.contentLength;
      this.bodyState = Body.Length;
      this.remaining = head.contentLength;
    } else {
      this.bodyLength = 0;
      this.bodyState = Body.None;
    }
  }

  get rawHeaders(): readonly string[] {
    return this.head.rawHeaders;
  }

  header(name: string): string | null {
    return this.head.header(name);
  }

  /** The client's header lines to forward as bytes (RawExchange.forward). */
  get forward(): ForwardLines | undefined {
    const head = this.head;
    const block = head.block;
    return block === undefined ? undefined : { block, hostLine: head.hostLine, forwardedFor: head.forwardedFor, contentLength: head.contentLength, traceContext: head.traceContext };
  }

  /** The request body as a stream (null when there is none, or it was taken whole). */
  get body(): ReadableStream<Uint8Array> | null {
    if (this.#stream !== undefined) return this.#stream;
    if (this.bodyLength === 0) return (this.#stream = null);
    const conn = this.conn;
    return (this.#stream = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          if (this.bodyState === Body.Failed) return c.error(this.#bodyError);
          this.controller = c;
          const chunks = this.#chunks;
          this.#chunks = undefined;
          if (chunks !== undefined) for (const chunk of chunks) c.enqueue(chunk);
          if (this.bodyState === Body.Done) c.close();
        },
        pull: () => {
          if (this.expectContinue) {
            // The body is wanted now: tell a client waiting on Expect: 100-continue to send it.
            this.expectContinue = false;
            if (!this.answered) conn.write(CONTINUE);
          }
          conn.resume();
        },
        cancel: () => {
          this.controller = undefined;
          this.#cancelled = true;
          conn.closeAfter = true;
        },
      },
      // Counted in bytes; highWaterMark 0 so that pull (and 100 Continue) waits for a reader.
      { highWaterMark: 0, size: (chunk) => chunk?.byteLength ?? 0 },
    ));
  }

  /** The whole body as bytes when it has all arrived and nothing asked for the stream yet; else undefined. */
  wholeBody(): Uint8Array | undefined {
    if (this.#stream !== undefined || this.bodyState !== Body.Done) return undefined;
    const chunks = this.#chunks ?? [];
    this.#chunks = undefined;
    this.#stream = null;
    // Reading stopped at MAX_BODY_AHEAD unread bytes: they are read now.
    this.conn.resume();
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }

  /** The exchange is its own abort signal (AbortLike): no AbortController per request. */
  get signal(): this {
    return this;
  }

  addEventListener(_type: "abort", listener: EventListenerObject | (() => void)): void {
    if (this.#listener === undefined && this.#listeners === undefined) this.#listener = listener;
    else (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: "abort", listener: EventListenerObject | (() => void)): void {
    if (this.#listener === listener) return void (this.#listener = undefined);
    const l = this.#listeners;
    if (l === undefined) return;
    const i = l.indexOf(listener);
    if (i >= 0) l.splice(i, 1);
  }

  bodyFault(): number {
    return this.fault;
  }

  /** Request body bytes from the socket. Bytes past the body's end belong to the next request. */
  feed(buf: Buffer): void {
    let off = 0;
    if (this.bodyState === Body.Length) {
      const n = Math.min(this.remaining, buf.length);
      this.remaining -= n;
      this.push(n === buf.length ? buf : buf.subarray(0, n));
      off = n;
      if (this.remaining === 0) this.endBody();
    } else if (this.bodyState === Body.Chunked) {
      try {
        off = this.decoder!.feed(buf, 0, buf.length, this);
      } catch (e) {
        return this.bodyFailed(400, `bad chunked request body: ${(e as Error).message}`);
      }
      if (this.bodyState === Body.Chunked && this.decoder!.done) this.endBody();
    } else if (this.bodyState === Body.Failed) {
      return; // discarded; the connection closes after the answer
    }
    if (off < buf.length) {
      const rest = buf.subarray(off);
      this.conn.pending = this.conn.pending === undefined ? rest : Buffer.concat([this.conn.pending, rest]);
    }
  }

  /** For the chunked decoder, and body runs: hand them to the body stream. */
  push(data: Uint8Array): void {
    if (data.length === 0) return;
    this.received += data.length;
    const limit = this.conn.server.limits.maxBody;
    if (limit > 0 && this.received > limit) return this.bodyFailed(413, "request body too large");
    // Read ahead up to MAX_BODY_AHEAD unread bytes; past that, stop reading the socket until the
    // body is consumed (backpressure to the client). A small body never pauses (two epoll changes).
    if (this.#stream === undefined) {
      (this.#chunks ??= []).push(data);
      this.#buffered += data.length;
      if (this.#buffered > MAX_BODY_AHEAD) this.conn.pause();
      return;
    }
    const c = this.controller;
    if (c === undefined) return;
    c.enqueue(data);
    if ((c.desiredSize ?? 0) < -MAX_BODY_AHEAD) this.conn.pause();
  }

  endBody(): void {
    this.bodyState = Body.Done;
    try {
      this.controller?.close();
    } catch {}
  }

  bodyFailed(status: number, message: string): void {
    if (this.bodyState === Body.Failed || this.bodyState === Body.Done) return;
    this.bodyState = Body.Failed;
    this.fault = status;
    this.conn.closeAfter = true;
    this.#chunks = undefined;
    this.#bodyError = new RequestError(status, message);
    try {
      this.controller?.error(this.#bodyError);
    } catch {}
    // The body's reader gave up on it: answer now rather than leave the client waiting.
    if (!this.answered && this.#cancelled) this.respondWith(new Response(`${message}\n`, { status }));
  }

  /** The client went away: abort the request's work and stop writing its answer. */
  abort(): void {
    if (this.done) return;
    this.done = true;
    this.aborted = true;
    const first = this.#listener;
    const listeners = this.#listeners;
    this.#listener = undefined;
    this.#listeners = undefined;
    if (first !== undefined) fire(first);
    if (listeners !== undefined) for (const l of listeners) fire(l);
    if (this.bodyState === Body.Length || this.bodyState === Body.Chunked) {
      this.bodyState = Body.Failed;
      this.#chunks = undefined;
      this.#bodyError = new Error("client closed the connection");
      try {
        this.controller?.error(this.#bodyError);
      } catch {}
    }
    this.reader?.cancel("client closed the connection").catch(() => {});
  }

  toRequest(): Request {
    if (this.#request !== undefined) return this.#request;
    const headers = new Headers();
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
    // A real AbortSignal for the web Request (middleware may hand it to fetch), linked to ours.
    const controller = new AbortController();
    if (this.aborted) controller.abort();
    else this.addEventListener("abort", () => controller.abort());
    const init: RequestInit & { duplex?: "half" } = { method: this.method, headers, signal: controller.signal };
    if (this.body !== null) {
      init.body = this.body;
      init.duplex = "half";
    }
    const host = this.host || "localhost";
    return (this.#request = new Request(`http://${host}${this.target === "*" ? "/" : this.target}`, init));
  }

  /**
   * Writes the head of an answer, with framing and connection headers of our own, into `buf` from 0
   * (room for {@link headBound}); returns its length. Written as bytes, not built as a string:
   * no rope of pieces per request, no flattening and no second copy into the buffer.
   */
  #writeHead(buf: Buffer, status: number, statusText: string, headers: readonly string[] | HeaderBlock, length: number, chunked: boolean): number {
    let p = put(buf, 0, HTTP11);
    p = putInt(buf, p, status);
    buf[p++] = 32;
    p = latin1(buf, p, statusText || REASONS[status] || "Unknown");
    buf[p++] = 13;
    buf[p++] = 10;
    let date = false;
    if (!Array.isArray(headers)) {
      const block = headers as HeaderBlock;
      p = putBlock(buf, p, block);
      date = block.hasDate;
    } else {
      for (let i = 0; i < headers.length; i += 2) {
        const name = headers[i]!;
        if (name === "date") date = true;
        p = latin1(buf, p, name);
        buf[p++] = 58;
        buf[p++] = 32;
        p = latin1(buf, p, headers[i + 1]!);
        buf[p++] = 13;
        buf[p++] = 10;
      }
    }
    if (!date) {
      p = put(buf, p, DATE);
      p = latin1(buf, p, httpDate());
      buf[p++] = 13;
      buf[p++] = 10;
    }
    if (chunked) p = put(buf, p, TE_CHUNKED);
    else if ((length >= 0 && status !== 204 && status !== 304 && status >= 200) || (status === 304 && length >= 0)) {
      p = put(buf, p, CONTENT_LENGTH);
      p = putInt(buf, p, length);
      buf[p++] = 13;
      buf[p++] = 10;
    }
    const conn = this.conn;
    // A request body not all received yet when the answer starts (a middleware that answered
    // without reading it, a backend that answered early) may be left unread: next() then closes,
    // so say so now rather than leave the client to find out by a close it did not expect.
    if (conn.closeAfter || conn.server.closing || this.bodyState === Body.Length || this.bodyState === Body.Chunked) {
      conn.closeAfter = true;
      p = put(buf, p, CONNECTION_CLOSE);
    } else if (this.minor === 0) p = put(buf, p, CONNECTION_KEEP_ALIVE);
    buf[p++] = 13;
    buf[p++] = 10;
    return p;
  }

  /** Writes the head (and `body`) in one send(), through the reused buffer when they fit. */
  #send(status: number, statusText: string, headers: readonly string[] | HeaderBlock, length: number, chunked: boolean, body: Uint8Array | undefined): void {
    const total = headBound(statusText, headers) + (body === undefined ? 0 : body.length);
    const buf = total <= SCRATCH_SIZE ? (shared ??= Buffer.allocUnsafe(SCRATCH_SIZE)) : Buffer.allocUnsafe(total);
    let end = this.#writeHead(buf, status, statusText, headers, length, chunked);
    if (body !== undefined && body.length > 0) {
      buf.set(body, end);
      end += body.length;
    }
    if (buf === shared) this.conn.writeScratch(buf, end);
    else this.conn.write(buf.subarray(0, end));
  }

  respond(status: number, statusText: string, headers: readonly string[] | HeaderBlock, body: Uint8Array | ReadableStream<Uint8Array> | null, length: number): void {
    if (this.answered) return;
    this.answered = true;
    const conn = this.conn;
    if (this.done || conn.closed) {
      if (body instanceof ReadableStream) body.cancel().catch(() => {});
      return;
    }
    const noBody = this.method === "HEAD" || status === 204 || status === 304 || status < 200;
    if (noBody || body === null || body instanceof Uint8Array) {
      if (body instanceof ReadableStream) body.cancel().catch(() => {});
      const bytes = noBody || body === null ? undefined : (body as Uint8Array);
      // HEAD and 304 declare the length the body would have (only if the backend did); 204 none.
      const len = this.method === "HEAD" || status === 304 ? length : bytes === undefined ? 0 : bytes.length;
      // Head and body in one send(), through one reused buffer rather than a new one per answer:
      // 16 KiB GET 81 -> 72 µs CPU a request, 100 B 54 -> 50 (one process, median of 8
      // interleaved rounds; the allocation and the garbage collection it drives).
      this.#send(status, statusText, headers, len, false, bytes);
      return this.finish();
    }
    // A stream: with its length when known; else chunked, or until close for an HTTP/1.0 client.
    const chunked = length < 0 && this.minor === 1;
    if (length < 0 && !chunked) conn.closeAfter = true;
    this.#send(status, statusText, headers, length, chunked, undefined);
    void this.#pump(body, length, chunked);
  }

  async #pump(body: ReadableStream<Uint8Array>, length: number, chunked: boolean): Promise<void> {
    const conn = this.conn;
    const reader = body.getReader();
    this.reader = reader;
    const write = (d: Uint8Array) => conn.write(d);
    let sent = 0;
    try {
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        if (this.done || conn.closed) throw new Error("client closed the connection");
        const v = r.value;
        if (v.length === 0) continue;
        sent += v.length;
        let ok: boolean;
        if (chunked) {
          ok = writeChunk(write, v);
        } else if (length >= 0 && sent > length) {
          throw new Error("response body longer than its Content-Length");
        } else ok = conn.write(v);
        if (!ok) {
          await conn.drained();
          if (conn.closed) throw new Error("client closed the connection");
        }
      }
      if (chunked) conn.write(LAST_CHUNK);
      else if (length >= 0 && sent !== length) throw new Error("response body shorter than its Content-Length");
      this.reader = undefined;
      this.finish();
    } catch (e) {
      this.reader = undefined;
      reader.cancel(e).catch(() => {});
      // The head is out: the only honest signal left is to cut the connection.
      conn.closeAfter = true;
      conn.destroy();
      this.finish();
    }
  }

  respondWith(response: Response): void {
    if (this.answered) return;
    const headers: string[] = [];
    let length = -1;
    response.headers.forEach((value, name) => {
      if (name === "content-length") length = /^\d{1,15}$/.test(value) ? Number(value) : -1;
      else if (!OWN.has(name)) headers.push(name, value);
    });
    const body = response.body;
    // respond() uses `length` only where no body goes out with it (HEAD, 304): the length the
    // body would have. A 304 through a middleware route keeps the backend's, as a direct one does.
    if (body === null) return this.respond(response.status, response.statusText, headers, null, length);
    if (this.method === "HEAD") {
      body.cancel().catch(() => {});
      return this.respond(response.status, response.statusText, headers, null, length);
    }
    // Read ahead what is already there: a body that ends within two pieces and before the next
    // turn of the event loop goes out with its real length (a middleware that replaced a response
    // may have kept the old Content-Length). Anything else is streamed as it comes, with its
    // declared length (checked while writing), else chunked: a stream whose next piece is not
    // there yet (server-sent events, a slow backend) must not hold back its head and first piece.
    const reader = body.getReader();
    const status = response.status;
    const text = response.statusText;
    const parts: Uint8Array[] = [];
    let decided = false;
    /** The read in progress; once streaming, the stream's pull takes it over. */
    let reading: ReturnType<typeof reader.read> | undefined;
    const stream = () => {
      if (decided) return;
      decided = true;
      const s = new ReadableStream<Uint8Array>(
        {
          start(c) {
            for (const p of parts) c.enqueue(p);
          },
          async pull(c) {
            const r = await (reading ?? reader.read());
            reading = undefined;
            if (r.done) c.close();
            else c.enqueue(r.value);
          },
          cancel: (reason) => reader.cancel(reason),
        },
        { highWaterMark: 0 },
      );
      this.respond(status, text, headers, s, length);
    };
    const readAhead = () => {
      const r = (reading = reader.read());
      r.then(
        (got) => {
          if (decided) return; // the stream's pull has it
          reading = undefined;
          if (got.done) {
            decided = true;
            const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
            return this.respond(status, text, headers, bytes, bytes.length);
          }
          parts.push(got.value);
          if (parts.length < 2) readAhead();
          else stream();
        },
        (e) => {
          if (decided) return;
          decided = true;
          this.fail(e);
        },
      );
    };
    readAhead();
    setImmediate(stream);
  }

  /** The handler failed: a 500 if nothing was written yet, else cut the connection. */
  fail(e: unknown): void {
    if (!this.answered) {
      this.conn.server.onError(e);
      this.respond(500, "", ["content-type", "text/plain; charset=utf-8"], Buffer.from("internal error\n"), 15);
      return;
    }
    this.conn.destroy();
  }

  finish(): void {
    if (this.done) return;
    this.done = true;
    this.conn.next();
  }
}

class RawServer {
  readonly conns = new Set<ClientConn>();
  closing = false;
  #listener: TCPSocketListener<ClientConn> | undefined;
  #closed: (() => void) | undefined;
  #sweep: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly handler: (ex: RawExchange) => void,
    readonly limits: Limits,
    readonly onError: (e: unknown) => void,
  ) {}

  listen(hostname: string, port: number, reusePort: boolean): TCPSocketListener<ClientConn> {
    const server = this;
    const handlers: SocketHandler<ClientConn> = {
      open(s) {
        const conn = new ClientConn(server);
        conn.socket = s;
        conn.clientIp = s.remoteAddress ?? "";
        s.data = conn;
        s.setNoDelay?.(true);
        s.timeout(server.limits.idleSeconds);
        server.conns.add(conn);
        if (server.closing) conn.end();
      },
      data(s, chunk) {
        const conn = s.data;
        const buf = chunk as Buffer;
        const ex = conn.current;
        if (ex !== undefined && (ex.bodyState === Body.Length || ex.bodyState === Body.Chunked || ex.bodyState === Body.Failed) && conn.pending === undefined) {
          return ex.feed(buf);
        }
        conn.pending = conn.pending === undefined ? buf : Buffer.concat([conn.pending, buf]);
        if (conn.current === undefined) conn.drive();
        else if (conn.pending.length > MAX_PENDING) conn.pause();
      },
      drain(s) {
        s.data.flush();
      },
      end(s) {
        // The client's FIN. A client that closed (gave up, timed out, cancelled) sends the same FIN
        // as one that only half-closed, and only a write would tell them apart, so a request still
        // being answered is aborted now, as Bun.serve and nginx do: its backend is released at
        // once instead of when it answers (a long poll, an idle event stream: maybe never).
        // Without a request in flight, what was already written still goes out, then the close.
        const conn = s.data;
        if (conn.current !== undefined) return conn.destroy();
        conn.end();
      },
      close(s) {
        s.data?.destroy();
      },
      error(s) {
        s.data?.destroy();
      },
      timeout(s) {
        const conn = s.data;
        // Nothing written could leave for client_idle_timeout: the client stopped reading.
        if (conn.out !== undefined) return conn.destroy();
        if (conn.current !== undefined) return;
        if (conn.pending !== undefined) return conn.reject(408, "request head timeout");
        conn.destroy();
      },
    };
    // `reusePort` (SO_REUSEPORT, for workers) is accepted by Bun.listen as by Bun.serve, though
    // not in its types; without it a second process on the port fails, as it should. Half-open,
    // so a client that shuts down its sending side after its request still gets the answer.
    const options: Bun.TCPSocketListenOptions<ClientConn> & { reusePort?: boolean } = {
      hostname,
      port,
      reusePort,
      allowHalfOpen: true,
      socket: handlers,
      data: undefined as unknown as ClientConn,
    };
    const listener = Bun.listen<ClientConn>(options);
    this.#listener = listener;
    // A head trickling in byte by byte keeps the idle timer happy: bound it by a deadline.
    if (this.limits.headerTimeoutMs === 0) return listener; // client_idle_timeout: 0, no timeouts
    this.#sweep = setInterval(() => {
      const now = performance.now();
      for (const c of this.conns) if (c.headSince > 0 && c.current === undefined && now - c.headSince > this.limits.headerTimeoutMs) c.reject(408, "request head timeout");
    }, 1000);
    (this.#sweep as { unref?: () => void }).unref?.();
    return listener;
  }

  checkClosed(): void {
    if (this.closing && this.conns.size === 0 && this.#closed) {
      const f = this.#closed;
      this.#closed = undefined;
      f();
    }
  }

  /** Stop accepting; idle connections close now, busy ones after their answer. */
  close(): Promise<void> {
    this.closing = true;
    this.#listener?.stop(false);
    clearInterval(this.#sweep);
    const done = new Promise<void>((r) => (this.#closed = r));
    for (const c of [...this.conns]) if (c.current === undefined) c.end();
    this.checkClosed();
    return done;
  }

  forceClose(): Promise<void> {
    this.closing = true;
    this.#listener?.stop(true);
    clearInterval(this.#sweep);
    for (const c of [...this.conns]) c.destroy();
    this.checkClosed();
    return Promise.resolve();
  }
}

/** Listen with our own HTTP/1.1 server; requests go to `options.raw`. */
export function serveRaw(options: ServeOptions & { raw: (ex: RawExchange) => void }, onError: (e: unknown) => void): Listener {
  const server = new RawServer(
    options.raw,
    {
      maxBody: options.maxRequestBodySize >= Number.MAX_SAFE_INTEGER ? 0 : options.maxRequestBodySize,
      idleSeconds: options.idleTimeoutSeconds,
      // 0 (client_idle_timeout: 0) turns it off, as it turns the idle timer off.
      headerTimeoutMs: options.idleTimeoutSeconds * 1000,
    },
    onError,
  );
  const listener = server.listen(options.hostname, options.port, options.reusePort ?? false);
  return {
    hostname: listener.hostname,
    port: listener.port,
    close: () => server.close(),
    forceClose: () => server.forceClose(),
  };
}

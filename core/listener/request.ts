// The request side of an exchange (head, body stream, abort signal, web Request), split from its answer (exchange.ts) to keep each file readable.
import { Buffer } from "node:buffer";
import { ChunkedDecoder } from "../http1/chunked.ts";
import { RequestError, type RequestHead } from "../http1/request.ts";
import type { ForwardLines, TlsInfo } from "../runtime/types.ts";
import type { BodyInRead } from "../http1/bytes.ts";
import { upgradeOf, type UpgradableConn } from "./upgrade.ts";

const CONTINUE = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n");
/** Request body bytes received ahead of the reader before reading pauses. */
const MAX_BODY_AHEAD = 64 * 1024;

/**
 * What an exchange needs of its connection (ClientConn, connection.ts): an interface, so that
 * connection.ts imports the exchange and not the other way round.
 */
export interface ExchangeConn extends UpgradableConn {
  readonly clientIp: string;
  /** Received bytes not yet parsed: bytes past a body's end belong to the next request. */
  pending: Buffer | undefined;
  closeAfter: boolean;
  readonly closed: boolean;
  readonly server: {
    readonly limits: { readonly maxBody: number };
    readonly closing: boolean;
    readonly scheme: "http" | "https";
    readonly onError: (e: unknown) => void;
  };
  tlsInfo(): TlsInfo | undefined;
  write(data: Uint8Array | string): boolean;
  /** `buf[from, end)` of a buffer that is not kept (reused, or written over later). */
  writeScratch(buf: Uint8Array, end: number, from?: number): boolean;
  drained(): Promise<void>;
  destroy(): void;
  next(): void;
  pause(): void;
  resume(): void;
}

/** How far the request body has come (exported: connection.ts, server.ts and exchange.ts read it; inlined only here). */
export const enum Body {
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

/**
 * One request on a connection as it arrives; `Exchange` (exchange.ts) adds its answer. One
 * object per request all the same: the answer's state is among these fields.
 */
export abstract class IncomingRequest {
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
  /** A whole body that came in the read its head came in, left there (BodyInRead) until taken or viewed. */
  #inRead: BodyInRead | undefined;
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
    readonly conn: ExchangeConn,
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

  /** "https" on a TLS port. */
  get scheme(): "http" | "https" {
    return this.conn.server.scheme;
  }

  tlsInfo(): TlsInfo | undefined {
    return this.conn.tlsInfo();
  }

  get rawHeaders(): readonly string[] {
    return this.head.rawHeaders;
  }

  /** The protocols asked for by Upgrade (upgrade.ts); undefined for nearly every request. */
  get upgrade(): string | undefined {
    return upgradeOf(this.head);
  }

  header(name: string): string | null {
    return this.head.header(name);
  }

  /** The client's header lines to forward as bytes (RawExchange.forward). */
  get forward(): ForwardLines | undefined {
    const head = this.head;
    const block = head.block;
    return block === undefined ? undefined : {
      block,
      hostLine: head.hostLine,
      forwardedFor: head.forwardedFor,
      contentLength: head.contentLength,
      traceContext: head.traceContext,
    };
  }

  /** The request body as a stream (null when there is none, or it was taken whole). */
  get body(): ReadableStream<Uint8Array> | null {
    if (this.#stream !== undefined) return this.#stream;
    if (this.bodyLength === 0) return (this.#stream = null);
    this.#viewRead();
    const conn = this.conn;
    return (this.#stream = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          if (this.bodyState === Body.Failed) return c.error(this.#bodyError);
          this.controller = c;
          const chunks = this.#chunks;
          this.#chunks = undefined;
          if (chunks !== undefined) { for (const chunk of chunks) c.enqueue(chunk); }
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
    this.#viewRead();
    const chunks = this.#chunks ?? [];
    this.#chunks = undefined;
    this.#stream = null;
    // Reading stopped at MAX_BODY_AHEAD unread bytes: they are read now.
    this.conn.resume();
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }

  /** {@link wholeBody} when the body is still in the read it came in, as it lies there (no view made); else undefined. */
  wholeBodyInRead(): BodyInRead | undefined {
    const r = this.#inRead;
    if (r === undefined || this.#stream !== undefined) return undefined;
    this.#inRead = undefined;
    this.#stream = null;
    return r;
  }

  #viewRead(): void {
    const r = this.#inRead;
    if (r === undefined) return;
    this.#inRead = undefined;
    (this.#chunks ??= []).push(r.buf.subarray(r.at, r.end));
  }

  /**
   * The body's first bytes, at `off` in the read its head came in: a whole body (a Content-Length
   * the read holds) is left there, with no view made; else as {@link feed}.
   */
  feedRead(buf: Buffer, off: number): void {
    const end = off + this.remaining;
    if (this.bodyState !== Body.Length || this.#stream !== undefined || this.#chunks !== undefined || end > buf.length) {
      return this.feed(buf.subarray(off));
    }
    this.received += this.remaining;
    this.remaining = 0;
    this.#inRead = { buf, at: off, end };
    this.endBody();
    if (end < buf.length) {
      const rest = buf.subarray(end);
      this.conn.pending = this.conn.pending === undefined ? rest : Buffer.concat([this.conn.pending, rest]);
    }
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
    } catch { /* the reader cancelled the stream already */ }
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
    } catch { /* the reader cancelled the stream already */ }
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
    if (listeners !== undefined) { for (const l of listeners) fire(l); }
    if (this.bodyState === Body.Length || this.bodyState === Body.Chunked) {
      this.bodyState = Body.Failed;
      this.#chunks = undefined;
      this.#bodyError = new Error("client closed the connection");
      try {
        this.controller?.error(this.#bodyError);
      } catch { /* the reader cancelled the stream already */ }
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
    return (this.#request = new Request(`${this.scheme}://${host}${this.target === "*" ? "/" : this.target}`, init));
  }

  /** Answer with a web `Response` (exchange.ts): a body that failed after its reader gave up is answered at once. */
  abstract respondWith(response: Response): void;
}

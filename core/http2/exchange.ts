/**
 * One HTTP/2 stream (stream.ts) as a `RawExchange`: the same gateway `handle()` that serves the
 * HTTP/1.1 listener serves it (routes, middleware, strategies, retries, breaker, rate limits,
 * access log, metrics, spans). Bodies are streamed both ways with backpressure: the answer waits
 * for the stream's `onDrain` (the client's window, the socket's room), the request body pauses
 * the stream, which stops the WINDOW_UPDATEs that let the client send more.
 */
import type { Buffer } from "node:buffer";
import type { HeaderBlock } from "../http1/bytes.ts";
import type { RawExchange, TlsInfo, TunnelEnd } from "../runtime/types.ts";
import { CANCEL, INTERNAL_ERROR } from "./frames.ts";
import type { H2Head } from "./headers.ts";
import type { H2Stream } from "./stream.ts";
import { H2Tunnel } from "./tunnel.ts";

/** Request body bytes read ahead of the proxy before the stream is paused. */
const BODY_AHEAD = 64 * 1024;

/** What an exchange needs of its connection and listener (front.ts). */
export interface ExchangeConn {
  readonly clientIp: string;
  readonly scheme: "http" | "https";
  tlsInfo(): TlsInfo | undefined;
  readonly maxBody: number;
  /** The stream has been answered in full (the rapid-reset ratio). */
  completed(): void;
  /** The client reset the stream before its answer was complete (a premature reset). */
  premature(): void;
  onError(e: unknown): void;
}

type Listener = EventListenerObject | (() => void);

export class H2Exchange implements RawExchange {
  readonly method: string;
  readonly target: string;
  readonly host: string;
  readonly rawHeaders: readonly string[];
  readonly clientIp: string;
  readonly bodyLength: number;
  readonly upgrade: string | undefined;
  readonly httpVersion = "2";
  readonly scheme: "http" | "https";
  aborted = false;
  #answered = false;
  #done = false;
  #fault = 0;
  #listeners: Listener[] | undefined;
  #body: ReadableStream<Uint8Array> | null | undefined;
  #request: Request | undefined;
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;

  constructor(
    readonly stream: H2Stream,
    head: H2Head,
    readonly conn: ExchangeConn,
  ) {
    this.method = head.method;
    this.target = head.target;
    this.host = head.host;
    this.rawHeaders = head.rawHeaders;
    this.clientIp = conn.clientIp;
    this.scheme = conn.scheme;
    // An extended CONNECT has no body: its DATA frames are the tunnel's bytes.
    this.bodyLength = stream.remoteDone || head.connectProtocol !== undefined ? 0 : head.contentLength;
    this.upgrade = head.connectProtocol;
    stream.onClose = (reset) => {
      if (this.#done) return;
      // Both ends finished: answered (its last DATA went out inside respond or the pump).
      if (!reset) return this.#finish();
      this.abort();
      conn.premature();
    };
  }

  tlsInfo(): TlsInfo | undefined {
    return this.conn.tlsInfo();
  }

  header(name: string): string | null {
    const raw = this.rawHeaders;
    let value: string | null = null;
    for (let i = 0; i < raw.length; i += 2) if (raw[i] === name) value = value === null ? raw[i + 1]! : `${value}, ${raw[i + 1]}`;
    return value;
  }

  get signal(): this {
    return this;
  }

  addEventListener(_type: "abort", listener: Listener): void {
    (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: "abort", listener: Listener): void {
    const l = this.#listeners;
    const i = l === undefined ? -1 : l.indexOf(listener);
    if (i >= 0) l!.splice(i, 1);
  }

  /** The client reset the stream or the connection went away before the answer was complete. */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.#done = true;
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (listeners !== undefined) {
      for (const l of listeners) typeof l === "function" ? l() : l.handleEvent(new Event("abort"));
    }
    this.#reader?.cancel("client reset the stream").catch(() => {});
  }

  bodyFault(): number {
    return this.#fault;
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (this.#body !== undefined) return this.#body;
    if (this.bodyLength === 0) return (this.#body = null);
    const stream = this.stream;
    const limit = this.conn.maxBody;
    let received = 0;
    let finished = false;
    return (this.#body = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          const fail = (status: number, message: string) => {
            if (finished) return;
            finished = true;
            this.#fault = status;
            stream.discard();
            try {
              c.error(new Error(message));
            } catch { /* cancelled already */ }
          };
          const prev = stream.onClose;
          stream.onClose = (reset) => {
            if (!finished && reset) fail(400, "client reset the stream");
            prev?.(reset);
          };
          stream.read((chunk: Buffer) => {
            if (finished) return;
            received += chunk.length;
            if (limit > 0 && received > limit) return fail(413, "request body too large");
            c.enqueue(chunk);
            if ((c.desiredSize ?? 0) <= 0) stream.pause();
          }, () => {
            if (finished) return;
            finished = true;
            try {
              c.close();
            } catch { /* cancelled already */ }
          });
        },
        pull: () => stream.resume(),
        // Discarded as it comes: flow control is not held up by a body nobody reads.
        cancel: () => {
          finished = true;
          stream.discard();
        },
      },
      { highWaterMark: BODY_AHEAD, size: (chunk) => chunk?.byteLength ?? 0 },
    ));
  }

  respond(
    status: number,
    _statusText: string,
    headers: readonly string[] | HeaderBlock,
    body: Uint8Array | ReadableStream<Uint8Array> | null,
    length: number,
  ): void {
    if (this.#answered) return;
    this.#answered = true;
    const stream = this.stream;
    if (this.#done || stream.closed) {
      if (body instanceof ReadableStream) body.cancel().catch(() => {});
      return;
    }
    const noBody = this.method === "HEAD" || status === 204 || status === 304;
    const bytes = body instanceof Uint8Array ? body : undefined;
    const len = noBody ? (this.method === "HEAD" || status === 304 ? length : -1) : bytes !== undefined ? bytes.length : length;
    const endNow = noBody || body === null || (bytes !== undefined && bytes.length === 0);
    try {
      stream.respond(status, headers, len, endNow);
    } catch (e) {
      this.conn.onError(e);
      if (body instanceof ReadableStream) body.cancel().catch(() => {});
      stream.reset(INTERNAL_ERROR);
      return this.#finish();
    }
    if (endNow) {
      if (body instanceof ReadableStream) body.cancel().catch(() => {});
      return this.#finish();
    }
    if (bytes !== undefined) {
      stream.write(bytes, true);
      return this.#finish();
    }
    void this.#pump(body as ReadableStream<Uint8Array>);
  }

  async #pump(body: ReadableStream<Uint8Array>): Promise<void> {
    const stream = this.stream;
    const reader = body.getReader();
    this.#reader = reader;
    try {
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        if (this.#done) throw new Error("client reset the stream");
        if (!stream.write(r.value, false)) {
          await new Promise<void>((resolve) => (stream.onDrain = resolve));
          stream.onDrain = undefined;
          if (this.#done || stream.closed) throw new Error("client reset the stream");
        }
      }
      this.#reader = undefined;
      stream.end();
      this.#finish();
    } catch (e) {
      this.#reader = undefined;
      reader.cancel(e).catch(() => {});
      stream.reset(CANCEL);
      this.#finish();
    }
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.conn.completed();
  }

  respondWith(response: Response): void {
    if (this.#answered) {
      // Already answered (a request body fault): nobody reads this body; cancelling it ends the request.
      response.body?.cancel().catch(() => {});
      return;
    }
    const headers: string[] = [];
    let length = -1;
    response.headers.forEach((value, name) => {
      if (name === "content-length") length = /^\d{1,15}$/.test(value) ? Number(value) : -1;
      else headers.push(name, value);
    });
    const body = response.body;
    if (body === null || this.method === "HEAD") {
      body?.cancel().catch(() => {});
      return this.respond(response.status, response.statusText, headers, null, length);
    }
    this.respond(response.status, response.statusText, headers, body, -1);
  }

  toRequest(): Request {
    if (this.#request !== undefined) return this.#request;
    const headers = new Headers();
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
    if (this.upgrade !== undefined) {
      headers.set("connection", "upgrade");
      headers.set("upgrade", this.upgrade);
    }
    const controller = new AbortController();
    if (this.aborted) controller.abort();
    else this.addEventListener("abort", () => controller.abort());
    const init: RequestInit & { duplex?: "half" } = { method: this.method, headers, signal: controller.signal };
    if (this.body !== null) {
      init.body = this.body;
      init.duplex = "half";
    }
    return (this.#request = new Request(`${this.scheme}://${this.host || "localhost"}${this.target === "*" ? "/" : this.target}`, init));
  }

  /**
   * RFC 8441: the backend's 101 becomes the 200 that opens the stream as a tunnel. What the
   * client did not ask for over HTTP/2 (Sec-WebSocket-Accept) is not passed on.
   */
  switchProtocols(_protocol: string, headers: readonly string[] | HeaderBlock): TunnelEnd {
    this.#answered = true;
    this.#done = true;
    const tunnel = new H2Tunnel(this.stream);
    try {
      this.stream.respond(200, headers, -1, false, "sec-websocket-accept");
    } catch (e) {
      this.conn.onError(e);
      tunnel.destroy();
    }
    return tunnel;
  }
}

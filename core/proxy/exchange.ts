/**
 * One request as the proxy path sees it: the record the access log, metrics and spans read
 * (Exchange), the per-route settings, and the request itself (Incoming), from a web Request or
 * from the runtime's own listener.
 */
import type { AbortLike } from "../upstream/client.ts";
import type { BodyInRead, HeaderBlock } from "../http1/bytes.ts";
import { upstreamHeaders, upstreamHeadersBlock, upstreamHeadersRaw } from "../http1/headers.ts";
import type { RawExchange, TlsInfo } from "../runtime/types.ts";
import type { ObservedRequest, Observer } from "../telemetry/observer.ts";
import type { SpanHandle } from "../telemetry/tracing.ts";

/** What the access log and the request counters need to know about one request. */
export interface Exchange {
  readonly start: number;
  readonly method: string;
  readonly path: string;
  readonly clientIp: string;
  route: string;
  pool: string;
  backend: string;
  status: number;
  bytes: number;
  /** Upstream attempts made (0 when none was). */
  attempts: number;
  /** Why the last retry happened, e.g. `connect`, `503`. */
  retryReason: string | undefined;
  /** True while the response body is still streaming; {@link Exchange.done} runs when it ends. */
  streaming: boolean;
  /** The backend's body being streamed, so it can be cancelled if a middleware does not pass it on. */
  upstreamBody: ReadableStream<Uint8Array> | undefined;
  error: string | undefined;
  /** "2" for HTTP/2, "1.0"; undefined for HTTP/1.1. */
  protocol: string | undefined;
  /** A tunnel (after 101): bytes from the client, and who closed it (client, backend, idle, proxy); `bytes` are those to the client. */
  tunnel: { bytesIn: number; closedBy: string; upgrade: string } | undefined;
  /** Path and query sent to the backend when a middleware rewrote them (`path` keeps the client's). */
  upstreamPath: string | undefined;
  /** The request's id, when a middleware (request-id) set one. */
  requestId: string | undefined;
  /** A transform answered (`respond`, `redirect`, a plugin's): its 429 is not rate limiting. */
  transformAnswered: boolean;
  /** Tracing and metrics hooks; undefined when both are off. */
  readonly observer: Observer | undefined;
  /** The request's SERVER span, when traced (set by the observer). */
  span: SpanHandle | undefined;
  /** Called exactly once when the request is over (body finished, failed or cancelled). */
  done(): void;
  /** The target as the client sent it (path and query), for the access log's request line. */
  target: string;
  /** Referer and User-Agent, read only when the access log writes them (log.access_format: combined). */
  referer: string | null;
  userAgent: string | null;
}

/** Per-route proxy settings. */
export interface RouteOptions {
  readonly retryNonIdempotent: boolean;
  /** Longest wait for the next piece of the request body (limits.client_body_timeout). */
  readonly bodyTimeoutMs: number;
  /** No middleware runs first: the first attempt may start when the request did (`Exchange.start`). */
  readonly direct: boolean;
  /** Upgrade protocols passed through as tunnels (`websocket`, and the route's `upgrade` list). */
  readonly upgrades: ReadonlySet<string>;
  /** timeouts.tunnel_idle in ms. */
  readonly tunnelIdleMs: number;
}

/**
 * The request as the proxy needs it: from a web `Request` ({@link requestIncoming}, Hono and
 * Deno) or from Bun's raw listener (gateway.ts), where nothing is built that is not used.
 */
export interface Incoming {
  readonly method: string;
  /** Path and query, origin-form. */
  readonly target: string;
  readonly host: string;
  readonly proto: "http" | "https";
  /** Declared body length: 0 for none, -1 when unknown (chunked). */
  readonly bodyLength: number;
  readonly body: ReadableStream<Uint8Array> | null;
  readonly signal: AbortLike;
  /** The request headers as `Headers` (a strategy's `RequestInfo.headers`); may be built on first use. */
  readonly headers: Headers;
  /** One header (`name` lower-case), without building {@link headers}; null when absent. */
  header?(name: string): string | null;
  /** The headers to send upstream: hop-by-hop dropped, X-Forwarded-* set (headers.ts). */
  forwardHeaders(clientIp: string): Record<string, string>;
  /**
   * The same as the client's lines kept as bytes (`block`) plus the headers the proxy writes
   * itself; undefined when only {@link forwardHeaders} can say it (see RawExchange.forward), or
   * when `tracing` will write trace context headers and the client sent some (they are replaced).
   */
  forwardBlock?(clientIp: string, tracing: boolean): { headers: Record<string, string>; block: HeaderBlock } | undefined;
  /** A client-side body failure the listener saw, as the status to answer (413, 400); 0 if none. */
  bodyFault(): number;
  /** The whole body as bytes when it has already arrived and `body` was not read (see RawExchange.wholeBody). */
  wholeBody?(): Uint8Array | undefined;
  /** The same, left in the read it came in (RawExchange.wholeBodyInRead). */
  wholeBodyInRead?(): BodyInRead | undefined;
  /** The Upgrade to ask the backend for (the route allows it: tunnel.ts); undefined for a plain request. */
  upgrade?: string | undefined;
  /** Path and query as the client sent them, when a transform changed {@link target}: what strategies read. */
  readonly clientTarget?: string;
}

/**
 * {@link Incoming} over a web `Request`. `listener` is the raw listener's exchange it was made
 * from (a route with middleware), which knows why its body failed (413, 400).
 */
export function requestIncoming(request: Request, listener?: { bodyFault(): number }): Incoming {
  const url = request.url;
  const pathStart = url.indexOf("/", url.indexOf("//") + 2);
  const length = request.body === null ? "0" : request.headers.get("content-length");
  const proto = url.startsWith("https:") ? "https" : "http";
  return {
    method: request.method,
    target: pathStart < 0 ? "/" : url.slice(pathStart),
    host: request.headers.get("host") ?? "",
    proto,
    bodyLength: length === null ? -1 : Number(length),
    body: request.body,
    signal: request.signal,
    headers: request.headers,
    forwardHeaders: (clientIp) => upstreamHeaders(request.headers, { clientIp, proto, hostOverride: undefined }),
    bodyFault: listener === undefined ? () => 0 : () => listener.bodyFault(),
  };
}

/** The Exchange the gateway fills in for each request; `finish` runs once, when it is over. */
export class RequestRecord implements Exchange {
  route = "";
  pool = "";
  backend = "";
  status = 0;
  bytes = 0;
  attempts = 0;
  retryReason: string | undefined = undefined;
  streaming = false;
  upstreamBody: ReadableStream<Uint8Array> | undefined = undefined;
  error: string | undefined = undefined;
  span: SpanHandle | undefined = undefined;
  protocol: string | undefined = undefined;
  tunnel: { bytesIn: number; closedBy: string; upgrade: string } | undefined = undefined;
  upstreamPath: string | undefined = undefined;
  requestId: string | undefined = undefined;
  transformAnswered = false;
  /** How the client reached us (the access log says "https" for TLS listeners). */
  scheme: "http" | "https" = "http";
  target = "";
  referer: string | null = null;
  userAgent: string | null = null;
  #finished = false;
  /** done() was called (the backend's side is over) while held. */
  #waiting = false;
  /** See {@link hold}. */
  #held = false;
  /** Bytes of that body sent to the client (-1: none). */
  #sent = -1;

  constructor(
    private readonly finish: (ex: RequestRecord) => void,
    readonly start: number,
    readonly method: string,
    readonly path: string,
    readonly clientIp: string,
    readonly observer: Observer | undefined,
  ) {}

  done(): void {
    if (this.#finished) return;
    if (this.#held) {
      this.#waiting = true;
      return;
    }
    this.#finished = true;
    if (this.#sent >= 0) this.bytes = this.#sent;
    this.finish(this);
  }

  /**
   * The gateway decides when the client's side is over: while held, {@link done} (the backend's
   * side) only marks the request as waiting. Held while a route's middleware run (they may still
   * change the status or the body after the backend's body has ended), and while a body other
   * than the backend's as it came (a middleware's answer, a compressed body) goes to the client.
   */
  hold(): void {
    this.#held = true;
  }

  /** The client's side is over; `bytes`: those of a body other than the backend's, as sent. */
  release(bytes?: number): void {
    if (!this.#held) return;
    this.#held = false;
    if (bytes !== undefined) this.#sent = bytes;
    if (this.#waiting) this.done();
  }
}

/**
 * {@link Incoming} over the raw listener's request. Headers are built only when something reads
 * them (a strategy plugin, tracing); the observer reads `method`, `target`, `protocolVersion` and headers only.
 */
export class RawIncoming implements Incoming, ObservedRequest {
  upgrade: string | undefined = undefined;
  #headers: Headers | undefined;
  #keyed: WeakMap<Headers, unknown> | undefined;
  #keyedValue: unknown;
  constructor(readonly raw: RawExchange) {}
  header(name: string): string | null {
    return this.raw.header(name);
  }
  keyByHeaders<T>(map: WeakMap<Headers, T>, value: T): void {
    this.#keyed = map as WeakMap<Headers, unknown>;
    this.#keyedValue = value;
    if (this.#headers !== undefined) map.set(this.#headers, value);
  }
  /** The web Request for middleware; its Headers (a copy of ours) is keyed as well, so `c.req.raw` finds the span too. */
  toRequest(): Request {
    const request = this.raw.toRequest();
    this.#keyed?.set(request.headers, this.#keyedValue);
    return request;
  }
  get method() {
    return this.raw.method;
  }
  get target() {
    return this.raw.target;
  }
  /** network.protocol.version of the SERVER span ("2" from the HTTP/2 front). */
  get protocolVersion(): string | undefined {
    const version = this.raw.httpVersion;
    if (version !== undefined) return version;
    const minor = this.raw.minor;
    return minor === undefined ? undefined : minor === 0 ? "1.0" : "1.1";
  }
  get host() {
    return this.raw.host;
  }
  /** "https" on a TLS listener: X-Forwarded-Proto, url.scheme. */
  get proto(): "http" | "https" {
    return this.raw.scheme ?? "http";
  }
  /** The connection's TLS version and cipher (spans), or undefined on a plain listener. */
  tlsInfo(): TlsInfo | undefined {
    return this.raw.tlsInfo?.();
  }
  get bodyLength() {
    return this.raw.bodyLength;
  }
  get body() {
    return this.raw.body;
  }
  get signal() {
    return this.raw.signal;
  }
  get url() {
    return `${this.proto}://${this.raw.host || "localhost"}${this.raw.target}`;
  }
  get headers(): Headers {
    if (this.#headers === undefined) {
      const h = (this.#headers = new Headers());
      const raw = this.raw.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) h.append(raw[i]!, raw[i + 1]!);
      this.#keyed?.set(h, this.#keyedValue);
    }
    return this.#headers;
  }
  forwardHeaders(clientIp: string): Record<string, string> {
    return upstreamHeadersRaw(this.raw.rawHeaders, { clientIp, proto: this.proto, hostOverride: undefined });
  }
  forwardBlock(clientIp: string, tracing: boolean): { headers: Record<string, string>; block: HeaderBlock } | undefined {
    const f = this.raw.forward;
    if (f === undefined || (tracing && f.traceContext)) return undefined;
    return {
      headers: upstreamHeadersBlock(f.hostLine, f.forwardedFor, f.contentLength, { clientIp, proto: this.proto, hostOverride: undefined }),
      block: f.block,
    };
  }
  bodyFault(): number {
    return this.raw.bodyFault();
  }
  wholeBody(): Uint8Array | undefined {
    return this.raw.wholeBody?.();
  }
  wholeBodyInRead(): BodyInRead | undefined {
    return this.raw.wholeBodyInRead?.();
  }
}

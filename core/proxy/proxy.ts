/**
 * The proxy path for one request: pick a backend, forward with clean headers, retry what is
 * safe to retry on another backend, stream the response back, and turn failures into the
 * right status: no backend → 503, refused/reset → 502, timeout → 504, client gone → 499.
 */
import type { Backend, Pool } from "../pool/pool.ts";
import type { RequestInfo } from "../plugins/api.ts";
import { downstreamRaw, upstreamHeaders } from "../http1/headers.ts";
import { sendUpstream, UpstreamError, type AbortLike, type UpstreamRequest, type UpstreamResponse } from "../upstream/client.ts";
import { backoffDelay, IDEMPOTENT, parseRetryAfter, type FailureKind } from "../resilience/retry.ts";
import type { Observer } from "../telemetry/observer.ts";
import type { SpanHandle } from "../telemetry/tracing.ts";
import type { HeaderBlock } from "../http1/bytes.ts";

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
  /** Tracing and metrics hooks; undefined when both are off. */
  readonly observer: Observer | undefined;
  /** The request's SERVER span, when traced (set by the observer). */
  span: SpanHandle | undefined;
  /** Called exactly once when the request is over (body finished, failed or cancelled). */
  done(): void;
}

/** Per-route proxy settings. */
export interface RouteOptions {
  readonly retryNonIdempotent: boolean;
  /** Longest wait for the next piece of the request body (limits.client_body_timeout). */
  readonly bodyTimeoutMs: number;
  /** No middleware runs first: the first attempt may start when the request did (`Exchange.start`). */
  readonly direct: boolean;
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

/** The client stopped sending its request body: answered 408, as nginx's client_body_timeout does. */
class BodyTimeout extends Error {
  constructor(ms: number) {
    super(`no request body data for ${ms}ms`);
    this.name = "BodyTimeout";
  }
}

/** Read one chunk, or fail with {@link BodyTimeout} if none comes within `ms`. */
async function readWithin(reader: ReadableStreamDefaultReader<Uint8Array>, ms: number) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      reader.read(),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new BodyTimeout(ms)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The whole body, bounded by an idle timeout between chunks. */
async function bufferBody(body: ReadableStream<Uint8Array>, ms: number): Promise<Uint8Array> {
  const reader = body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await readWithin(reader, ms);
      if (done) break;
      parts.push(value);
      size += value.byteLength;
    }
  } catch (e) {
    reader.cancel(e).catch(() => {});
    throw e;
  }
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** A streamed body that errors with {@link BodyTimeout} when the client stalls (pulled lazily). */
function withBodyTimeout(body: ReadableStream<Uint8Array>, ms: number, onTimeout: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done, value } = await readWithin(reader, ms);
          if (done) controller.close();
          else controller.enqueue(value);
        } catch (e) {
          if (e instanceof BodyTimeout) onTimeout();
          reader.cancel(e).catch(() => {});
          controller.error(e);
        }
      },
      cancel: (reason) => reader.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}

/** A short plain-text error response; never a stack trace. */
export function errorResponse(status: number, message: string, headers?: Record<string, string>): Response {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", ...headers },
  });
}

class ProxyRequestInfo implements RequestInfo {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly host: string,
    readonly clientIp: string,
    private readonly incoming: Incoming,
  ) {}

  /** Built on first use: the built-in strategies never read it. */
  get headers(): Headers {
    return this.incoming.headers;
  }
}

/**
 * A backend's response on its way to the client: hop-by-hop headers dropped, the body as bytes
 * or a stream. `length` is the body's declared length (-1 when unknown), also for HEAD.
 */
export interface Proxied {
  readonly kind: "proxied";
  readonly status: number;
  readonly statusText: string;
  /** name, value, … lower-cased, without hop-by-hop or Content-Length (made on first read when `block` is given). */
  readonly headers: string[];
  /** The same headers as the backend's bytes, when its client kept them (see UpstreamResponse.block). */
  readonly block: HeaderBlock | undefined;
  readonly length: number;
  readonly body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer> | null;
}

/** {@link Proxied} over an upstream response: forwarded as bytes, as strings only when read (middleware). */
class ProxiedResponse implements Proxied {
  readonly kind = "proxied";
  #headers: string[] | undefined;
  constructor(
    readonly res: UpstreamResponse,
    readonly block: HeaderBlock | undefined,
    readonly length: number,
    headers: string[] | undefined,
  ) {
    this.#headers = headers;
  }
  get status() {
    return this.res.status;
  }
  get statusText() {
    return this.res.statusText;
  }
  get body() {
    return this.res.body;
  }
  get headers(): string[] {
    return (this.#headers ??= downstreamRaw(this.res.rawHeaders).headers);
  }
}

/** What {@link proxyToPool} answers: the backend's response, or an answer of ours (errors). */
export type ProxyResult = Proxied | Response;

/** As a web `Response` (for middleware); a header the runtime refuses makes it a 502. */
export function toResponse(result: ProxyResult, ex: Exchange): Response {
  if (result instanceof Response) return result;
  const headers = new Headers();
  const h = result.headers;
  try {
    for (let i = 0; i < h.length; i += 2) headers.append(h[i]!, h[i + 1]!);
    if (result.length >= 0) headers.set("content-length", String(result.length));
    return new Response(result.body, { status: result.status, statusText: result.statusText, headers });
  } catch (e) {
    // A response the runtime refuses to carry (a header value it rejects): the backend's fault.
    if (result.body instanceof ReadableStream) result.body.cancel().catch(() => {});
    ex.error = `unusable response: ${e instanceof Error ? e.message : String(e)}`;
    ex.status = 502;
    return errorResponse(502, "bad gateway");
  }
}

/**
 * One upstream attempt: the request the upstream client sends (one object, no separate request
 * literal and bound callback per attempt), and its bookkeeping: its body may end before or after
 * we look at it.
 */
class Attempt implements UpstreamRequest {
  responded = false;
  endedEarly = false;
  final = false;
  bytes = 0;
  error: string | undefined;
  constructor(
    readonly pool: Pool,
    readonly backend: Backend,
    readonly ex: Exchange,
    readonly method: string,
    readonly path: string,
    readonly headers: Record<string, string>,
    readonly block: HeaderBlock | undefined,
    readonly body: ReadableStream<Uint8Array> | Uint8Array | null,
    readonly signal: AbortLike,
    readonly connectTimeoutMs: number,
    readonly responseTimeoutMs: number,
  ) {}

  onBodyEnd(bytes: number, error?: string): void {
    this.bytes = bytes;
    this.error = error;
    if (!this.responded) {
      this.endedEarly = true;
      return;
    }
    this.finish();
  }

  #finished = false;

  /** Release the backend and, for the response we returned, end the request. Once. */
  finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.pool.release(this.backend);
    if (!this.final) return;
    this.ex.bytes = this.bytes;
    if (this.error) this.ex.error = this.error;
    this.ex.done();
  }
}

const sleep = (ms: number, signal: AbortLike) =>
  new Promise<boolean>((resolve) => {
    if (signal.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });

/** Forward `request` to a backend of `pool`, retrying as the pool's policy allows. Fills in `ex`. */
export async function proxyToPool(pool: Pool, request: Incoming, ex: Exchange, route: RouteOptions): Promise<ProxyResult> {
  ex.pool = pool.name;
  const cfg = pool.config;
  if (cfg.max_inflight.pool > 0 && pool.inflight >= cfg.max_inflight.pool) {
    ex.error = "pool at max_inflight";
    return errorResponse(503, "pool at capacity");
  }
  pool.budget.onRequest();
  const retry = cfg.retry;
  const method = request.method;
  const idempotent = IDEMPOTENT.has(method) || route.retryNonIdempotent;

  // A small body is buffered so that it can be sent again; a large one is streamed, once. One that
  // came whole with its head (the usual small POST) is taken as bytes: no stream, reader or timer.
  const length = request.bodyLength;
  const whole = length > 0 && length <= retry.buffer_body_limit ? request.wholeBody?.() : undefined;
  let body: ReadableStream<Uint8Array> | Uint8Array | null = whole ?? request.body;
  let replayable = body === null || whole !== undefined;
  let bodyStalled = false;
  // Whether the first attempt starts in the request's turn (Exchange.start): not after middleware,
  // nor after waiting for a body to buffer.
  let sameTurn = route.direct;
  if (body instanceof ReadableStream) {
    if (retry.attempts > 1 && length >= 0 && length <= retry.buffer_body_limit) {
      sameTurn = false;
      try {
        body = await bufferBody(body, route.bodyTimeoutMs);
      } catch (e) {
        if (request.signal.aborted) return clientGone(ex);
        ex.error = e instanceof Error ? e.message : String(e);
        const fault = request.bodyFault();
        if (fault !== 0) return errorResponse(fault, fault === 413 ? "request body too large" : "bad request body", { connection: "close" });
        return errorResponse(e instanceof BodyTimeout ? 408 : 400, e instanceof BodyTimeout ? "request body timeout" : "bad request body");
      }
      replayable = true;
    } else {
      body = withBodyTimeout(body, route.bodyTimeoutMs, () => (bodyStalled = true));
    }
  }

  const path = request.target;
  // The client's lines as bytes, unless tracing's headers must replace some of them.
  const fwd = request.forwardBlock?.(ex.clientIp, ex.observer?.tracing === true);
  const headers = fwd === undefined ? request.forwardHeaders(ex.clientIp) : fwd.headers;
  const lines = fwd?.block;
  const info = new ProxyRequestInfo(method, ex.path, request.host, ex.clientIp, request);
  const deadline = cfg.timeouts.request > 0 ? ex.start + cfg.timeouts.request : Infinity;
  const perTry = retry.per_try_timeout || cfg.timeouts.response;
  let tried: Backend[] | undefined;

  for (let n = 1; ; n++) {
    const backend = pool.pick(info, tried);
    if (!backend) {
      ex.error = pool.available.length === 0 ? "no available backend" : "all backends at max_inflight";
      return errorResponse(503, "no backend available");
    }
    // A clock read is a native call: the first attempt reuses the request's when nothing was awaited.
    const started = n === 1 && sameTurn ? ex.start : performance.now();
    const remaining = deadline - started;
    if (remaining <= 0) {
      ex.error = "request deadline passed";
      return errorResponse(504, "gateway timeout");
    }
    ex.backend = backend.id;
    ex.attempts = n;
    if (cfg.host_header === "backend") headers.host = backend.hostHeader;
    const attempt = new Attempt(pool, backend, ex, method, path, headers, lines, body, request.signal, cfg.timeouts.connect, Math.min(perTry, remaining));
    const trial = pool.acquire(backend);
    const trace = ex.observer?.attemptStart(ex, pool, backend, n, headers);
    let res: UpstreamResponse;
    try {
      res = await sendUpstream(backend.target, backend.agent, attempt);
    } catch (e) {
      pool.release(backend);
      const err = e instanceof UpstreamError ? e : new UpstreamError("reset", String(e), true, { cause: e });
      ex.error = `${err.kind}: ${err.message}`;
      const fault = request.bodyFault();
      if (fault !== 0) {
        // The client's body broke its own framing or the size limit: its fault, not the backend's.
        pool.abandon(backend, trial);
        ex.status = fault;
        return errorResponse(fault, fault === 413 ? "request body too large" : "bad request body", { connection: "close" });
      }
      if (bodyStalled) {
        // The client stopped sending its body: its fault, not the backend's.
        pool.abandon(backend, trial);
        ex.status = 408;
        return errorResponse(408, "request body timeout", { connection: "close" });
      }
      if (err.kind === "aborted") {
        // The client left: not the backend's fault, so nothing is recorded against it, but a
        // half-open trial slot it held is freed.
        ex.observer?.attemptEnd(ex, trace, pool, backend, 0, performance.now() - started, err);
        pool.abandon(backend, trial);
        return clientGone(ex);
      }
      const latencyMs = performance.now() - started;
      pool.record(backend, { status: 0, latencyMs, error: err.kind }, trial);
      ex.observer?.attemptEnd(ex, trace, pool, backend, 0, latencyMs, err);
      const kind: FailureKind = err.kind;
      // A streamed body is only sent after connecting, so a connect failure leaves it unread.
      const safe = retry.on.includes(kind) && (kind === "connect" || idempotent) && (replayable || kind === "connect");
      if (!safe || !(await mayRetry(pool, n, 0, deadline, request.signal, ex, kind))) {
        if (request.signal.aborted) return clientGone(ex);
        return kind === "timeout" ? errorResponse(504, "gateway timeout") : errorResponse(502, "bad gateway");
      }
      (tried ??= []).push(backend);
      continue;
    }

    attempt.responded = true;
    const status = res.status;
    const latencyMs = performance.now() - started;
    pool.record(backend, { status, latencyMs }, trial);
    ex.observer?.attemptEnd(ex, trace, pool, backend, status, latencyMs);
    const kind = status === 502 || status === 503 || status === 504 ? (String(status) as FailureKind) : undefined;
    if (kind && retry.on.includes(kind) && idempotent && replayable) {
      const after = status === 503 ? retryAfterMs(res) : 0;
      if (after !== undefined && (await mayRetry(pool, n, after, deadline, request.signal, ex, kind, () => discard(res, attempt)))) {
        (tried ??= []).push(backend);
        continue;
      }
      if (request.signal.aborted) {
        discard(res, attempt);
        return clientGone(ex);
      }
    }

    const block = res.block;
    let response: Proxied;
    if (block !== undefined) response = new ProxiedResponse(res, block, res.contentLength ?? -1, undefined);
    else {
      const { headers, length } = downstreamRaw(res.rawHeaders);
      response = new ProxiedResponse(res, undefined, length, headers);
    }
    // This is the response the client gets.
    attempt.final = true;
    ex.status = status;
    if (res.body instanceof ReadableStream && !attempt.endedEarly) {
      ex.streaming = true;
      ex.upstreamBody = res.body;
    } else attempt.finish();
    return response;
  }
}

function clientGone(ex: Exchange): Response {
  ex.status = 499;
  ex.error ??= "client closed request";
  return errorResponse(499, "client closed request");
}

/** Retry-After of a 503 in ms (0 if absent); undefined means "wait longer than we would". */
function retryAfterMs(res: UpstreamResponse): number | undefined {
  let value: string | undefined;
  for (let i = 0; i < res.rawHeaders.length; i += 2) {
    if (res.rawHeaders[i]!.toLowerCase() === "retry-after") value = res.rawHeaders[i + 1];
  }
  return value === undefined ? 0 : parseRetryAfter(value);
}

/** Throw away a response we are retrying past (closes its connection if the body is unread). */
function discard(res: UpstreamResponse, attempt: Attempt): void {
  if (res.body instanceof ReadableStream && !attempt.endedEarly) res.body.cancel().catch(() => {});
  else attempt.finish();
}

/**
 * Decide whether retry `n + 1` may happen, and wait its backoff: attempts left, the deadline
 * not passed after the wait, and the pool's retry budget not spent.
 */
async function mayRetry(
  pool: Pool,
  n: number,
  minDelay: number,
  deadline: number,
  signal: AbortLike,
  ex: Exchange,
  reason: string,
  beforeWait?: () => void,
): Promise<boolean> {
  const retry = pool.config.retry;
  if (n >= retry.attempts) return false;
  const delay = Math.max(minDelay, backoffDelay(n, retry.backoff, Math.random));
  if (minDelay > retry.backoff.max) return false;
  if (performance.now() + delay >= deadline) return false;
  if (!pool.budget.tryRetry()) {
    ex.error = `retry budget exhausted (${reason})`;
    return false;
  }
  beforeWait?.();
  ex.retryReason = reason;
  if (delay > 0 && !(await sleep(delay, signal))) return false;
  return true;
}

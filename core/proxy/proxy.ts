/**
 * The proxy path for one request: pick a backend, forward with clean headers, retry what is
 * safe to retry on another backend, stream the response back, and turn failures into the
 * right status: no backend → 503, refused/reset → 502, timeout → 504, client gone → 499.
 */
import type { Backend, Pool } from "../pool/pool.ts";
import type { RequestInfo } from "../plugins/api.ts";
import { downstreamRaw } from "../http1/headers.ts";
import { sendUpstream, UpstreamError, type AbortLike, type UpstreamRequest, type UpstreamResponse } from "../upstream/client.ts";
import { backoffDelay, IDEMPOTENT, parseRetryAfter, type FailureKind } from "../resilience/retry.ts";
import type { BodyInRead, HeaderBlock } from "../http1/bytes.ts";
import type { Exchange, Incoming, RouteOptions } from "./exchange.ts";
import { bufferBody, withBodyTimeout, BodyTimeout } from "./body.ts";
import { errorResponse, ProxiedResponse, type Proxied, type ProxyResult } from "./response.ts";
import { switchedTo } from "./tunnel.ts";

class ProxyRequestInfo implements RequestInfo {
  /** The backends this request failed on so far (set before each retry's pick). */
  tried: Backend[] | undefined = undefined;
  constructor(
    readonly method: string,
    readonly path: string,
    readonly host: string,
    readonly clientIp: string,
    private readonly incoming: Incoming,
  ) {}

  /** Built on first use (on the own listener): the built-in strategies read `header()` instead. */
  get headers(): Headers {
    return this.incoming.headers;
  }

  /** One header without building `headers` where the listener can (RawIncoming). */
  header(name: string): string | null {
    const incoming = this.incoming;
    return incoming.header !== undefined ? incoming.header(name) : incoming.headers.get(name);
  }

  /** Cut from the client's target on first use: like `path` and the headers, as the client sent it. */
  get query(): string {
    const target = this.incoming.clientTarget ?? this.incoming.target;
    const q = target.indexOf("?");
    return q < 0 ? "" : target.slice(q + 1);
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
  /** The Upgrade to ask for (UpstreamRequest.upgrade). */
  upgrade: string | undefined = undefined;
  constructor(
    readonly pool: Pool,
    readonly backend: Backend,
    readonly ex: Exchange,
    readonly method: string,
    readonly path: string,
    readonly headers: Record<string, string>,
    readonly block: HeaderBlock | undefined,
    private readonly bodyGiven: ReadableStream<Uint8Array> | Uint8Array | null,
    readonly bodyInRead: BodyInRead | undefined,
    readonly signal: AbortLike,
    readonly connectTimeoutMs: number,
    readonly responseTimeoutMs: number,
  ) {}

  /** The body; one still in the client's read as a view of it, made only for a client that does not read `bodyInRead`. */
  get body(): ReadableStream<Uint8Array> | Uint8Array | null {
    const r = this.bodyInRead;
    return r !== undefined ? r.buf.subarray(r.at, r.end) : this.bodyGiven;
  }

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
  // One still in the read it came in is left there (BodyInRead): the upstream client copies it from there.
  const length = request.bodyLength;
  const small = length > 0 && length <= retry.buffer_body_limit;
  const inRead = small ? request.wholeBodyInRead?.() : undefined;
  const whole = small && inRead === undefined ? request.wholeBody?.() : undefined;
  let body: ReadableStream<Uint8Array> | Uint8Array | null = inRead !== undefined ? null : whole ?? request.body;
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
        if (fault !== 0)
          return errorResponse(fault, fault === 413 ? "request body too large" : "bad request body", { connection: "close" });
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
  // Never an empty Host upstream: an HTTP/1.0 request may come without one; it gets the
  // backend's, as with `host_header: backend`.
  const backendHost = cfg.host_header === "backend" || !headers.host;
  const info = new ProxyRequestInfo(method, ex.path, request.host, ex.clientIp, request);
  const deadline = cfg.timeouts.request > 0 ? ex.start + cfg.timeouts.request : Infinity;
  const perTry = retry.per_try_timeout || cfg.timeouts.response;
  let tried: Backend[] | undefined;
  // The backend the client's sticky cookie names (pools.<name>.sticky), if any.
  const sticky = pool.sticky;
  const named = sticky === undefined
    ? undefined
    : sticky.find(request.header !== undefined ? request.header("cookie") : request.headers.get("cookie"));

  for (let n = 1;; n++) {
    const backend = (named !== undefined ? pool.stickyUsable(named, tried) : undefined) ?? pool.pick(info);
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
    if (backendHost) headers.host = backend.hostHeader;
    const attempt = new Attempt(
      pool,
      backend,
      ex,
      method,
      path,
      headers,
      lines,
      body,
      inRead,
      request.signal,
      cfg.timeouts.connect,
      Math.min(perTry, remaining),
    );
    attempt.upgrade = request.upgrade;
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
      (info.tried = tried ??= []).push(backend);
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
        (info.tried = tried ??= []).push(backend);
        continue;
      }
      if (request.signal.aborted) {
        discard(res, attempt);
        return clientGone(ex);
      }
    }

    const block = res.block;
    // A sticky pool tells the client its backend when the cookie did not already name it.
    const setCookie = sticky !== undefined && backend !== named ? sticky.setCookie(backend) : undefined;
    let response: Proxied;
    if (block !== undefined && setCookie === undefined) response = new ProxiedResponse(res, block, res.contentLength ?? -1, undefined);
    else {
      const { headers, length } = downstreamRaw(res.rawHeaders);
      if (setCookie !== undefined) headers.push("set-cookie", setCookie);
      response = new ProxiedResponse(res, undefined, length, headers);
    }
    if (res.tunnel !== undefined) return upgraded(res, request.upgrade!, response as ProxiedResponse, attempt, ex);
    // This is the response the client gets.
    attempt.final = true;
    ex.status = status;
    // (A body still in its read is whole: `body` would make a view of it for nothing.)
    if (res.inRead === undefined && res.body instanceof ReadableStream && !attempt.endedEarly) {
      ex.streaming = true;
      ex.upstreamBody = res.body;
    } else attempt.finish();
    return response;
  }
}

/** A 101: the backend's end of the tunnel, counted on the backend until the tunnel closes (tunnel.ts). */
function upgraded(res: UpstreamResponse, asked: string, response: ProxiedResponse, attempt: Attempt, ex: Exchange): ProxyResult {
  const tunnel = res.tunnel!;
  const protocol = switchedTo(asked, res);
  if (protocol === undefined) {
    tunnel.destroy();
    attempt.finish();
    ex.error = "the backend switched to a protocol not asked for";
    return errorResponse(502, "bad gateway");
  }
  attempt.final = true;
  ex.status = 101;
  ex.streaming = true;
  const backend = attempt.backend;
  backend.tunnels++;
  response.upgraded = {
    protocol,
    headers: response.block ?? response.headers,
    backend: tunnel,
    done(bytes, error) {
      backend.tunnels--;
      attempt.onBodyEnd(bytes, error);
    },
  };
  return response;
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
  if (res.inRead === undefined && res.body instanceof ReadableStream && !attempt.endedEarly) res.body.cancel().catch(() => {});
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

/**
 * The proxy path for one request: pick a backend, forward with clean headers, stream the
 * response back, and turn failures into the right status (RFC 9110 §15.6):
 * no backend → 503, refused/reset → 502, timeout → 504, client gone → 499 (logged only).
 */
import type { Backend, Pool } from "./pool.ts";
import type { RequestInfo } from "./plugin-api.ts";
import { downstreamHeaders, upstreamHeaders } from "./headers.ts";
import { sendUpstream, UpstreamError } from "./upstream.ts";

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
  /** True while the response body is still streaming; {@link Exchange.done} runs when it ends. */
  streaming: boolean;
  error: string | undefined;
  /** Called exactly once when the request is over (body finished, failed or cancelled). */
  done: () => void;
}

/** A short plain-text error response; never a stack trace. */
export function errorResponse(status: number, message: string): Response {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
  });
}

class ProxyRequestInfo implements RequestInfo {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly host: string,
    readonly clientIp: string,
    readonly headers: Headers,
  ) {}
}

/** Forward `request` to a backend of `pool`. Fills in `ex` as it goes. */
export async function proxyToPool(pool: Pool, request: Request, ex: Exchange): Promise<Response> {
  ex.pool = pool.name;
  const available = pool.available;
  if (available.length === 0) {
    ex.error = "no available backend";
    return errorResponse(503, "no backend available");
  }
  const host = request.headers.get("host") ?? "";
  const backend = pool.strategy.pick(available, new ProxyRequestInfo(request.method, ex.path, host, ex.clientIp, request.headers)) as
    | Backend
    | undefined;
  if (!backend) {
    ex.error = "strategy returned no backend";
    return errorResponse(503, "no backend available");
  }
  ex.backend = backend.id;
  backend.inflight++;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    backend.inflight--;
  };

  const started = performance.now();
  // A small body can end (node 'end') before the await below resumes; finish only after both.
  let responded = false;
  let endedEarly = false;
  const url = request.url;
  const pathStart = url.indexOf("/", url.indexOf("//") + 2);
  try {
    const res = await sendUpstream(backend.target, backend.agent, {
      method: request.method,
      path: pathStart < 0 ? "/" : url.slice(pathStart),
      headers: upstreamHeaders(request.headers, {
        clientIp: ex.clientIp,
        proto: url.startsWith("https:") ? "https" : "http",
        hostOverride: pool.config.host_header === "backend" ? backend.hostHeader : undefined,
      }),
      body: request.body,
      signal: request.signal,
      connectTimeoutMs: pool.config.timeouts.connect,
      responseTimeoutMs: pool.config.timeouts.response,
      onBodyEnd(bytes, error) {
        ex.bytes = bytes;
        if (error) ex.error = error;
        if (!responded) {
          endedEarly = true;
          return;
        }
        release();
        ex.done();
      },
    });
    responded = true;
    const latency = performance.now() - started;
    backend.record(latency, res.status >= 500);
    pool.strategy.observe?.(backend, { status: res.status, latencyMs: latency });
    ex.status = res.status;

    // With a body the request is over when the body is (onBodyEnd); without one, now.
    if (res.body && !endedEarly) ex.streaming = true;
    else release();
    return new Response(res.body, { status: res.status, statusText: res.statusText, headers: downstreamHeaders(res.rawHeaders) });
  } catch (e) {
    release();
    const latency = performance.now() - started;
    const err = e instanceof UpstreamError ? e : new UpstreamError("reset", String(e), true, { cause: e });
    ex.error = `${err.kind}: ${err.message}`;
    if (err.kind === "aborted") {
      // The client left; not the backend's fault, so not recorded against it.
      ex.status = 499;
      return errorResponse(499, "client closed request");
    }
    backend.record(latency, true);
    pool.strategy.observe?.(backend, { status: 0, latencyMs: latency, error: err.kind });
    return err.kind === "timeout" ? errorResponse(504, "gateway timeout") : errorResponse(502, "bad gateway");
  }
}

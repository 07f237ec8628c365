/**
 * The upstream HTTP/1.1 client, on node:http (Bun and Deno both provide it).
 *
 * Why not `fetch`: Bun's fetch invents `User-Agent` and `Accept` headers, silently re-sends
 * GET/HEAD/PUT/DELETE on a dead pooled connection, shares 64 idle connections among all
 * backends and has no connect timeout. node:http sends exactly the headers given, never retries
 * on its own, and keeps a pool per backend (an `Agent`) whose size we set.
 *
 * Stale keep-alive connections (closed by the backend while idle) are handled here, visibly:
 * see {@link UpstreamClient.request}.
 */
import http from "node:http";
import https from "node:https";
import type { Socket } from "node:net";

export type UpstreamErrorKind = "connect" | "reset" | "timeout" | "aborted";

/** An attempt that got no response. `kind` decides the status: connect/reset → 502, timeout → 504. */
export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    /** False when the request provably never reached the backend (connect failure). */
    readonly maybeSent: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "UpstreamError";
  }
}

export interface UpstreamTarget {
  readonly protocol: "http:" | "https:";
  readonly hostname: string;
  readonly port: number;
  /** Path prefix from the backend URL, without a trailing slash ("" for none). */
  readonly basePath: string;
}

export interface UpstreamRequest {
  method: string;
  /** Path and query, starting with `/`. */
  path: string;
  headers: Record<string, string>;
  /** A stream is sent once the connection is up, so a connect failure leaves it unread (retryable). */
  body: ReadableStream<Uint8Array> | Uint8Array | null;
  /** Aborted when the client goes away. */
  signal: AbortSignal;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  /**
   * Called once when the response body has been fully sent, failed, or was cancelled by the
   * client, with the bytes passed and an error message if it did not complete.
   */
  onBodyEnd: (bytes: number, error?: string) => void;
}

export interface UpstreamResponse {
  status: number;
  statusText: string;
  rawHeaders: string[];
  /** The body as a web stream, or null for HEAD, 204 and 304 (then `onBodyEnd` is not called). */
  body: ReadableStream<Uint8Array> | null;
}

export interface PoolOptions {
  maxIdle: number;
  idleTimeoutMs: number;
}

/** Keep-alive connection pool for one backend. */
export function createAgent(target: UpstreamTarget, options: PoolOptions): http.Agent {
  const Agent = target.protocol === "https:" ? https.Agent : http.Agent;
  return new Agent({
    keepAlive: options.maxIdle > 0,
    maxFreeSockets: Math.max(1, options.maxIdle),
    // Idle sockets are closed after this; kept below common backend keep-alive timeouts (5s).
    timeout: options.idleTimeoutMs,
    scheduling: "lifo",
  });
}

const BODYLESS_STATUS = new Set([204, 304]);

/** Send one request to one backend. Resolves at the response headers; rejects with {@link UpstreamError}. */
export function sendUpstream(
  target: UpstreamTarget,
  agent: http.Agent,
  req: UpstreamRequest,
): Promise<UpstreamResponse> {
  return attempt(target, agent, req, true);
}

function attempt(target: UpstreamTarget, agent: http.Agent | false, req: UpstreamRequest, mayRetryStale: boolean) {
  return new Promise<UpstreamResponse>((resolve, reject) => {
    const mod = target.protocol === "https:" ? https : http;
    let settled = false;
    let connectTimer: ReturnType<typeof setTimeout> | undefined;
    let connected = false;
    const ureq = mod.request({
      protocol: target.protocol,
      hostname: target.hostname,
      port: target.port,
      method: req.method,
      path: target.basePath + req.path,
      headers: req.headers,
      agent,
      setHost: false,
    });

    const fail = (err: UpstreamError) => {
      if (settled) return;
      settled = true;
      cleanup();
      ureq.destroy();
      reject(err);
    };
    const onAbort = () => fail(new UpstreamError("aborted", "client closed the request", true));
    const responseTimer = setTimeout(
      () => fail(new UpstreamError("timeout", `no response headers within ${req.responseTimeoutMs}ms`, true)),
      req.responseTimeoutMs,
    );
    const cleanup = () => {
      clearTimeout(responseTimer);
      if (connectTimer) clearTimeout(connectTimer);
      req.signal.removeEventListener("abort", onAbort);
    };
    if (req.signal.aborted) return onAbort();
    req.signal.addEventListener("abort", onAbort);

    let bodyStarted = false;
    const startBody = () => {
      if (bodyStarted) return;
      bodyStarted = true;
      const body = req.body;
      if (body === null) ureq.end();
      else if (body instanceof Uint8Array) ureq.end(body);
      else pumpBody(body, ureq).catch((e) => fail(new UpstreamError("reset", `request body: ${e}`, true, { cause: e })));
    };

    ureq.on("socket", (socket: Socket) => {
      if (!socket.connecting) {
        connected = true;
        startBody();
        return;
      }
      connectTimer = setTimeout(
        () => fail(new UpstreamError("connect", `connect timed out after ${req.connectTimeoutMs}ms`, false)),
        req.connectTimeoutMs,
      );
      socket.once("connect", () => {
        connected = true;
        if (connectTimer) clearTimeout(connectTimer);
        startBody();
      });
    });

    ureq.on("error", (e: NodeJS.ErrnoException) => {
      if (settled) return;
      // A pooled connection the backend closed while idle fails before any response. Retrying
      // once on a new connection is safe only when no body was streamed; we do it here, once,
      // instead of Bun fetch's silent retry, so every retry is deliberate and bounded.
      if (mayRetryStale && ureq.reusedSocket && req.body === null && isResetCode(e.code)) {
        settled = true;
        cleanup();
        attempt(target, false, req, false).then(resolve, reject);
        return;
      }
      fail(classify(e, connected));
    });

    ureq.on("response", (res: http.IncomingMessage) => {
      if (settled) {
        res.destroy();
        return;
      }
      settled = true;
      cleanup();
      const noBody = req.method === "HEAD" || BODYLESS_STATUS.has(res.statusCode ?? 0);
      if (noBody) res.resume();
      resolve({
        status: res.statusCode ?? 502,
        statusText: res.statusMessage ?? "",
        rawHeaders: res.rawHeaders,
        body: noBody ? null : toWebStream(res, req.signal, req.onBodyEnd),
      });
    });

    // Without a body, end now: node:http sends the head as soon as the socket is ready.
    if (req.body === null) startBody();
  });
}

function isResetCode(code: string | undefined): boolean {
  return code === "ECONNRESET" || code === "EPIPE" || code === "ECONNABORTED" || code === undefined;
}

function classify(e: NodeJS.ErrnoException, connected: boolean): UpstreamError {
  const refused = e.code === "ECONNREFUSED" || e.code === "ENOTFOUND" || e.code === "EHOSTUNREACH" ||
    e.code === "ENETUNREACH" || e.code === "EAI_AGAIN";
  if (refused || !connected) return new UpstreamError("connect", e.message, false, { cause: e });
  return new UpstreamError("reset", e.message, true, { cause: e });
}

/** Stream the client's body upstream with backpressure (never buffers the whole body). */
async function pumpBody(body: ReadableStream<Uint8Array>, ureq: http.ClientRequest): Promise<void> {
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (ureq.destroyed) throw new Error("upstream connection closed");
      if (!ureq.write(value)) {
        await new Promise<void>((resolve, reject) => {
          const onDrain = () => {
            ureq.off("close", onClose);
            resolve();
          };
          const onClose = () => {
            ureq.off("drain", onDrain);
            reject(new Error("upstream connection closed"));
          };
          ureq.once("drain", onDrain);
          ureq.once("close", onClose);
        });
      }
    }
    ureq.end();
  } catch (e) {
    reader.cancel(e).catch(() => {});
    throw e;
  } finally {
    reader.releaseLock();
  }
}

/** node Readable → web ReadableStream with backpressure; cancelling it closes the upstream. */
function toWebStream(
  res: http.IncomingMessage,
  signal: AbortSignal,
  onEnd: (bytes: number, error?: string) => void,
): ReadableStream<Uint8Array> {
  let bytes = 0;
  let ended = false;
  const onAbort = () => res.destroy();
  const end = (error?: string) => {
    if (ended) return;
    ended = true;
    signal.removeEventListener("abort", onAbort);
    onEnd(bytes, error);
  };
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        res.on("data", (chunk: Uint8Array) => {
          bytes += chunk.byteLength;
          controller.enqueue(chunk);
          if ((controller.desiredSize ?? 0) <= 0) res.pause();
        });
        res.once("end", () => {
          controller.close();
          end();
        });
        const failed = (message: string) => {
          if (ended) return;
          controller.error(new UpstreamError("reset", message, true));
          end(message);
        };
        res.once("error", (e) => failed(`response body: ${e.message}`));
        res.once("aborted", () => failed("backend closed the response early"));
        signal.addEventListener("abort", onAbort, { once: true });
      },
      pull() {
        res.resume();
      },
      cancel() {
        res.destroy();
        end("client closed the response early");
      },
    },
    { highWaterMark: 4 },
  );
}

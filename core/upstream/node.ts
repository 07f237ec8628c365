/**
 * The upstream client on node:http, present in Bun and Deno. node:http sends exactly the
 * headers given and keeps a pool per backend (an `Agent`) whose size we set.
 */
import type { HeaderBlock } from "../http1/bytes.ts";
import http from "node:http";
import https from "node:https";
import { isIP, type Socket } from "node:net";
import {
  UpstreamError,
  type AbortLike,
  type PoolOptions,
  type UpstreamAgent,
  type UpstreamRequest,
  type UpstreamResponse,
  type UpstreamTarget,
  type UpstreamTls,
} from "./types.ts";

/** node:https options for a backend's TLS settings (pools.<name>.tls); health checks use them too. */
export function nodeTlsOptions(hostname: string, tls: UpstreamTls): https.AgentOptions & https.RequestOptions {
  return {
    rejectUnauthorized: tls.verify,
    ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
    ...(tls.serverName !== undefined ? { servername: tls.serverName } : isIP(hostname) ? {} : { servername: hostname }),
    ...(tls.cert !== undefined ? { cert: tls.cert, key: tls.key } : {}),
  };
}

/** node:http's keep-alive pool for one backend. */
function createNodeAgent(target: UpstreamTarget, options: PoolOptions): http.Agent {
  const Agent = target.protocol === "https:" ? https.Agent : http.Agent;
  return new Agent({
    ...(target.tls !== undefined ? nodeTlsOptions(target.hostname, target.tls) : {}),
    keepAlive: options.maxIdle > 0,
    maxFreeSockets: Math.max(1, options.maxIdle),
    // Idle sockets are closed after this; kept below common backend keep-alive timeouts (5s).
    timeout: options.idleTimeoutMs,
    scheduling: "lifo",
  });
}

const BODYLESS_STATUS = new Set([204, 304]);

/** The node:http client: used where the runtime brings none of its own (Deno). */
export function nodeUpstreamClient(target: UpstreamTarget, options: PoolOptions): UpstreamAgent {
  const agent = createNodeAgent(target, options);
  return {
    send: (req) => attempt(target, agent, req, true),
    destroy: () => agent.destroy(),
  };
}

/** `headers` and the lines of `block` as one object (repeated names joined with ", ", as headers.ts does). */
function withLines(headers: Record<string, string>, block: HeaderBlock): Record<string, string> {
  const out = { ...headers };
  const runs = block.runs;
  for (let r = 0; r < runs.length; r += 2) {
    for (const line of block.buf.toString("latin1", runs[r]!, runs[r + 1]! - 2).split("\r\n")) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
      out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`;
    }
  }
  return out;
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
      headers: req.block === undefined ? req.headers : withLines(req.headers, req.block),
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
        // Names lower-cased, as the Bun client gives them (downstreamRaw relies on it).
        rawHeaders: res.rawHeaders.map((v, i) => (i % 2 === 0 ? v.toLowerCase() : v)),
        body: noBody ? null : toWebStream(res, req.signal, (bytes, error) => req.onBodyEnd(bytes, error)),
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
  signal: AbortLike,
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

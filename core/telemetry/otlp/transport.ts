// The OTLP/HTTP export transport on `fetch`. @opentelemetry/otlp-exporter-base's node transport
// pipes each body through a node:stream Readable into node:http, which on Bun costs 0.5-1 ms of
// CPU per 200 KB export (Buffer.concat and buffered writes in Bun's node:net) against ~0.15 ms
// for fetch: at 1.0 sampling that was the largest single cost of tracing. The semantics are the
// library's (http-transport-utils.ts and retrying-transport.ts of otlp-exporter-base 0.301):
// 2xx succeeds; 429/502/503/504 and network errors are retried up to 5 times with jittered
// exponential backoff (1 s x1.5, at most 5 s) or the collector's Retry-After, all within the
// export timeout; other statuses fail with an OTLPExporterError; a response body over 4 MiB
// fails; `compression: gzip` gzips the body (OTEL_EXPORTER_OTLP_COMPRESSION).
//
// Where the runtime has its own upstream HTTP/1.1 client (Bun: core/upstream/pool.ts), a plain
// `http:` endpoint is sent through that instead (createUpstreamTransport), with the same semantics.
// Measured at 1.0 sampling under load (one worker, side by side): fetch cost ~13% of a traced
// request's CPU, mostly per export (its copy of the body, its HTTP thread, a Response and a
// stream per reply); the proxy's own client writes the body from one buffer on the JS thread.
import { Buffer } from "node:buffer";
import { diag } from "@opentelemetry/api";
import { OTLPExporterError, type ExportResponse, type IExporterTransport } from "@opentelemetry/otlp-exporter-base";
import { releaseRequest } from "./request.ts";
import { UpstreamError, type UpstreamAgent, type UpstreamClient, type UpstreamResponse } from "../../upstream/client.ts";

export interface FetchTransportOptions {
  url: string;
  /** Headers of every export (Content-Type included), resolved per export as the library does. */
  headers: () => Promise<Record<string, string>>;
  compression: "gzip" | "none";
  userAgent?: string;
}

const DEFAULT_USER_AGENT = "OTel-OTLP-Exporter-JavaScript";
const MAX_RESPONSE_BODY_SIZE = 4 * 1024 * 1024;
const MAX_ATTEMPTS = 5;
const INITIAL_BACKOFF = 1000;
const MAX_BACKOFF = 5000;
const BACKOFF_MULTIPLIER = 1.5;
const JITTER = 0.2;

const retryableStatus = (s: number) => s === 429 || s === 502 || s === 503 || s === 504;

/** Retry-After in ms (seconds or an HTTP date); -1 for "0" (retry now), as the library reads it. */
export function retryAfterMs(value: string | null): number | undefined {
  if (value == null) return undefined;
  const seconds = Number.parseInt(value, 10);
  if (Number.isInteger(seconds)) return seconds > 0 ? seconds * 1000 : -1;
  const delay = new Date(value).getTime() - Date.now();
  return delay >= 0 ? delay : 0;
}

async function gzip(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Reads at most MAX_RESPONSE_BODY_SIZE bytes; undefined when the body is larger. */
async function readLimited(body: ReadableStream<Uint8Array> | null, declared: number): Promise<Uint8Array | undefined> {
  if (declared > MAX_RESPONSE_BODY_SIZE) {
    await body?.cancel().catch(() => {});
    return undefined;
  }
  if (!body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > MAX_RESPONSE_BODY_SIZE) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** The export's outcome from the collector's reply (status, Retry-After, body), as the library's transport reads it. */
async function outcome(
  status: number,
  statusText: string,
  retryAfter: string | null,
  payload: Promise<Uint8Array | undefined>,
): Promise<ExportResponse> {
  let data: Uint8Array | undefined;
  try {
    data = await payload;
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    if (status <= 299) return { status: "success" };
    if (retryableStatus(status)) return { status: "retryable", error, retryInMillis: retryAfterMs(retryAfter) };
    return { status: "failure", error };
  }
  if (data === undefined) {
    return { status: "failure", error: new Error(`OTLP export response body exceeded size limit of ${MAX_RESPONSE_BODY_SIZE} bytes`) };
  }
  if (status <= 299) return { status: "success", data };
  if (retryableStatus(status)) return { status: "retryable", retryInMillis: retryAfterMs(retryAfter) };
  return { status: "failure", error: new OTLPExporterError(statusText, status, new TextDecoder().decode(data)) };
}

// A header name is a token; a value has no CR, LF or NUL and one byte a character. fetch throws on
// anything else (which would read as a network error, retried); the raw client would send it as is.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\r\n\0\u0100-\uffff]/;

/**
 * The body to send and the headers that go with it (gzip when configured); an error message
 * instead when a configured header cannot be sent (OTEL_EXPORTER_OTLP_HEADERS is URL-decoded).
 */
async function prepare(
  opts: FetchTransportOptions,
  userAgent: string,
  data: Uint8Array,
): Promise<{ headers: Record<string, string>; body: Uint8Array } | string> {
  const headers: Record<string, string> = { ...(await opts.headers()), "User-Agent": userAgent };
  for (const name in headers) {
    if (!TOKEN.test(name) || BAD_VALUE.test(String(headers[name])))
      return `OTLP export header ${JSON.stringify(name)} is not a valid HTTP header`;
  }
  if (opts.compression !== "gzip") return { headers, body: data };
  headers["Content-Encoding"] = "gzip";
  return { headers, body: await gzip(data) };
}

/** One POST, no retries. */
export function createFetchTransport(opts: FetchTransportOptions): IExporterTransport {
  const userAgent = opts.userAgent ? `${opts.userAgent} ${DEFAULT_USER_AGENT}` : DEFAULT_USER_AGENT;
  return {
    async send(data, timeoutMillis): Promise<ExportResponse> {
      const prepared = await prepare(opts, userAgent, data);
      if (typeof prepared === "string") return { status: "failure", error: new Error(prepared) };
      const { headers, body } = prepared;
      let res: Response;
      try {
        res = await fetch(opts.url, {
          method: "POST",
          headers,
          body: body as Uint8Array<ArrayBuffer>,
          signal: AbortSignal.timeout(timeoutMillis),
        });
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        if (e.name === "TimeoutError" || e.name === "AbortError") return { status: "retryable", error: new Error("Request timed out") };
        // Refused, reset, unreachable, DNS: the node transport retries these too.
        return { status: "retryable", error: e };
      }
      const declared = Number(res.headers.get("content-length") ?? -1);
      return outcome(res.status, res.statusText, res.headers.get("retry-after"), readLimited(res.body, declared));
    },
    shutdown() {},
  };
}

/** A URL's user or password as written, when its %-escapes are not valid UTF-8. */
function percentDecoded(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Headers the upstream client writes itself; configured ones are dropped. */
const OWN_HEADERS = new Set(["host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer"]);

/**
 * One POST through the runtime's own upstream client, no retries: what {@link createFetchTransport}
 * does, for an `http:` endpoint. Keeps up to two keep-alive connections, idle at most 4 s: less
 * than Node's 5 s server default, so a reused connection is seldom one the collector is closing
 * (a body is never re-sent on its own; the retrying transport retries the reset after backoff).
 * Redirects are not followed, as the library's node transport does not follow them.
 */
export function createUpstreamTransport(opts: FetchTransportOptions, client: UpstreamClient): IExporterTransport {
  const userAgent = opts.userAgent ? `${opts.userAgent} ${DEFAULT_USER_AGENT}` : DEFAULT_USER_AGENT;
  const url = new URL(opts.url);
  if (url.protocol !== "http:") throw new Error(`createUpstreamTransport: ${url.protocol} endpoints go through fetch`);
  const target = { protocol: "http:", hostname: url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port) || 80, basePath: "" } as const;
  const path = url.pathname + url.search;
  // Credentials in the URL become Basic auth, as fetch and the library's node transport send them.
  // UTF-8 before base64, as fetch does (btoa would throw on a non-latin1 character).
  const basic = url.username || url.password
    ? "Basic " + Buffer.from(percentDecoded(url.username) + ":" + percentDecoded(url.password), "utf8").toString("base64")
    : undefined;
  let agent: UpstreamAgent | undefined;
  const noop = () => {};
  return {
    async send(data, timeoutMillis): Promise<ExportResponse> {
      const prepared = await prepare(opts, userAgent, data);
      if (typeof prepared === "string") return { status: "failure", error: new Error(prepared) };
      const headers: Record<string, string> = { host: url.host };
      if (basic !== undefined) headers.authorization = basic;
      for (const name in prepared.headers) {
        // Lower case: the client adds Content-Length only when "content-length" is not given.
        const key = name.toLowerCase();
        // Framing and connection handling are the client's (fetch ignores these too).
        if (OWN_HEADERS.has(key)) continue;
        const value = String(prepared.headers[name]);
        const prev = headers[key];
        // A configured Authorization replaces the URL's; names differing only in case are one
        // header, their values joined as fetch's Headers joins them.
        headers[key] = prev === undefined || (key === "authorization" && prev === basic) ? value : prev + ", " + value;
      }
      const signal = AbortSignal.timeout(timeoutMillis);
      let res: UpstreamResponse;
      try {
        agent ??= client(target, { maxIdle: 2, idleTimeoutMs: 4000 });
        res = await agent.send({
          method: "POST",
          path,
          headers,
          body: prepared.body,
          signal,
          connectTimeoutMs: timeoutMillis,
          responseTimeoutMs: timeoutMillis,
          onBodyEnd: noop,
        });
      } catch (err) {
        if (err instanceof UpstreamError && (err.kind === "timeout" || err.kind === "aborted"))
          return { status: "retryable", error: new Error("Request timed out") };
        return { status: "retryable", error: err instanceof Error ? err : new Error(String(err)) };
      }
      const raw = res.rawHeaders;
      let retryAfter: string | null = null;
      let declared = -1;
      for (let i = 0; i < raw.length; i += 2) {
        if (raw[i] === "retry-after") retryAfter = raw[i + 1]!;
        else if (raw[i] === "content-length") declared = Number(raw[i + 1]);
      }
      const body = res.body;
      // The abort signal also ends a body that stalls (the client errors its stream).
      const payload = body instanceof Uint8Array
        ? Promise.resolve(body.length > MAX_RESPONSE_BODY_SIZE ? undefined : body)
        : readLimited(body, declared);
      return outcome(res.status, res.statusText, retryAfter, payload);
    },
    shutdown() {
      agent?.destroy();
    },
  };
}

/**
 * Retries "retryable" outcomes as otlp-exporter-base's RetryingTransport does, within the export's
 * timeout. A request the collector took (2xx) has been read whole: its buffer goes back to the
 * encoder (releaseRequest). After a timeout or a reset a client may still hold a part of it, so
 * that one is left to the garbage collector.
 */
export function withRetries(transport: IExporterTransport): IExporterTransport {
  return {
    send: async (data, timeoutMillis) => {
      const result = await retrying(transport, data, timeoutMillis);
      if (result.status === "success") releaseRequest(data);
      return result;
    },
    shutdown: () => transport.shutdown(),
  };
}

async function retrying(transport: IExporterTransport, data: Uint8Array, timeoutMillis: number): Promise<ExportResponse> {
  let attempts = MAX_ATTEMPTS;
  let nextBackoff = INITIAL_BACKOFF;
  const deadline = Date.now() + timeoutMillis;
  let result = await transport.send(data, timeoutMillis);
  while (result.status === "retryable" && attempts > 0) {
    attempts--;
    const jitter = Math.random() * (2 * JITTER) - JITTER;
    const backoff = Math.max(Math.min(nextBackoff * (1 + jitter), MAX_BACKOFF), 0);
    nextBackoff *= BACKOFF_MULTIPLIER;
    const retryIn = result.retryInMillis ?? backoff;
    const remaining = deadline - Date.now();
    if (retryIn > remaining) {
      diag.info(`Export retry time ${Math.round(retryIn)}ms exceeds remaining timeout ${Math.round(remaining)}ms, not retrying further.`);
      return result;
    }
    await new Promise((r) => setTimeout(r, Math.max(0, retryIn))); // -1 means "now" (Retry-After: 0)
    result = await transport.send(data, remaining);
  }
  if (result.status === "retryable") diag.info(`Export failed after maximum retry attempts (${MAX_ATTEMPTS}).`);
  else if (result.status === "failure") diag.info(`Export failed with non-retryable error: ${result.error}`);
  return result;
}

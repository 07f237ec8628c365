// The OTLP/HTTP export transport on `fetch`. @opentelemetry/otlp-exporter-base's node transport
// pipes each body through a node:stream Readable into node:http, which on Bun costs 0.5-1 ms of
// CPU per 200 KB export (Buffer.concat and buffered writes in Bun's node:net) against ~0.15 ms
// for fetch: at 1.0 sampling that was the largest single cost of tracing. The semantics are the
// library's (http-transport-utils.ts and retrying-transport.ts of otlp-exporter-base 0.301):
// 2xx succeeds; 429/502/503/504 and network errors are retried up to 5 times with jittered
// exponential backoff (1 s x1.5, at most 5 s) or the collector's Retry-After, all within the
// export timeout; other statuses fail with an OTLPExporterError; a response body over 4 MiB
// fails; `compression: gzip` gzips the body (OTEL_EXPORTER_OTLP_COMPRESSION).
import { diag } from "@opentelemetry/api";
import { OTLPExporterError, type ExportResponse, type IExporterTransport } from "@opentelemetry/otlp-exporter-base";

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
async function readLimited(res: Response): Promise<Uint8Array | undefined> {
  const declared = Number(res.headers.get("content-length") ?? -1);
  if (declared > MAX_RESPONSE_BODY_SIZE) {
    await res.body?.cancel().catch(() => {});
    return undefined;
  }
  if (!res.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body.getReader();
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

/** One POST, no retries. */
export function createFetchTransport(opts: FetchTransportOptions): IExporterTransport {
  const userAgent = opts.userAgent ? `${opts.userAgent} ${DEFAULT_USER_AGENT}` : DEFAULT_USER_AGENT;
  return {
    async send(data, timeoutMillis): Promise<ExportResponse> {
      const headers: Record<string, string> = { ...(await opts.headers()), "User-Agent": userAgent };
      let body = data;
      if (opts.compression === "gzip") {
        body = await gzip(data);
        headers["Content-Encoding"] = "gzip";
      }
      let res: Response;
      try {
        res = await fetch(opts.url, { method: "POST", headers, body: body as Uint8Array<ArrayBuffer>, signal: AbortSignal.timeout(timeoutMillis) });
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        if (e.name === "TimeoutError" || e.name === "AbortError") return { status: "retryable", error: new Error("Request timed out") };
        // Refused, reset, unreachable, DNS: the node transport retries these too.
        return { status: "retryable", error: e };
      }
      let payload: Uint8Array | undefined;
      try {
        payload = await readLimited(res);
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        if (res.status <= 299) return { status: "success" };
        if (retryableStatus(res.status)) return { status: "retryable", error, retryInMillis: retryAfterMs(res.headers.get("retry-after")) };
        return { status: "failure", error };
      }
      if (payload === undefined) {
        return { status: "failure", error: new Error(`OTLP export response body exceeded size limit of ${MAX_RESPONSE_BODY_SIZE} bytes`) };
      }
      if (res.status <= 299) return { status: "success", data: payload };
      if (retryableStatus(res.status)) return { status: "retryable", retryInMillis: retryAfterMs(res.headers.get("retry-after")) };
      return { status: "failure", error: new OTLPExporterError(res.statusText, res.status, new TextDecoder().decode(payload)) };
    },
    shutdown() {},
  };
}

/** Retries "retryable" outcomes as otlp-exporter-base's RetryingTransport does, within the export's timeout. */
export function withRetries(transport: IExporterTransport): IExporterTransport {
  return {
    async send(data, timeoutMillis) {
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
    },
    shutdown: () => transport.shutdown(),
  };
}

// A small OTLP/HTTP receiver on loopback for tests: POST /v1/traces and /v1/metrics in http/protobuf
// or http/json (optionally gzip), decoded with the official schema (otlp-proto.ts). Spans are
// flattened with hex ids and attributes as plain objects; metric exports by metric name.
// Modes simulate a dead collector: "hang" never answers, "refuse" closes the port, "error" answers 503.
import {
  checkOtlpJson,
  decodeExportTraceServiceRequest,
  decodeMetricsJson,
  ExportMetricsServiceRequest,
  ExportTraceServiceRequest,
  flattenMetrics,
  type AttrValue,
  type DecodedMetric,
  type DecodedResourceSpans,
} from "./otlp-proto.ts";

export type ReceiverMode = "ok" | "hang" | "refuse" | "error";
const KINDS = ["UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"] as const;
const STATUS = ["UNSET", "OK", "ERROR"] as const;

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** "" for a root span. */
  parentSpanId: string;
  traceState: string;
  name: string;
  kind: (typeof KINDS)[number];
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: Record<string, AttrValue>;
  events: { name: string; timeUnixNano: bigint; attributes: Record<string, AttrValue> }[];
  status: { code: (typeof STATUS)[number]; message: string };
  resource: Record<string, AttrValue>;
  scope: { name: string; version: string };
}

export interface ExportRequestInfo {
  contentType: string;
  headers: Headers;
  spanCount: number;
}

/** One metrics export (POST /v1/metrics), in the order received. */
export interface MetricsExport {
  contentType: string;
  resource: Record<string, AttrValue>;
  metrics: Map<string, DecodedMetric>;
}

export interface OtlpReceiver {
  /** Full traces URL, e.g. http://127.0.0.1:PORT/v1/traces. */
  readonly url: string;
  /** Full metrics URL, e.g. http://127.0.0.1:PORT/v1/metrics. */
  readonly metricsUrl: string;
  readonly spans: ReceivedSpan[];
  readonly metricExports: MetricsExport[];
  /** Every POST that was decoded (in "ok" mode) or received (other modes). */
  readonly requests: ExportRequestInfo[];
  /** Resolves when at least `n` spans arrived; rejects after `timeoutMs` listing what did. */
  waitForSpans(n: number, timeoutMs?: number): Promise<ReceivedSpan[]>;
  /** Resolves when at least `n` export requests arrived (useful in "hang" mode). */
  waitForRequests(n: number, timeoutMs?: number): Promise<void>;
  /** Resolves when at least `n` metric exports arrived. */
  waitForMetricExports(n: number, timeoutMs?: number): Promise<MetricsExport[]>;
  clear(): void;
  stop(): Promise<void>;
}

export async function startOtlpReceiver(opts: { mode?: ReceiverMode } = {}): Promise<OtlpReceiver> {
  const mode = opts.mode ?? "ok";
  const spans: ReceivedSpan[] = [];
  const metricExports: MetricsExport[] = [];
  const requests: ExportRequestInfo[] = [];
  const waiters = new Set<() => void>();
  const hanging = new Set<(r: Response) => void>();
  const notify = () => {
    for (const w of waiters) w();
  };

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0, // "hang" must outlive the exporter's timeout, not Bun's default 10 s
    async fetch(req) {
      const path = new URL(req.url).pathname;
      const metrics = path === "/v1/metrics";
      if (req.method !== "POST" || (path !== "/v1/traces" && !metrics)) return new Response("not found", { status: 404 });
      const contentType = (req.headers.get("content-type") ?? "").split(";")[0]!.trim();
      if (mode === "hang") {
        requests.push({ contentType, headers: req.headers, spanCount: 0 });
        notify();
        return new Promise<Response>((resolve) => hanging.add(resolve));
      }
      if (mode === "error") {
        requests.push({ contentType, headers: req.headers, spanCount: 0 });
        notify();
        return new Response("unavailable", { status: 503 });
      }
      let body = new Uint8Array(await req.arrayBuffer());
      if (req.headers.get("content-encoding") === "gzip") body = Bun.gunzipSync(body);
      const json = contentType === "application/json";
      let decoded: ReceivedSpan[] = [];
      try {
        if (metrics) {
          const message = json
            ? decodeMetricsJson(JSON.parse(new TextDecoder().decode(body)))
            : ExportMetricsServiceRequest.toObject(ExportMetricsServiceRequest.decode(body), { longs: String, oneofs: true });
          metricExports.push({ contentType, ...flattenMetrics(message) });
        } else if (json) {
          const message = JSON.parse(new TextDecoder().decode(body));
          checkOtlpJson(ExportTraceServiceRequest, message);
          decoded = flattenJson(message);
        } else decoded = flatten(decodeExportTraceServiceRequest(body));
      } catch (err) {
        return new Response(`cannot decode: ${(err as Error).message}`, { status: 400 });
      }
      spans.push(...decoded);
      requests.push({ contentType, headers: req.headers, spanCount: decoded.length });
      notify();
      return contentType === "application/json"
        ? Response.json({})
        : new Response(new Uint8Array(0), { headers: { "content-type": "application/x-protobuf" } });
    },
  });
  const url = `http://127.0.0.1:${server.port}/v1/traces`;
  const metricsUrl = `http://127.0.0.1:${server.port}/v1/metrics`;
  if (mode === "refuse") await server.stop(true); // nothing listens on the port any more

  const waitFor = <T>(done: () => T | undefined, timeoutMs: number, what: () => string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const check = () => {
        const v = done();
        if (v === undefined) return;
        cleanup();
        resolve(v);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`otlp receiver: timed out after ${timeoutMs} ms waiting for ${what()}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  return {
    url,
    metricsUrl,
    spans,
    metricExports,
    requests,
    waitForSpans: (n, timeoutMs = 5000) =>
      waitFor(
        () => (spans.length >= n ? spans : undefined),
        timeoutMs,
        () => `${n} spans; got ${spans.length}: ${spans.map((s) => `${s.kind} ${s.name}`).join(", ") || "none"}`,
      ),
    waitForRequests: (n, timeoutMs = 5000) =>
      waitFor(() => (requests.length >= n ? true : undefined), timeoutMs, () => `${n} requests; got ${requests.length}`)
        .then(() => {}),
    waitForMetricExports: (n, timeoutMs = 5000) =>
      waitFor(
        () => (metricExports.length >= n ? metricExports : undefined),
        timeoutMs,
        () => `${n} metric exports; got ${metricExports.length}`,
      ),
    clear() {
      spans.length = 0;
      metricExports.length = 0;
      requests.length = 0;
    },
    async stop() {
      for (const resolve of hanging) resolve(new Response("bye", { status: 503 }));
      hanging.clear();
      if (mode !== "refuse") await server.stop(true);
    },
  };
}

function flatten(batches: DecodedResourceSpans[]): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of batches) {
    for (const sc of rs.scopes) {
      for (const s of sc.spans) {
        out.push({
          ...s,
          kind: KINDS[s.kind] ?? "UNSPECIFIED",
          status: { code: STATUS[s.status.code] ?? "UNSET", message: s.status.message },
          resource: rs.resource,
          scope: { name: sc.name, version: sc.version },
        });
      }
    }
  }
  return out;
}

// ---- OTLP/JSON (protobuf JSON mapping; ids are hex per the OTLP spec, base64 accepted too) ----

// deno-lint-ignore no-explicit-any
type Json = any;

function jsonId(v: unknown, bytes: number): string {
  if (typeof v !== "string" || v === "") return "";
  if (v.length === bytes * 2 && /^[0-9a-f]+$/i.test(v)) return v.toLowerCase();
  return Array.from(Buffer.from(v, "base64"), (x) => x.toString(16).padStart(2, "0")).join("");
}

function jsonValue(v: Json): AttrValue {
  if (v == null) return null;
  if ("stringValue" in v) return v.stringValue;
  if ("boolValue" in v) return v.boolValue;
  if ("intValue" in v) {
    const n = BigInt(v.intValue);
    return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
  }
  if ("doubleValue" in v) return Number(v.doubleValue);
  if ("arrayValue" in v) return (v.arrayValue.values ?? []).map(jsonValue);
  if ("kvlistValue" in v) return jsonAttrs(v.kvlistValue.values);
  if ("bytesValue" in v) return new Uint8Array(Buffer.from(v.bytesValue, "base64"));
  return null;
}

function jsonAttrs(list: Json[] | undefined): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const kv of list ?? []) out[kv.key] = jsonValue(kv.value);
  return out;
}

function flattenJson(req: Json): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of req.resourceSpans ?? []) {
    const resource = jsonAttrs(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      const scope = { name: ss.scope?.name ?? "", version: ss.scope?.version ?? "" };
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: jsonId(s.traceId, 16),
          spanId: jsonId(s.spanId, 8),
          parentSpanId: jsonId(s.parentSpanId, 8),
          traceState: s.traceState ?? "",
          name: s.name ?? "",
          kind: KINDS[Number(s.kind ?? 0)] ?? "UNSPECIFIED",
          startTimeUnixNano: BigInt(s.startTimeUnixNano ?? 0),
          endTimeUnixNano: BigInt(s.endTimeUnixNano ?? 0),
          attributes: jsonAttrs(s.attributes),
          events: (s.events ?? []).map((e: Json) => ({
            name: e.name ?? "",
            timeUnixNano: BigInt(e.timeUnixNano ?? 0),
            attributes: jsonAttrs(e.attributes),
          })),
          status: { code: STATUS[Number(s.status?.code ?? 0)] ?? "UNSET", message: s.status?.message ?? "" },
          resource,
          scope,
        });
      }
    }
  }
  return out;
}

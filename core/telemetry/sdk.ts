// The one place that wires the OpenTelemetry SDK: provider, sampler, batch processor, OTLP
// exporter, propagators. Loaded by `createTelemetry()` with a dynamic import, so a process with
// tracing off never evaluates any of it.
import { hostname } from "node:os";
import {
  type Counter,
  type Meter,
  type MeterProvider,
  type TextMapPropagator,
  createNoopMeter,
  diag,
  DiagLogLevel,
} from "@opentelemetry/api";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { B3InjectEncoding, B3Propagator } from "@opentelemetry/propagator-b3";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  type SpanExporter,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import { createOtlpNetworkExportDelegate, OTLPExporterBase } from "@opentelemetry/otlp-exporter-base";
import { convertLegacyHttpOptions, createOtlpHttpExporterMetrics } from "@opentelemetry/otlp-exporter-base/node-http";
import { JsonTraceSerializer, ProtobufTraceSerializer, TraceExporterMetricsHelper } from "@opentelemetry/otlp-transformer";
import type { ReadableSpan } from "@opentelemetry/sdk-trace";
import { EncodingBatchSpanProcessor } from "./otlp/batch.ts";
import { type EncodedSpans, encodeSpansRequest } from "./otlp/request.ts";
import { createFetchTransport, createUpstreamTransport, withRetries } from "./otlp/transport.ts";
import type { UpstreamClient } from "../upstream/client.ts";
import { SpanFactory } from "./otlp/factory.ts";
import { parseHeaders, type Env, type PropagatorName, type ResolvedTraces } from "./config.ts";
import type { TelemetryLogger, TelemetryOptions, TracingBackend } from "./types.ts";
import { throttle } from "../lib/throttle.ts";

// Name of the SDK's self-observability counter (semconv `otel.sdk.processor.span.processed`); the
// batch processor adds to it with error.type=queue_full for each span it drops.
const PROCESSED_METRIC = "otel.sdk.processor.span.processed";

export function startTracingBackend(cfg: ResolvedTraces, opts: TelemetryOptions): TracingBackend {
  if (opts.logger) routeDiagnostics(opts.logger);
  const env: Env = opts.env ?? (globalThis as { process?: { env: Env } }).process?.env ?? {};

  const drops = { queueFull: 0, exportFailed: 0 };
  const exporterOptions = {
    url: cfg.url,
    headers: cfg.headers,
    timeoutMillis: cfg.exportTimeoutMs,
    // One batch at a time in steady state, but a flush sends the whole queue at once: let it.
    concurrencyLimit: Math.ceil(cfg.maxQueueSize / cfg.maxExportBatchSize) + 1,
    upstreamClient: opts.upstreamClient,
  };
  const batchOptions = {
    maxQueueSize: cfg.maxQueueSize,
    maxExportBatchSize: cfg.maxExportBatchSize,
    scheduledDelayMillis: cfg.scheduledDelayMs,
    // A little above the exporter's own deadline so the exporter reports the failure itself.
    exportTimeoutMillis: cfg.exportTimeoutMs + 1000,
  };
  let processor: SpanProcessor;
  let exporter: { forceFlush?(): Promise<void> };
  if (cfg.protocol === "http/json") {
    // JSON is the SDK's own serializer, which reads ReadableSpans at export: the SDK's processor.
    const json = otlpJsonExporter(exporterOptions);
    exporter = json;
    processor = new BatchSpanProcessor({ exporter: json, ...batchOptions, selfObsMeterProvider: dropCountingMeterProvider(drops) });
  } else {
    // Protobuf: spans are encoded as they end and the queue holds bytes (core/telemetry/otlp/batch.ts).
    const proto = otlpProtoExporter(exporterOptions);
    exporter = proto;
    processor = new EncodingBatchSpanProcessor({
      exporter: proto,
      ...batchOptions,
      onLost: (reason, n) => void (reason === "queue_full" ? (drops.queueFull += n) : (drops.exportFailed += n)),
    });
  }

  const resource = resourceFromAttributes({
    ...parseHeaders(env.OTEL_RESOURCE_ATTRIBUTES),
    "service.name": cfg.serviceName,
    "service.version": opts.serviceVersion,
    "host.name": hostname(),
  });
  // The provider makes the plugins' spans; the request path's own spans come from the
  // SpanFactory (core/telemetry/otlp/factory.ts). Both end in the same batch processor, under the same
  // resource, and sample alike (the factory applies the same parent-based trace-id ratio test).
  const provider = new TracerProvider({ resource, sampler: sampler(cfg.sampleRatio), spanProcessors: [processor] });
  const scope = { name: "fulcrum", version: opts.serviceVersion };
  const spans = new SpanFactory({ sink: processor, resource, scope, sampleRatio: cfg.sampleRatio });

  const names = cfg.propagators;
  let shuttingDown: Promise<void> | undefined;
  return {
    spans,
    tracerFor: (name, version) => provider.getTracer(name, version),
    propagator: propagator(names),
    w3c: names.every((n) => n === "tracecontext" || n === "baggage") && names.includes("tracecontext")
      ? { baggage: names.includes("baggage") ? new W3CBaggagePropagator() : undefined }
      : undefined,
    droppedSpans: () => drops.queueFull + drops.exportFailed,
    // Once only: a second call (e.g. signal handler and test cleanup) gets the same outcome.
    // The processor's flush gives up at the first failed batch; waiting for the exporter's
    // in-flight requests too settles every span's fate (and the drop count) before we return.
    shutdown: (timeoutMs) => (shuttingDown ??= withTimeout(
      provider.shutdown().finally(() => exporter.forceFlush?.().catch(() => {})),
      timeoutMs,
      opts.logger,
    )),
  };
}

type ExporterOptions = {
  url: string;
  headers: Record<string, string>;
  timeoutMillis: number;
  concurrencyLimit: number;
  upstreamClient?: UpstreamClient;
};

/** The runtime's upstream client for a plain `http:` endpoint, else fetch (TLS, or no client of our own). */
function transport(config: Parameters<typeof createFetchTransport>[0], client: UpstreamClient | undefined) {
  const t = client !== undefined && /^http:/i.test(config.url) ? createUpstreamTransport(config, client) : createFetchTransport(config);
  return withRetries(t);
}

/**
 * The OTLP/HTTP exporter as @opentelemetry/exporter-trace-otlp-{proto,http} assemble it (the
 * same configuration merge with OTEL_EXPORTER_OTLP_* variables, concurrency limit, timeout,
 * partial-success logging and self-metrics), with two parts of ours: the protobuf encoding
 * (core/telemetry/otlp/request.ts, batches already encoded) and a transport of ours (core/telemetry/otlp/transport.ts:
 * the runtime's upstream client, or fetch) in place of node:http.
 */
function otlpProtoExporter(options: ExporterOptions): OTLPExporterBase<EncodedSpans> {
  const config = convertLegacyHttpOptions(options, "TRACES", "v1/traces", { "Content-Type": "application/x-protobuf" });
  const serializer = { serializeRequest: encodeSpansRequest, deserializeResponse: ProtobufTraceSerializer.deserializeResponse };
  const helper = { name: "span" as const, countItems: (b: EncodedSpans) => b.count };
  const metrics = createOtlpHttpExporterMetrics("otlp_http_span_exporter", helper, config.url, undefined);
  return new OTLPExporterBase(createOtlpNetworkExportDelegate(config, serializer, metrics, transport(config, options.upstreamClient)));
}

/** The same with the SDK's JSON serializer, for `protocol: http/json`. */
function otlpJsonExporter(options: ExporterOptions): SpanExporter {
  const config = convertLegacyHttpOptions(options, "TRACES", "v1/traces", { "Content-Type": "application/json" });
  const metrics = createOtlpHttpExporterMetrics("otlp_http_json_span_exporter", TraceExporterMetricsHelper, config.url, undefined);
  return new OTLPExporterBase<ReadableSpan[]>(
    createOtlpNetworkExportDelegate(config, JsonTraceSerializer, metrics, transport(config, options.upstreamClient)),
  );
}

function sampler(ratio: number): Sampler {
  const root = ratio >= 1 ? new AlwaysOnSampler() : ratio <= 0 ? new AlwaysOffSampler() : new TraceIdRatioBasedSampler(ratio);
  return new ParentBasedSampler({ root });
}

function propagator(names: PropagatorName[]): TextMapPropagator {
  const list: TextMapPropagator[] = [];
  // B3 first so that W3C, listed later, wins extraction when a request carries both.
  if (names.includes("b3")) list.push(new B3Propagator({ injectEncoding: B3InjectEncoding.SINGLE_HEADER }));
  if (names.includes("b3multi")) list.push(new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER }));
  if (names.includes("tracecontext")) list.push(new W3CTraceContextPropagator());
  if (names.includes("baggage")) list.push(new W3CBaggagePropagator());
  return list.length === 1 ? list[0]! : new CompositePropagator({ propagators: list });
}

/**
 * A MeterProvider that only listens to the batch processor's "processed" counter: queue-full drops
 * and failed exports are the spans lost. Everything else is the API's no-op meter.
 */
function dropCountingMeterProvider(drops: { queueFull: number; exportFailed: number }): MeterProvider {
  const base = createNoopMeter();
  const processed = {
    add(n: number, attrs?: Record<string, unknown>) {
      const errorType = attrs?.["error.type"];
      if (errorType === "queue_full") drops.queueFull += n;
      else if (errorType !== undefined) drops.exportFailed += n;
    },
  } as Counter;
  const meter: Meter = Object.create(base);
  meter.createCounter =
    ((name: string, o?: object) => name === PROCESSED_METRIC ? processed : base.createCounter(name, o)) as Meter["createCounter"];
  return { getMeter: () => meter };
}

let diagLogger: TelemetryLogger | undefined;
/** SDK warnings/errors go to our logger, at most one a minute: a dead collector fails every export. */
function routeDiagnostics(logger: TelemetryLogger): void {
  const first = diagLogger === undefined;
  diagLogger = logger;
  if (!first) return;
  const throttled = throttle(60_000, Date.now);
  const emit = (level: "warn" | "error") => (message: string, ...args: unknown[]) =>
    throttled((suppressed) => {
      const detail = args.length ? args.map((a) => (a instanceof Error ? a.message : String(a))).join(" ") : undefined;
      diagLogger?.[level](`opentelemetry: ${errorMessage(message)}`, { detail, suppressed_since_last: suppressed });
    });
  const noop = () => {};
  diag.setLogger(
    { error: emit("error"), warn: emit("warn"), info: noop, debug: noop, verbose: noop },
    { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
  );
}

// The SDK's global error handler logs exceptions as JSON; keep just their message.
function errorMessage(message: string): string {
  if (!message.startsWith("{")) return message;
  try {
    const parsed = JSON.parse(message) as { message?: unknown };
    return typeof parsed.message === "string" ? parsed.message : message;
  } catch {
    return message;
  }
}

async function withTimeout(p: Promise<void>, ms: number, logger?: TelemetryLogger): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(resolve, ms, "timeout")));
  try {
    const r = await Promise.race([p.then(() => "ok" as const), timedOut]);
    if (r === "timeout") logger?.warn("tracing: shutdown flush timed out; pending spans dropped", { timeout_ms: ms });
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    logger?.warn(`tracing: final span export failed: ${error}`, { error });
  } finally {
    clearTimeout(timer);
  }
}

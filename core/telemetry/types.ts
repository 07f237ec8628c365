// Types shared by tracing.ts and the modules it loads on demand with tracing on (sdk.ts, active.ts): here so that
// none imports another's module for them.
import type { Attributes, Context, Span, TextMapPropagator, Tracer } from "@opentelemetry/api";
import type { SpanFactory } from "./otlp/factory.ts";
import type { Env } from "./config.ts";
import type { UpstreamClient } from "../upstream/client.ts";

export interface TelemetryLogger {
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export interface TelemetryOptions {
  serviceVersion: string;
  logger?: TelemetryLogger;
  /** Environment for OTEL_* variables. @default process.env */
  env?: Env;
  /**
   * The runtime's own upstream HTTP/1.1 client (Bun's): span exports to an `http:` endpoint go
   * through it rather than `fetch`, which costs more per export. Absent: `fetch`.
   */
  upstreamClient?: UpstreamClient;
}

/** What `sdk.ts` hands back: the few objects the hot path needs. */
export interface TracingBackend {
  /** Starts the request's SERVER and CLIENT spans (sampling decided once per request). */
  spans: SpanFactory;
  /** The SDK's tracers, for plugins. */
  tracerFor(name: string, version?: string): Tracer;
  propagator: TextMapPropagator;
  /**
   * Set when the propagators are W3C only (tracecontext, optionally baggage): inject then writes
   * traceparent/tracestate itself, without building a context per request.
   */
  w3c?: { baggage: TextMapPropagator | undefined };
  droppedSpans(): number;
  shutdown(timeoutMs: number): Promise<void>;
}

/** A started SERVER or CLIENT span and the context that carries it (parent for children, source for inject). */
export interface SpanHandle {
  readonly span: Span;
  /** Whether the span records (is exported): `span.isRecording()` while it has not ended. */
  readonly sampled: boolean;
  readonly ctx: Context;
  /** The HTTP method (`_OTHER` when not a known one), reused by client spans of the same request. */
  readonly method: string;
  /** The method as sent, when `method` is `_OTHER` (http.request.method_original). */
  readonly methodOriginal?: string;
  /** The SERVER span's url.query (no `?`), when the request had a query: its CLIENT spans' url.full ends with it. */
  readonly query?: string;
}

/** Attributes of one upstream attempt. Callers may reuse one object per backend and mutate `attempt`/`url`. */
export interface ClientSpanAttrs {
  pool: string;
  /** Backend id. */
  backend: string;
  strategy: string;
  /** 1 for the first try, 2 for the first retry, ... */
  attempt: number;
  /** The upstream URL requested. */
  url: string;
  /** Why this attempt is a retry (e.g. "connect_error", "status_503"); omitted on attempt 1. */
  retryReason?: string;
  /** Backend host and port; parsed from `url` when absent (precompute them per backend to skip that). */
  host?: string;
  port?: number;
  /** Defaults to the server span's method. */
  method?: string;
}

/**
 * What the SERVER span reads of a request the proxy parsed itself: its headers are looked up in
 * the parsed list, so tracing does not build a `Headers` object per request.
 */
export interface RequestHead {
  readonly method: string;
  readonly url: string;
  /** Origin-form path and query, when known: read instead of `url`. */
  readonly target?: string;
  /** "1.0", "1.1" or "2", when the listener knows (network.protocol.version). */
  readonly protocolVersion?: string;
  /** The scheme the request came in on, with `target` (a web Request's is in its `url`). */
  readonly proto?: "http" | "https";
  /** A header's value, several joined with ", " as `Headers.get` does; null when absent. `name` is lowercase. */
  header(name: string): string | null;
  /** On a TLS listener: the negotiated version (`TLSv1.3`) and cipher. */
  tlsInfo?(): { readonly protocol: string; readonly cipher: string } | undefined;
}

export interface Telemetry {
  /** False when tracing is off: every method below is then a no-op returning undefined. */
  readonly enabled: boolean;
  /** Starts the SERVER span, continuing an incoming traceparent/tracestate (and B3 if enabled). */
  startServerSpan(request: Request | RequestHead, route: string, clientIp: string): SpanHandle | undefined;
  /** Starts a CLIENT span for one upstream attempt. Build `attrs` only when `parent` is defined. */
  startClientSpan(parent: SpanHandle | undefined, attrs: ClientSpanAttrs): SpanHandle | undefined;
  /** Writes traceparent/tracestate (and B3, baggage when enabled) for `span` into the upstream headers. */
  inject(span: SpanHandle | undefined, headers: Headers | Record<string, string>): void;
  /** Ends a CLIENT span; 4xx/5xx, or `error`, mark it ERROR. `status` 0 means no response. */
  endClient(span: SpanHandle | undefined, status: number, error?: unknown): void;
  /** Ends the SERVER span; 5xx, or `error`, mark it ERROR. */
  endServer(span: SpanHandle | undefined, status: number, error?: unknown): void;
  /** Adds a span event (health flip, breaker transition, ...). */
  addEvent(span: SpanHandle | undefined, name: string, attributes?: Attributes): void;
  /** trace_id/span_id for the access log; undefined unless the span is sampled. */
  ids(span: SpanHandle | undefined): { trace_id: string; span_id: string } | undefined;
  /** The root context (the API's ROOT_CONTEXT) with tracing on: the parent of a plugin's span outside a request. */
  readonly rootContext?: Context;
  /** A tracer for plugins; parent their spans with `span.ctx`. No-op tracer when tracing is off. */
  tracer(name: string, version?: string): Tracer;
  /** Spans lost: queue full, or their export failed. */
  droppedSpans(): number;
  /** Flushes pending spans, giving up after `timeoutMs` (a dead collector must not block shutdown). */
  shutdown(timeoutMs?: number): Promise<void>;
}

/** SpanKind's values (as @opentelemetry/api numbers them), for code that must not load the API. */
export const SPAN_KIND_INTERNAL = 0;

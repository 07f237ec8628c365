// The tracing API the proxy calls on every request. Only `@opentelemetry/api` is imported here;
// the SDK and exporters live in `sdk.ts`, loaded by `createTelemetry()` only when tracing
// is on. Contexts are passed explicitly (no AsyncLocalStorage): cheaper, and nothing global.
// The request's spans are core/telemetry/otlp/spans.ts's: an unsampled request costs one small object and
// its traceparent string; a sampled one two spans whose attributes are set in one literal each.
import {
  type Context,
  type Span,
  type Tracer,
  type TextMapGetter,
  type TextMapSetter,
  type Attributes,
  ROOT_CONTEXT,
  INVALID_SPAN_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type { RecordedSpan, UnsampledSpan } from "./otlp/spans.ts";
import { DEFAULT_KNOWN_METHODS, resolveTraces, type Env, type TelemetryConfig } from "./config.ts";
import type { TelemetryOptions, TracingBackend } from "./types.ts";

export type { TelemetryConfig, PropagatorName, TraceProtocol } from "./config.ts";
export type { TelemetryLogger, TelemetryOptions, TracingBackend } from "./types.ts";
export { resolveTraces, parseHeaders } from "./config.ts";

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
  /** A tracer for plugins; parent their spans with `span.ctx`. No-op tracer when tracing is off. */
  tracer(name: string, version?: string): Tracer;
  /** Spans lost: queue full, or their export failed. */
  droppedSpans(): number;
  /** Flushes pending spans, giving up after `timeoutMs` (a dead collector must not block shutdown). */
  shutdown(timeoutMs?: number): Promise<void>;
}

/** A handle from startServerSpan/startClientSpan: our spans are their own handles. */
type LeanHandle = (RecordedSpan | UnsampledSpan) & SpanHandle;

// Our own no-op rather than the global provider's, which is a proxy that would follow a later global.
const INVALID_SPAN = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
const NOOP_TRACER = {
  startSpan: () => INVALID_SPAN,
  startActiveSpan: (...args: unknown[]) => (args[args.length - 1] as (s: Span) => unknown)(INVALID_SPAN),
} as unknown as Tracer;

/** The tracing-off implementation: shared, stateless, allocation-free. */
export const NOOP_TELEMETRY: Telemetry = Object.freeze({
  enabled: false,
  startServerSpan: () => undefined,
  startClientSpan: () => undefined,
  inject: () => {},
  endClient: () => {},
  endServer: () => {},
  addEvent: () => {},
  ids: () => undefined,
  tracer: () => NOOP_TRACER,
  droppedSpans: () => 0,
  shutdown: () => Promise.resolve(),
});

/**
 * Builds the telemetry for this process. Call once at start-up. Returns {@link NOOP_TELEMETRY}
 * (and loads no SDK code) when tracing is off.
 */
export async function createTelemetry(config: TelemetryConfig | undefined, opts: TelemetryOptions): Promise<Telemetry> {
  const env = opts.env ?? (globalThis as { process?: { env: Env } }).process?.env ?? {};
  const resolved = resolveTraces(config, env);
  if (!resolved) return NOOP_TELEMETRY;
  const { startTracingBackend } = await import("./sdk.ts");
  const backend = startTracingBackend(resolved, opts);
  return createActiveTelemetry(backend, resolved.knownMethods);
}

const headersGetter: TextMapGetter<Headers> = {
  get: (h, key) => h.get(key) ?? undefined,
  keys: (h) => Array.from(h.keys()),
};
const headGetter: TextMapGetter<RequestHead> = {
  get: (r, key) => r.header(key) ?? undefined,
  // Only the generic propagators' field lists are read, never the carrier's keys.
  keys: () => [],
};
const headersSetter: TextMapSetter<Headers> = { set: (h, k, v) => h.set(k, v) };
const recordSetter: TextMapSetter<Record<string, string>> = { set: (r, k, v) => void (r[k] = v) };

/**
 * The tracing-on implementation over the SDK's pieces (sdk.ts). A method outside `knownMethods`
 * is recorded as `_OTHER` with `http.request.method_original`, and its spans are named `HTTP …`.
 */
export function createActiveTelemetry(backend: TracingBackend, knownMethods: ReadonlySet<string> = DEFAULT_KNOWN_METHODS): Telemetry {
  const { spans, propagator, w3c } = backend;

  function injectInto(h: LeanHandle, headers: Headers | Record<string, string>): void {
    if (w3c === undefined) {
      if (headers instanceof Headers) propagator.inject(h.ctx, headers, headersSetter);
      else propagator.inject(h.ctx, headers, recordSetter);
      return;
    }
    // What W3CTraceContextPropagator writes, without a context object to read it from.
    const made = h.traceparent;
    const traceparent = made !== "" ? made : "00-" + h.traceId + "-" + h.spanId + (h.traceFlags === 1 ? "-01" : "-00");
    const tracestate = h.traceState?.serialize();
    if (headers instanceof Headers) {
      headers.set("traceparent", traceparent);
      if (tracestate) headers.set("tracestate", tracestate);
    } else {
      headers.traceparent = traceparent;
      if (tracestate) headers.tracestate = tracestate;
    }
    // Baggage comes only from the incoming request (nothing here adds any).
    if (w3c.baggage !== undefined && h.requestCtx !== ROOT_CONTEXT) {
      if (headers instanceof Headers) w3c.baggage.inject(h.requestCtx, headers, headersSetter);
      else w3c.baggage.inject(h.requestCtx, headers, recordSetter);
    }
  }

  return {
    enabled: true,

    startServerSpan(request, route, clientIp) {
      const web = request instanceof Request ? request.headers : undefined;
      const head = request as RequestHead;
      const requestCtx = web !== undefined
        ? propagator.extract(ROOT_CONTEXT, web, headersGetter)
        : propagator.extract(ROOT_CONTEXT, head, headGetter);
      const span = spans.start(requestCtx, trace.getSpanContext(requestCtx), SpanKind.SERVER);
      // Name and attributes only for spans that will be exported: unsampled requests stay cheap.
      if (span.sampled) {
        const rec = span as RecordedSpan;
        const sent = request.method;
        const known = knownMethods.has(sent);
        const method = known ? sent : "_OTHER";
        rec.method = method;
        // The proxy's own request has its target and Host at hand; a web Request has its URL.
        const target = web !== undefined ? undefined : head.target;
        const url = target ?? request.url;
        const https = target === undefined ? url.charCodeAt(4) === 115 /* https: */ : head.proto === "https";
        // Path and query from the string's own indexes: no URL object, and no string at all for an absent query.
        const schemeEnd = target !== undefined ? -3 : url.indexOf("://");
        const pathStart = url.indexOf("/", schemeEnd + 3);
        let end = pathStart < 0 ? -1 : url.indexOf("#", pathStart);
        if (end < 0) end = url.length;
        const q = pathStart < 0 ? -1 : url.indexOf("?", pathStart);
        const pathEnd = q >= 0 && q < end ? q : end;
        const attrs: Attributes = {
          "http.request.method": method,
          "url.path": pathStart < 0 ? "/" : url.slice(pathStart, pathEnd),
          "url.scheme": https ? "https" : "http",
          "client.address": clientIp,
        };
        if (pathEnd < end) attrs["url.query"] = rec.query = url.slice(pathEnd + 1, end);
        const host = web !== undefined ? web.get("host") ?? authorityOf(url) : head.header("host");
        if (host) {
          attrs["server.address"] = stripPort(host);
          const port = portOf(host, https ? 443 : 80);
          if (port >= 0) attrs["server.port"] = port;
        }
        if (target !== undefined && head.protocolVersion !== undefined) attrs["network.protocol.version"] = head.protocolVersion;
        if (route) attrs["http.route"] = route;
        if (!known) attrs["http.request.method_original"] = rec.methodOriginal = sent;
        const ua = web !== undefined ? web.get("user-agent") : head.header("user-agent");
        if (ua) attrs["user_agent.original"] = ua;
        const tls = web === undefined ? head.tlsInfo?.() : undefined;
        if (tls !== undefined) {
          attrs["tls.protocol.name"] = "tls";
          attrs["tls.protocol.version"] = tls.protocol.replace(/^TLSv/, "");
          attrs["tls.cipher"] = tls.cipher;
        }
        // No route matched (404): the span is named by the method alone, as semconv says.
        rec.init(route ? (known ? method : "HTTP") + " " + route : known ? method : "HTTP", attrs);
      }
      return span;
    },

    startClientSpan(parent, a) {
      if (parent === undefined) return undefined;
      // Unsampled trace: nothing is exported, so the upstream can carry the server span's context
      // (sampled flag off) and we skip creating a second non-recording span.
      if (!parent.sampled) return parent;
      let method = parent.method;
      let original = parent.methodOriginal;
      if (a.method !== undefined) {
        const known = knownMethods.has(a.method);
        method = known ? a.method : "_OTHER";
        original = known ? undefined : a.method;
      }
      const span = spans.child(parent as RecordedSpan & SpanHandle, SpanKind.CLIENT);
      span.method = method;
      let host = a.host;
      let port = a.port;
      if (host === undefined || port === undefined) {
        const u = safeUrl(a.url);
        host ??= u ? u.hostname.replace(/^\[|\]$/g, "") : "";
        port ??= u ? Number(u.port) || (u.protocol === "https:" ? 443 : 80) : 0;
      }
      const attrs: Attributes = {
        "http.request.method": method,
        "url.full": a.url,
        "server.address": host,
        "server.port": port,
        "network.peer.address": host,
        "network.peer.port": port,
        "fulcrum.pool": a.pool,
        "fulcrum.backend": a.backend,
        "fulcrum.strategy": a.strategy,
        "fulcrum.attempt": a.attempt,
      };
      if (original !== undefined) attrs["http.request.method_original"] = span.methodOriginal = original;
      if (a.attempt > 1) {
        attrs["http.request.resend_count"] = a.attempt - 1;
        if (a.retryReason) attrs["fulcrum.retry_reason"] = a.retryReason;
      }
      // An unknown method is named HTTP, as for the SERVER span.
      return span.init((original === undefined ? method : "HTTP") + " " + a.pool, attrs);
    },

    inject(h, headers) {
      if (h !== undefined) injectInto(h as LeanHandle, headers);
    },

    endClient(h, status, error) {
      if (h === undefined) return;
      end(h.span, status, error, 400);
    },

    endServer(h, status, error) {
      if (h === undefined) return;
      end(h.span, status, error, 500);
    },

    addEvent(h, name, attributes) {
      if (h !== undefined) h.span.addEvent(name, attributes);
    },

    ids(h) {
      if (h === undefined) return undefined;
      const s = h as LeanHandle;
      if (!s.sampled) return undefined;
      return { trace_id: s.traceId, span_id: s.spanId };
    },

    tracer: (name, version) => backend.tracerFor(name, version),
    droppedSpans: () => backend.droppedSpans(),
    shutdown: (timeoutMs = 5000) => backend.shutdown(timeoutMs),
  };
}

// Semconv: CLIENT spans are errors from 400 up, SERVER spans from 500 up (a 4xx is the client's fault).
function end(span: Span, status: number, error: unknown, errorFrom: number): void {
  // An unsampled span has nothing to record and nothing to end.
  if (!span.isRecording()) return;
  if (status > 0) span.setAttribute("http.response.status_code", status);
  if (error !== undefined) {
    const err = error instanceof Error ? error : new Error(String(error));
    span.recordException(err);
    span.setAttribute("error.type", err.name === "Error" ? (err as { code?: string }).code ?? "Error" : err.name);
    span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
  } else if (status >= errorFrom) {
    span.setAttribute("error.type", String(status));
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
  span.end();
}

function authorityOf(url: string): string {
  const start = url.indexOf("://");
  if (start < 0) return "";
  const end = url.indexOf("/", start + 3);
  return end < 0 ? url.slice(start + 3) : url.slice(start + 3, end);
}

/** The port of a Host value (`h:8080`, `[::1]:8080`), else the scheme's default; -1 when not a port. */
export function portOf(host: string, defaultPort: number): number {
  const from = host.charCodeAt(0) === 91 /* [ */ ? host.indexOf("]") : 0;
  const colon = host.indexOf(":", from < 0 ? 0 : from);
  if (colon < 0 || colon === host.length - 1) return defaultPort;
  let n = 0;
  for (let i = colon + 1; i < host.length; i++) {
    const d = host.charCodeAt(i) - 48;
    if (d < 0 || d > 9 || (n = n * 10 + d) > 65535) return -1;
  }
  return n;
}

function stripPort(host: string): string {
  if (host.charCodeAt(0) === 91 /* [ */) {
    const close = host.indexOf("]");
    return close > 0 ? host.slice(1, close) : host;
  }
  const colon = host.indexOf(":");
  return colon < 0 ? host : host.slice(0, colon);
}

function safeUrl(s: string): URL | undefined {
  try {
    return new URL(s);
  } catch {
    return undefined;
  }
}

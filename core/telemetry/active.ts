// The tracing-on implementation of the Telemetry interface, loaded with the SDK (sdk.ts) by
// createTelemetry only when tracing is on: @opentelemetry/api's values stay off the start path otherwise.
import {
  type Attributes,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type { RecordedSpan, UnsampledSpan } from "./otlp/spans.ts";
import { DEFAULT_KNOWN_METHODS } from "./config.ts";
import { authorityOf, portOf, stripPort } from "./host-port.ts";
import type { RequestHead, SpanHandle, Telemetry, TracingBackend } from "./types.ts";

/** A handle from startServerSpan/startClientSpan: our spans are their own handles. */
type LeanHandle = (RecordedSpan | UnsampledSpan) & SpanHandle;

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
    rootContext: ROOT_CONTEXT,

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

function safeUrl(s: string): URL | undefined {
  try {
    return new URL(s);
  } catch {
    return undefined;
  }
}

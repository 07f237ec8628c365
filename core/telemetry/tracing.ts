// The tracing API the proxy calls on every request: its types, and the tracing-off implementation
// ({@link NOOP_TELEMETRY}), which needs nothing of `@opentelemetry/api` at run time. With tracing on,
// createTelemetry loads the SDK and exporters (sdk.ts) and the implementation over them (active.ts).
// Contexts are passed explicitly (no AsyncLocalStorage): cheaper, and nothing global.
// The request's spans are core/telemetry/otlp/spans.ts's: an unsampled request costs one small object and
// its traceparent string; a sampled one two spans whose attributes are set in one literal each.
import type { Span, SpanContext, Tracer } from "@opentelemetry/api";
import { resolveTraces, type Env, type TelemetryConfig } from "./config.ts";
import type { Telemetry, TelemetryOptions } from "./types.ts";

export type { TelemetryConfig, PropagatorName, TraceProtocol } from "./config.ts";
export type { ClientSpanAttrs, RequestHead, SpanHandle, Telemetry, TelemetryLogger, TelemetryOptions, TracingBackend } from "./types.ts";
export { resolveTraces, parseHeaders } from "./config.ts";
export { portOf } from "./host-port.ts";

// Our own no-op rather than the global provider's, which is a proxy that would follow a later global;
// and our own non-recording span (what the API's INVALID_SPAN is), so tracing off loads no API code.
const INVALID_SPAN_CONTEXT: SpanContext = Object.freeze({
  traceId: "00000000000000000000000000000000",
  spanId: "0000000000000000",
  traceFlags: 0,
});
const INVALID_SPAN: Span = {
  spanContext: () => INVALID_SPAN_CONTEXT,
  setAttribute: () => INVALID_SPAN,
  setAttributes: () => INVALID_SPAN,
  addEvent: () => INVALID_SPAN,
  addLink: () => INVALID_SPAN,
  addLinks: () => INVALID_SPAN,
  setStatus: () => INVALID_SPAN,
  updateName: () => INVALID_SPAN,
  end: () => {},
  isRecording: () => false,
  recordException: () => {},
};
Object.freeze(INVALID_SPAN);
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
  const [{ startTracingBackend }, { createActiveTelemetry }] = await Promise.all([import("./sdk.ts"), import("./active.ts")]);
  const backend = startTracingBackend(resolved, opts);
  return createActiveTelemetry(backend, resolved.knownMethods);
}

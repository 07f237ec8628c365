// Types shared by tracing.ts and the SDK wiring it loads on demand (sdk.ts): here so that neither imports the other's module for them.
import type { TextMapPropagator, Tracer } from "@opentelemetry/api";
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

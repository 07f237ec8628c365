// Starts the request path's spans: the sampling decision (parent-based, else the trace-id ratio) is made here, once, before any span object is built.
import { type Context, type SpanContext, type SpanKind, trace } from "@opentelemetry/api";
import type { ReadableSpan } from "@opentelemetry/sdk-trace";
import type { Resource } from "@opentelemetry/resources";
import { newRoot, newSpanId, ratioUpperBound } from "./ids.ts";
import { RecordedSpan, type SpanSink, UnsampledSpan } from "./spans.ts";

export interface SpanFactoryOptions {
  sink: SpanSink;
  resource: Resource;
  /** Instrumentation scope of the request-path spans. */
  scope: ReadableSpan["instrumentationScope"];
  /** Probability of keeping a new trace (the SDK's TraceIdRatioBasedSampler test). */
  sampleRatio: number;
}

/**
 * Starts request-path spans. The sampling decision is made once, here, before anything else is
 * built: parent-based (a valid parent's sampled flag is obeyed, remote or local), else the
 * trace-id ratio.
 */
export class SpanFactory {
  readonly #bound: number;
  constructor(readonly opts: SpanFactoryOptions) {
    this.#bound = ratioUpperBound(opts.sampleRatio);
  }

  /** A span under `parent` (the span context in `requestCtx`), or the root of a new trace when it is invalid. */
  start(requestCtx: Context, parent: SpanContext | undefined, kind: SpanKind): RecordedSpan | UnsampledSpan {
    const o = this.opts;
    if (parent !== undefined && trace.isSpanContextValid(parent)) {
      const traceId = parent.traceId;
      const traceState = parent.traceState;
      if ((parent.traceFlags & 1) !== 1) return new UnsampledSpan(traceId, newSpanId(), traceState, requestCtx);
      return new RecordedSpan(traceId, newSpanId(), traceState, requestCtx, kind, parent, o.resource, o.scope, o.sink, false);
    }
    // A new trace: its ids and traceparent in one string; the ratio test (keepsTraceId) set its flag.
    const tp = newRoot(this.#bound);
    const traceId = tp.slice(3, 35);
    const spanId = tp.slice(36, 52);
    const span = tp.charCodeAt(54) === 49
      ? new RecordedSpan(traceId, spanId, undefined, requestCtx, kind, undefined, o.resource, o.scope, o.sink, true)
      : new UnsampledSpan(traceId, spanId, undefined, requestCtx);
    span.traceparent = tp;
    return span;
  }

  /** A child of a recording span of ours (a CLIENT span under the SERVER span): always sampled. */
  child(parent: RecordedSpan, kind: SpanKind): RecordedSpan {
    const o = this.opts;
    const span = new RecordedSpan(
      parent.traceId,
      newSpanId(),
      parent.traceState,
      parent.requestCtx,
      kind,
      parent,
      o.resource,
      o.scope,
      o.sink,
      false,
    );
    span.anchorTo(parent);
    span.ownTrace = parent.ownTrace;
    span.t0 = parent.t0;
    span.t1 = parent.t1;
    span.t2 = parent.t2;
    span.t3 = parent.t3;
    return span;
  }
}

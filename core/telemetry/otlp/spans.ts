// The spans of the request path (SERVER and CLIENT), recorded without the SDK's Tracer. Measured on
// Bun: the SDK's startSpan + setAttributes + end costs ~1.7 µs a span (two attribute-cleaning
// passes, hrtime arrays, self-metrics objects, a context copy); this costs a fraction of it, and an
// unsampled request allocates one object instead of a span, a span context and two contexts.
// Finished spans are ReadableSpans handed to the batch span processor (core/telemetry/otlp/batch.ts for
// protobuf, the SDK's for JSON), the same one plugin spans from the SDK's Tracer end in.
// Only `@opentelemetry/api` is imported at run time; sdk.ts loads this module (through factory.ts).
// Ids and sampling are in ids.ts, span creation in factory.ts.
import {
  type Attributes,
  type AttributeValue,
  type Context,
  type Exception,
  type HrTime,
  type Link,
  type Span,
  type SpanContext,
  type SpanStatus,
  type TimeInput,
  type TraceState,
  type SpanKind,
  diag,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type { ReadableSpan, TimedEvent } from "@opentelemetry/sdk-trace";
import type { Resource } from "@opentelemetry/resources";
import { sw0, sw1, tw0, tw1, tw2, tw3 } from "./ids.ts";

/** Where ended spans go: the SDK's span processor. */
export interface SpanSink {
  onEnd(span: ReadableSpan): void;
}

/** The SDK's default limits, which the SDK's own spans get too. */
const ATTRIBUTE_COUNT_LIMIT = 128;
const EVENT_COUNT_LIMIT = 128;
const LINK_COUNT_LIMIT = 128;

/** At least the number of keys in what {@link RecordedSpan.init} is given (the request path's literals have up to 12). */
const INIT_ATTRIBUTES_MAX = 16;

const EMPTY_EVENTS: TimedEvent[] = [];
const EMPTY_LINKS: Link[] = [];
const UNSET_STATUS: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET });

/** Epoch milliseconds (with fractions) to [seconds, nanoseconds], as the SDK's millisToHrTime. */
function toHrTime(ms: number): HrTime {
  const s = Math.floor(ms / 1000);
  let ns = Math.round((ms - s * 1000) * 1e6);
  if (ns >= 1e9) return [s + 1, ns - 1e9];
  if (ns < 0) ns = 0;
  return [s, ns];
}

/** The SDK's reading of a TimeInput: performance.now() timestamps, epoch ms, Date, or HrTime. */
function timeInputToMs(t: TimeInput): number {
  if (typeof t === "number") return t <= performance.now() ? t + performance.timeOrigin : t;
  if (t instanceof Date) return t.getTime();
  if (Array.isArray(t)) return t[0] * 1000 + t[1] / 1e6;
  return Date.now();
}

function isAttributeValue(v: unknown): v is AttributeValue {
  const t = typeof v;
  if (t === "string" || t === "number" || t === "boolean") return true;
  if (!Array.isArray(v)) return false;
  let type: string | undefined;
  for (const x of v) {
    if (x == null) continue;
    const xt = typeof x;
    if (xt !== "string" && xt !== "number" && xt !== "boolean") return false;
    if (type === undefined) type = xt;
    else if (type !== xt) return false;
  }
  return true;
}

/** Copies the valid attributes of a plugin- or caller-given object, as the SDK's cleanAttributes does. */
function cleanAttributes(attrs: Attributes | undefined): Attributes {
  const out: Attributes = {};
  if (!attrs) return out;
  for (const k in attrs) {
    if (!Object.prototype.hasOwnProperty.call(attrs, k) || k.length === 0) continue;
    const v = attrs[k];
    if (isAttributeValue(v)) out[k] = Array.isArray(v) ? (v.slice() as AttributeValue) : v;
  }
  return out;
}

/** What both span classes share: they are their own span context and their own request-path handle. */
abstract class LeanSpan {
  // SpanContext fields (spanContext() returns the span itself: one object, not two).
  readonly traceId: string;
  readonly spanId: string;
  readonly traceState: TraceState | undefined;
  readonly isRemote = false;
  /** The HTTP method, reused by the client spans of the same request. */
  method = "";
  /**
   * The W3C traceparent when the span's ids were made with it (the root span of a new trace,
   * ids.ts newRoot(); the ids are its slices), else "": inject() then builds it.
   */
  traceparent = "";
  #ctx: Context | undefined;
  /**
   * Handle API: the span itself, and whether it records. Fields, not a getter and isRecording():
   * JSC compiled those calls for the class it had seen (unsampled), and each sampled span made
   * the compiled code exit until it was recompiled.
   */
  readonly span: this;
  abstract readonly sampled: boolean;

  /**
   * `requestCtx` is the context extracted from the incoming request (remote parent, baggage);
   * a child span shares its parent's.
   */
  constructor(traceId: string, spanId: string, traceState: TraceState | undefined, readonly requestCtx: Context) {
    this.traceId = traceId;
    this.spanId = spanId;
    this.traceState = traceState;
    this.span = this;
  }
  abstract readonly traceFlags: number;

  spanContext(): SpanContext {
    return this;
  }
  /** The context carrying this span (for plugin children and the generic propagators); built on first use. */
  get ctx(): Context {
    return (this.#ctx ??= trace.setSpan(this.requestCtx, this as unknown as Span));
  }
}

/**
 * An unsampled request's span: it only carries the trace id and a span id for `traceparent`
 * (flag 00), as W3C propagation requires. Every recording method is a no-op.
 */
export class UnsampledSpan extends LeanSpan implements Span {
  readonly traceFlags = 0;
  readonly sampled = false;
  setAttribute(): this {
    return this;
  }
  setAttributes(): this {
    return this;
  }
  addEvent(): this {
    return this;
  }
  addLink(): this {
    return this;
  }
  addLinks(): this {
    return this;
  }
  setStatus(): this {
    return this;
  }
  updateName(): this {
    return this;
  }
  end(): void {}
  isRecording(): boolean {
    return false;
  }
  recordException(): void {}
}

/** A sampled span; a ReadableSpan once ended. */
export class RecordedSpan extends LeanSpan implements Span, ReadableSpan {
  readonly traceFlags = 1;
  readonly sampled = true;
  name = "";
  attributes: Attributes = {};
  events: TimedEvent[] = EMPTY_EVENTS;
  links: Link[] = EMPTY_LINKS;
  status: SpanStatus = UNSET_STATUS;
  /** The method as sent when `method` is `_OTHER`; the request's query (SERVER span). See SpanHandle. */
  methodOriginal: string | undefined = undefined;
  query: string | undefined = undefined;
  droppedAttributesCount = 0;
  droppedEventsCount = 0;
  droppedLinksCount = 0;
  /** Wall-clock start (ms since the epoch), read from {@link RecordedSpan.anchorTo}'s clock. */
  startMs: number;
  /**
   * The clock: wall time at the trace's local root and the monotonic time then, as the SDK's
   * AnchoredClock. With a Date.now() of its own (whole milliseconds) a child could appear to
   * start before or end after its parent by up to 1 ms.
   */
  #anchorMs: number;
  #anchorPerf: number;
  /** Epoch ms at end; -1 while recording. */
  endMs = -1;
  /**
   * An upper bound of the attributes held, counted exactly only when it reaches the limit: the
   * request path sets few, and counting its literal's keys on every span cost a for-in loop.
   */
  #count = 0;
  /**
   * The ids as 32-bit words (int32: the same bits), for the encoder: trace id words (`ownTrace`
   * false when the trace id came from elsewhere, as hex) and span id words.
   */
  ownTrace = false;
  t0 = 0;
  t1 = 0;
  t2 = 0;
  t3 = 0;
  s0 = 0;
  s1 = 0;

  /** `spanId` must be the id newSpanId() made last; the trace id words are taken when `ownTrace`. */
  constructor(
    traceId: string,
    spanId: string,
    traceState: TraceState | undefined,
    requestCtx: Context,
    readonly kind: SpanKind,
    readonly parentSpanContext: SpanContext | undefined,
    readonly resource: Resource,
    readonly instrumentationScope: ReadableSpan["instrumentationScope"],
    readonly sink: SpanSink,
    ownTrace: boolean,
  ) {
    super(traceId, spanId, traceState, requestCtx);
    this.#anchorPerf = performance.now();
    this.#anchorMs = this.startMs = Date.now();
    this.s0 = sw0;
    this.s1 = sw1;
    if (ownTrace) {
      this.ownTrace = true;
      this.t0 = tw0;
      this.t1 = tw1;
      this.t2 = tw2;
      this.t3 = tw3;
    }
  }

  /** A child of a span of ours reads its parent's clock (called right after construction). */
  anchorTo(parent: RecordedSpan): void {
    const startedAt = this.#anchorPerf;
    this.#anchorMs = parent.#anchorMs;
    this.#anchorPerf = parent.#anchorPerf;
    this.startMs = this.#anchorMs + (startedAt - this.#anchorPerf);
  }

  /** Name and attributes in one step, for the request path: `attributes` is taken as is (trusted values, not copied). */
  init(name: string, attributes: Attributes): this {
    this.name = name;
    this.attributes = attributes;
    this.#count = INIT_ATTRIBUTES_MAX;
    return this;
  }

  #now(): number {
    return this.#anchorMs + (performance.now() - this.#anchorPerf);
  }

  get startTime(): HrTime {
    return toHrTime(this.startMs);
  }
  get endTime(): HrTime {
    return this.endMs < 0 ? [0, 0] : toHrTime(this.endMs);
  }
  get duration(): HrTime {
    if (this.endMs < 0) return [-1, -1];
    const d = this.endMs - this.startMs;
    const s = Math.floor(d / 1000);
    return [s, Math.round((d - s * 1000) * 1e6)];
  }
  get ended(): boolean {
    return this.endMs >= 0;
  }

  isRecording(): boolean {
    return this.endMs < 0;
  }

  setAttribute(key: string, value: AttributeValue | undefined): this {
    if (this.endMs >= 0 || key.length === 0 || value == null) return this;
    if (!isAttributeValue(value)) {
      diag.warn(`Invalid attribute value set for key: ${key}`);
      return this;
    }
    const attrs = this.attributes;
    if (!Object.prototype.hasOwnProperty.call(attrs, key)) {
      if (this.#count >= ATTRIBUTE_COUNT_LIMIT) {
        let exact = 0;
        for (const _ in attrs) exact++;
        this.#count = exact;
        if (exact >= ATTRIBUTE_COUNT_LIMIT) {
          if (this.droppedAttributesCount++ === 0) diag.warn("Dropping extra attributes.");
          return this;
        }
      }
      this.#count++;
    }
    attrs[key] = value;
    return this;
  }

  setAttributes(attributes: Attributes): this {
    for (const k in attributes) if (Object.prototype.hasOwnProperty.call(attributes, k)) this.setAttribute(k, attributes[k]);
    return this;
  }

  addEvent(name: string, attributesOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.endMs >= 0) return this;
    let attributes: Attributes | undefined;
    if (attributesOrTime instanceof Date || typeof attributesOrTime === "number" || Array.isArray(attributesOrTime)) {
      time ??= attributesOrTime;
    } else attributes = attributesOrTime;
    if (this.events === EMPTY_EVENTS) this.events = [];
    else if (this.events.length >= EVENT_COUNT_LIMIT) {
      this.events.shift();
      this.droppedEventsCount++;
    }
    this.events.push({
      name,
      time: toHrTime(time === undefined ? this.#now() : timeInputToMs(time)),
      attributes: cleanAttributes(attributes),
      droppedAttributesCount: 0,
    });
    return this;
  }

  addLink(link: Link): this {
    if (this.endMs >= 0) return this;
    if (this.links === EMPTY_LINKS) this.links = [];
    else if (this.links.length >= LINK_COUNT_LIMIT) {
      this.links.shift();
      this.droppedLinksCount++;
    }
    this.links.push({ context: link.context, attributes: cleanAttributes(link.attributes), droppedAttributesCount: 0 });
    return this;
  }

  addLinks(links: Link[]): this {
    for (const l of links) this.addLink(l);
    return this;
  }

  // As the SDK: UNSET is ignored, OK is final, a message is kept only for ERROR.
  setStatus(status: SpanStatus): this {
    if (this.endMs >= 0 || status.code === SpanStatusCode.UNSET || this.status.code === SpanStatusCode.OK) return this;
    this.status = status.code === SpanStatusCode.ERROR && typeof status.message === "string"
      ? { code: status.code, message: status.message }
      : { code: status.code };
    return this;
  }

  updateName(name: string): this {
    if (this.endMs < 0) this.name = name;
    return this;
  }

  // The SDK's "exception" event: exception.type (code or name), exception.message, exception.stacktrace.
  recordException(exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {};
    if (typeof exception === "string") attributes["exception.message"] = exception;
    else if (exception) {
      if (exception.code) attributes["exception.type"] = String(exception.code);
      else if (exception.name) attributes["exception.type"] = exception.name;
      if (exception.message) attributes["exception.message"] = exception.message;
      if (exception.stack) attributes["exception.stacktrace"] = exception.stack;
    }
    if (attributes["exception.type"] || attributes["exception.message"]) this.addEvent("exception", attributes, time);
    else diag.warn(`Failed to record an exception ${String(exception)}`);
  }

  end(endTime?: TimeInput): void {
    if (this.endMs >= 0) {
      diag.error(`${this.name} ${this.traceId}-${this.spanId} - You can only call end() on a span once.`);
      return;
    }
    const end = endTime === undefined ? this.#now() : timeInputToMs(endTime);
    this.endMs = end < this.startMs ? this.startMs : end;
    this.sink.onEnd(this);
  }
}

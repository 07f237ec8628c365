// The request path's own spans (core/telemetry/otlp/spans.ts, factory.ts, ids.ts), protobuf encoder (core/telemetry/otlp/request.ts, messages.ts, writer.ts) and
// export transport (core/telemetry/otlp/transport.ts), checked against the OpenTelemetry libraries they
// stand in for: the encoder must write exactly the bytes of @opentelemetry/otlp-transformer's
// ProtobufTraceSerializer, the span factory must sample as the SDK's ParentBased(TraceIdRatioBased)
// sampler does, and the transport must retry, fail and compress as otlp-exporter-base's does.
import { afterEach, describe, expect, test } from "bun:test";
import {
  ROOT_CONTEXT,
  SamplingDecision,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
  type Attributes,
  type SpanContext,
} from "@opentelemetry/api";
import { ExportResultCode, TraceState } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { TraceIdRatioBasedSampler, TracerProvider, type ReadableSpan } from "@opentelemetry/sdk-trace";
import { EncodedSpans, encodeSpansRequest, releaseRequest } from "../../core/telemetry/otlp/request.ts";
import { EncodingBatchSpanProcessor } from "../../core/telemetry/otlp/batch.ts";
import { keepsTraceId, newSpanId, newTraceId, ratioUpperBound } from "../../core/telemetry/otlp/ids.ts";
import { RecordedSpan } from "../../core/telemetry/otlp/spans.ts";
import { SpanFactory } from "../../core/telemetry/otlp/factory.ts";
import { createTelemetry } from "../../core/telemetry/tracing.ts";
import { bunUpstreamClient } from "../../core/runtime/bun.ts";
import type { UpstreamClient } from "../../core/upstream/client.ts";
import { decodeExportTraceServiceRequest, hex } from "../helpers/otlp-proto.ts";
import { startOtlpReceiver } from "../helpers/otlp-receiver.ts";

let cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

const REMOTE: SpanContext = {
  traceId: "0af7651916cd43dd8448eb211c80319c",
  spanId: "b7ad6b7169203331",
  traceFlags: TraceFlags.SAMPLED,
  traceState: new TraceState("vendor=abc,other=1"),
  isRemote: true,
};
const resource = resourceFromAttributes({
  "service.name": "fulcrum",
  "service.version": "1.2.3",
  "host.name": "box",
  "deployment.environment": "tëst",
});

function factory(sampleRatio = 1) {
  const ended: ReadableSpan[] = [];
  const spans = new SpanFactory({
    sink: { onEnd: (s) => ended.push(s) },
    resource,
    scope: { name: "fulcrum", version: "1.2.3" },
    sampleRatio,
  });
  return { spans, ended };
}

const libraryBytes = (spans: ReadableSpan[]) => Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!);
/** The batch processor's path: each span encoded as it ends, the request assembled at export. */
const ourBytes = (spans: ReadableSpan[]) => {
  const batch = new EncodedSpans();
  for (const s of spans) batch.add(s);
  expect(batch.count).toBe(spans.length);
  return Buffer.from(encodeSpansRequest(batch));
};

describe("EncodedSpans and encodeSpansRequest()", () => {
  test("writes the library's bytes for the request path's spans: remote parent, tracestate, events, status, all attribute types", () => {
    const { spans, ended } = factory();
    const requestCtx = trace.setSpanContext(ROOT_CONTEXT, REMOTE);
    const server = spans.start(requestCtx, REMOTE, SpanKind.SERVER) as RecordedSpan;
    server.init("GET */ → web", { "http.request.method": "GET", "url.path": "/ünï/😀", "client.address": "10.0.0.9" });
    const attrs: Attributes = {
      "a.string": "x",
      "a.empty": "",
      "a.long": "l".repeat(300), // a KeyValue longer than 127 bytes: its length takes two bytes
      "a.lone_surrogate": "x\ud800y", // TextEncoder writes U+FFFD
      "a.int": 42,
      "a.zero": 0,
      "a.negative": -7,
      "a.big": 2 ** 40 + 3,
      "a.double": 3.25,
      "a.bool": true,
      "a.false": false,
      "a.strings": ["a", "b"],
      "a.numbers": [1, 2.5, -3],
      "a.bools": [true, false],
      "a.with_null": ["a", null as unknown as string, "c"],
    };
    const client = spans.child(server, SpanKind.CLIENT).init("GET web", attrs);
    client.setAttribute("http.response.status_code", 503);
    client.addEvent("fulcrum.circuit_transition", { from: "closed", to: "open", "fulcrum.backend": "b1" });
    client.recordException(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }));
    client.setStatus({ code: SpanStatusCode.ERROR, message: "connect ECONNREFUSED" });
    client.addLink({ context: { ...REMOTE, isRemote: false }, attributes: { why: "retry of" } });
    client.end();
    server.setStatus({ code: SpanStatusCode.OK });
    server.end();
    expect(ended).toHaveLength(2);
    expect(ourBytes(ended)).toEqual(libraryBytes(ended));

    // And what a collector reads back from it.
    const [rs] = decodeExportTraceServiceRequest(ourBytes(ended));
    expect(rs!.resource).toEqual({
      "service.name": "fulcrum",
      "service.version": "1.2.3",
      "host.name": "box",
      "deployment.environment": "tëst",
    });
    const [scope] = rs!.scopes;
    expect(scope!.name).toBe("fulcrum");
    expect(scope!.version).toBe("1.2.3");
    const [c, s] = scope!.spans;
    expect(s!.traceId).toBe(REMOTE.traceId);
    expect(s!.parentSpanId).toBe(REMOTE.spanId);
    expect(s!.traceState).toBe("vendor=abc,other=1");
    expect(s!.name).toBe("GET */ → web");
    expect(s!.kind).toBe(2); // SERVER
    expect(s!.attributes["url.path"]).toBe("/ünï/😀");
    expect(s!.status.code).toBe(1); // OK
    expect(c!.parentSpanId).toBe(server.spanId);
    expect(c!.kind).toBe(3); // CLIENT
    expect(c!.attributes).toMatchObject({
      "a.big": 2 ** 40 + 3,
      "a.negative": -7,
      "a.double": 3.25,
      "a.numbers": [1, 2.5, -3],
      "a.with_null": ["a", null, "c"],
    });
    expect(c!.attributes["a.lone_surrogate"]).toBe("x\ufffdy");
    expect(c!.events.map((e) => e.name)).toEqual(["fulcrum.circuit_transition", "exception"]);
    expect(c!.events[1]!.attributes).toMatchObject({ "exception.type": "ECONNREFUSED", "exception.message": "connect ECONNREFUSED" });
    expect(c!.status).toEqual({ code: 2, message: "connect ECONNREFUSED" });
    expect(c!.startTimeUnixNano).toBeGreaterThanOrEqual(s!.startTimeUnixNano);
    expect(c!.endTimeUnixNano).toBeLessThanOrEqual(s!.endTimeUnixNano);
    expect(Number(s!.startTimeUnixNano / 1_000_000n)).toBeWithin(Date.now() - 5000, Date.now() + 1);
  });

  test("writes the library's bytes for the SDK's own spans, several resources and scopes, dropped counts and huge spans", () => {
    const batch: ReadableSpan[] = [];
    const collect = { onStart() {}, onEnd: (s: ReadableSpan) => batch.push(s), forceFlush: async () => {}, shutdown: async () => {} };
    const limits = { attributeCountLimit: 3, eventCountLimit: 1, linkCountLimit: 1 };
    const p1 = new TracerProvider({ resource, spanProcessors: [collect], spanLimits: limits });
    const p2 = new TracerProvider({ resource: resourceFromAttributes({ "service.name": "other" }), spanProcessors: [collect] });
    const plugin = p1.getTracer("my-plugin", "0.1.0");
    const s1 = plugin.startSpan("lookup", { kind: SpanKind.INTERNAL, attributes: { a: 1, b: 2, c: 3, d: 4, e: 5 } });
    s1.addEvent("one");
    s1.addEvent("two", { n: 2 });
    s1.addLinks([{ context: REMOTE }, { context: REMOTE, attributes: { x: "y" } }]);
    s1.end();
    p1.getTracer("unversioned").startSpan("bare").end();
    p1.getTracer("with-schema", "2", { schemaUrl: "https://opentelemetry.io/schemas/1.26.0" }).startSpan("schema").end();
    const huge = p2.getTracer("t").startSpan("huge", { attributes: { blob: "z".repeat(20_000) } }); // a 3-byte span length
    huge.end();
    const { spans, ended } = factory();
    spans.start(ROOT_CONTEXT, undefined, SpanKind.SERVER).end(); // a root span of ours, unnamed, no attributes
    batch.push(...ended);
    expect(batch.map((s) => s.droppedAttributesCount)).toEqual([2, 0, 0, 0, 0]);
    expect(batch[0]!.droppedEventsCount).toBe(1);
    expect(batch[0]!.droppedLinksCount).toBe(1);
    expect(ourBytes(batch)).toEqual(libraryBytes(batch));
    const decoded = decodeExportTraceServiceRequest(ourBytes(batch));
    expect(decoded.map((r) => r.resource["service.name"])).toEqual(["fulcrum", "other"]);
    expect(decoded[0]!.scopes.map((s) => s.name)).toEqual(["my-plugin", "unversioned", "with-schema", "fulcrum"]);
    expect(decoded[1]!.scopes[0]!.spans[0]!.attributes.blob).toHaveLength(20_000);
  });

  test("writes the library's bytes for values the Attributes type does not allow but resources and hand-made spans carry", () => {
    const { spans, ended } = factory();
    const s = spans.start(ROOT_CONTEXT, undefined, SpanKind.PRODUCER) as RecordedSpan;
    // Taken as is by init(): bytes, nested objects, non-finite and unsafe numbers.
    s.init("odd", {
      bytes: new Uint8Array([0, 1, 255]),
      nested: { k: "v", n: 1, deeper: { list: [1, "two"] } },
      nan: NaN,
      inf: -Infinity,
      unsafe: 2 ** 63,
      min: -(2 ** 63),
    } as unknown as Attributes).end();
    expect(ourBytes(ended)).toEqual(libraryBytes(ended));
    const span = decodeExportTraceServiceRequest(ourBytes(ended))[0]!.scopes[0]!.spans[0]!;
    expect(hex(span.attributes.bytes as Uint8Array)).toBe("0001ff");
    expect(span.attributes.nested).toEqual({ k: "v", n: 1, deeper: { list: [1, "two"] } });
  });

  test("a batch larger than its buffer grows it, and the request is a copy the next batch (reusing the buffers) does not overwrite", () => {
    const { spans, ended } = factory();
    for (let i = 0; i < 1000; i++) {
      // Roots of new traces and their children: ids written from their words, not their hex.
      const root = (spans.start(ROOT_CONTEXT, undefined, SpanKind.SERVER) as RecordedSpan).init("s", { big: "b".repeat(400), i });
      spans.child(root, SpanKind.CLIENT).init("c", { i }).end();
      root.end();
    }
    const batch = new EncodedSpans();
    for (const s of ended) batch.add(s); // 2000 spans: the group's buffer grows many times
    const first = encodeSpansRequest(batch);
    const copy = Buffer.from(first);
    expect(copy).toEqual(libraryBytes(ended));
    batch.release();
    const next = new EncodedSpans();
    for (const s of ended.slice(0, 3)) next.add(s);
    encodeSpansRequest(next);
    expect(Buffer.from(first)).toEqual(copy);
  });

  test("a request's buffer is written over only once given back (releaseRequest), and given back once however often it is released", () => {
    const { spans, ended } = factory();
    for (let i = 0; i < 3; i++) spans.start(ROOT_CONTEXT, undefined, SpanKind.SERVER).end();
    const request = (from: ReadableSpan[]) => {
      const batch = new EncodedSpans();
      for (const s of from) batch.add(s);
      const out = encodeSpansRequest(batch);
      batch.release();
      return out;
    };
    // Take whatever earlier exports in this process gave back, so the spares start empty.
    const held = Array.from({ length: 5 }, () => request(ended));
    expect(new Set(held.map((r) => r.buffer)).size).toBe(5);
    const a = request(ended.slice(0, 1));
    const aBytes = Buffer.from(a);
    const b = request(ended.slice(1, 2)); // a is still held: b must not be written into it
    expect(b.buffer).not.toBe(a.buffer);
    expect(Buffer.from(a)).toEqual(aBytes);
    releaseRequest(new Uint8Array(100_000)); // not the encoder's: ignored
    releaseRequest(a);
    releaseRequest(a);
    const c = request(ended);
    expect(c.buffer).toBe(a.buffer);
    expect(Buffer.from(c)).toEqual(libraryBytes(ended));
    const d = request(ended); // a was given back once, and c holds it now
    expect(d.buffer).not.toBe(c.buffer);
    expect(d.buffer).not.toBe(b.buffer);
  });
});

describe("EncodingBatchSpanProcessor (the protobuf export queue)", () => {
  type Exported = { count: number; names: string[] };
  function processor(opts: { maxExportBatchSize: number; maxQueueSize?: number }) {
    const exported: Exported[] = [];
    let finish: (() => void)[] = [];
    const lost: string[] = [];
    const p = new EncodingBatchSpanProcessor({
      exporter: {
        // Each export completes when the test says so.
        export: (batch, done) => {
          const spans = decodeExportTraceServiceRequest(encodeSpansRequest(batch)).flatMap((r) => r.scopes.flatMap((s) => s.spans));
          exported.push({ count: batch.count, names: spans.map((s) => s.name) });
          finish.push(() => done({ code: ExportResultCode.SUCCESS }));
        },
        shutdown: async () => {},
      },
      maxQueueSize: opts.maxQueueSize ?? 2048,
      maxExportBatchSize: opts.maxExportBatchSize,
      scheduledDelayMillis: 60_000,
      exportTimeoutMillis: 10_000,
      onLost: (reason) => lost.push(reason),
    });
    const spans = new SpanFactory({ sink: p, resource, scope: { name: "fulcrum" }, sampleRatio: 1 });
    const end = (name: string) => (spans.start(ROOT_CONTEXT, undefined, SpanKind.SERVER) as RecordedSpan).init(name, { name }).end();
    const settle = async () => {
      const f = finish;
      finish = [];
      for (const done of f) done();
      for (let i = 0; i < 5; i++) await Promise.resolve();
    };
    return { p, spans, end, exported, lost, settle };
  }

  test("queued spans are held as bytes: the span objects can be collected before their export", async () => {
    const { p, spans, exported, settle } = processor({ maxExportBatchSize: 512 });
    const refs: WeakRef<object>[] = [];
    (() => {
      for (let i = 0; i < 100; i++) {
        const s = (spans.start(ROOT_CONTEXT, undefined, SpanKind.SERVER) as RecordedSpan).init(`s${i}`, { i });
        refs.push(new WeakRef(s));
        s.end();
      }
    })();
    Bun.gc(true);
    // A queue of span objects would keep all 100; a stray conservative stack reference may keep a few.
    expect(refs.filter((r) => r.deref() !== undefined).length).toBeLessThan(10);
    const flushed = p.forceFlush();
    expect(exported).toEqual([{ count: 100, names: Array.from({ length: 100 }, (_, i) => `s${i}`) }]);
    await settle();
    await flushed;
  });

  test("a full batch leaves at once, one export at a time; the rest waits for the timer or a flush, in order", async () => {
    const { p, end, exported, settle } = processor({ maxExportBatchSize: 3 });
    for (let i = 0; i < 7; i++) end(`s${i}`);
    // The first full batch is exporting; the second waits for it to finish.
    expect(exported.map((e) => e.names)).toEqual([["s0", "s1", "s2"]]);
    await settle();
    expect(exported.map((e) => e.names)).toEqual([["s0", "s1", "s2"], ["s3", "s4", "s5"]]);
    await settle();
    expect(exported).toHaveLength(2); // one span left: it waits for the 60 s timer
    const flushed = p.forceFlush();
    expect(exported.map((e) => e.names)[2]).toEqual(["s6"]);
    await settle();
    await flushed;
  });

  test("a span that cannot be encoded is counted lost, and its batch's bytes stay the library's for the others", async () => {
    const { spans, end, lost } = processor({ maxExportBatchSize: 512 });
    const make = (name: string) => (spans.start(ROOT_CONTEXT, undefined, SpanKind.SERVER) as RecordedSpan).init(name, { name });
    // A span of another scope whose attribute getter throws while it is encoded.
    const bad = make("bad");
    Object.defineProperty(bad, "instrumentationScope", { value: { name: "other" } });
    Object.defineProperty(bad.attributes, "boom", {
      enumerable: true,
      get: () => {
        throw new Error("boom");
      },
    });
    end("a");
    bad.end(); // through the processor: the request that ended it is not failed
    expect(lost).toEqual(["export_failed"]);

    const { spans: other, ended: good } = factory(); // ended spans collected, not processed
    for (const name of ["before", "after"])
      (other.start(ROOT_CONTEXT, undefined, SpanKind.SERVER) as RecordedSpan).init(name, { name }).end();
    const batch = new EncodedSpans();
    batch.add(good[0]!);
    expect(() => batch.add(bad)).toThrow("boom");
    batch.add(good[1]!);
    expect(batch.count).toBe(2);
    // No empty ScopeSpans left for the failed span's scope.
    expect(Buffer.from(encodeSpansRequest(batch))).toEqual(libraryBytes(good));
  });

  test("an export that throws while encoding fails its batch, and its spans are counted lost once", async () => {
    const lost: [string, number][] = [];
    const p = new EncodingBatchSpanProcessor({
      exporter: {
        export: () => {
          throw new Error("encoder broke");
        },
        shutdown: async () => {},
      },
      maxQueueSize: 100,
      maxExportBatchSize: 10,
      scheduledDelayMillis: 60_000,
      exportTimeoutMillis: 60_000,
      onLost: (reason, n) => lost.push([reason, n]),
    });
    const spans = new SpanFactory({ sink: p, resource, scope: { name: "fulcrum" }, sampleRatio: 1 });
    for (let i = 0; i < 3; i++) spans.start(ROOT_CONTEXT, undefined, SpanKind.SERVER).end();
    await expect(p.forceFlush()).rejects.toThrow("encoder broke");
    expect(lost).toEqual([["export_failed", 3]]);
  });

  test("beyond max_queue_size spans are dropped and reported; the queue counts only spans not yet exporting", async () => {
    const { end, exported, lost, settle } = processor({ maxExportBatchSize: 2, maxQueueSize: 4 });
    for (let i = 0; i < 10; i++) end(`s${i}`);
    // s0–s1 exporting, s2–s5 queued (4), s6–s9 dropped.
    expect(exported.map((e) => e.count)).toEqual([2]);
    expect(lost).toEqual(["queue_full", "queue_full", "queue_full", "queue_full"]);
    await settle();
    await settle();
    await settle();
    expect(exported.map((e) => e.names).flat()).toEqual(["s0", "s1", "s2", "s3", "s4", "s5"]);
  });
});

describe("SpanFactory sampling", () => {
  test("a child reads its parent's clock: it never starts before or ends after it, whatever Date.now()'s millisecond steps", () => {
    const { spans } = factory();
    const realNow = Date.now;
    try {
      // The wall clock ticks to the next millisecond between the two starts, though microseconds passed.
      Date.now = () => 1_800_000_000_000;
      const server = spans.start(ROOT_CONTEXT, undefined, SpanKind.SERVER) as RecordedSpan;
      Date.now = () => 1_800_000_000_001;
      const client = spans.child(server, SpanKind.CLIENT);
      client.end();
      server.end();
      expect(client.startMs).toBeGreaterThanOrEqual(server.startMs);
      expect(client.startMs - server.startMs).toBeLessThan(0.5);
      expect(client.endMs).toBeLessThanOrEqual(server.endMs);
    } finally {
      Date.now = realNow;
    }
  });

  test("a request-path span holds at most 128 attributes, as the SDK's do: later new keys are dropped and counted, existing keys still change", () => {
    for (const initial of [0, 3, 12]) {
      const { spans, ended } = factory();
      const span = spans.start(ROOT_CONTEXT, undefined, SpanKind.SERVER) as RecordedSpan;
      const attrs: Attributes = {};
      for (let i = 0; i < initial; i++) attrs[`init.${i}`] = i;
      if (initial > 0) span.init("GET /", attrs);
      for (let i = 0; i < 130; i++) span.setAttribute(`extra.${i}`, i);
      span.setAttribute("extra.0", "changed");
      if (initial > 0) span.setAttribute("init.0", "changed");
      span.end();
      const kept = ended[0]!.attributes;
      expect(Object.keys(kept).length).toBe(128);
      expect(ended[0]!.droppedAttributesCount).toBe(initial + 2);
      expect(kept["extra.0"]).toBe("changed");
      expect(kept[`extra.${127 - initial}`]).toBe(127 - initial);
      expect(kept[`extra.${128 - initial}`]).toBeUndefined();
      if (initial > 0) expect(kept["init.0"]).toBe("changed");
    }
  });

  test("a new trace is kept exactly when the SDK's TraceIdRatioBasedSampler keeps its trace id", () => {
    for (const ratio of [0, 0.01, 0.3, 0.5, 1]) {
      const sdk = new TraceIdRatioBasedSampler(ratio);
      const { spans } = factory(ratio);
      let kept = 0;
      for (let i = 0; i < 3000; i++) {
        const s = spans.start(ROOT_CONTEXT, undefined, SpanKind.SERVER);
        const sdkKeeps = sdk.shouldSample(ROOT_CONTEXT, s.traceId).decision === SamplingDecision.RECORD_AND_SAMPLED;
        expect(s.isRecording()).toBe(sdkKeeps);
        expect(keepsTraceId(s.traceId, ratioUpperBound(ratio))).toBe(sdkKeeps);
        if (sdkKeeps) kept++;
      }
      if (ratio === 0) expect(kept).toBe(0);
      if (ratio === 1) expect(kept).toBe(3000);
      if (ratio === 0.5) expect(kept).toBeWithin(1300, 1700);
    }
  });

  test("a valid parent's sampled flag decides, whatever the ratio; its trace id and tracestate are kept", () => {
    const sampledAtZero = factory(0).spans.start(ROOT_CONTEXT, REMOTE, SpanKind.SERVER);
    expect(sampledAtZero.isRecording()).toBe(true);
    expect(sampledAtZero.traceId).toBe(REMOTE.traceId);
    expect((sampledAtZero as RecordedSpan).parentSpanContext).toBe(REMOTE);
    const unsampled = factory(1).spans.start(ROOT_CONTEXT, { ...REMOTE, traceFlags: TraceFlags.NONE }, SpanKind.SERVER);
    expect(unsampled.isRecording()).toBe(false);
    expect(unsampled.spanContext()).toMatchObject({ traceId: REMOTE.traceId, traceFlags: 0, traceState: REMOTE.traceState });
    expect(unsampled.spanId).not.toBe(REMOTE.spanId);
    // An invalid parent (all-zero ids) starts a new trace.
    const invalid = factory(1).spans.start(
      ROOT_CONTEXT,
      { traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 1 },
      SpanKind.SERVER,
    );
    expect(invalid.traceId).not.toBe("0".repeat(32));
  });

  test("ids are lowercase hex of the W3C lengths and never all zero", () => {
    for (let i = 0; i < 1000; i++) {
      expect(newTraceId()).toMatch(/^[0-9a-f]{32}$/);
      expect(newSpanId()).toMatch(/^[0-9a-f]{16}$/);
    }
    expect(new Set(Array.from({ length: 1000 }, newTraceId)).size).toBe(1000);
  });

  test("a new trace's root span carries its traceparent, made with its ids: the same ids and its sampled flag", () => {
    const traceIds = new Set<string>();
    for (const ratio of [0, 0.5, 1]) {
      const { spans } = factory(ratio);
      for (let i = 0; i < 500; i++) {
        const s = spans.start(ROOT_CONTEXT, undefined, SpanKind.SERVER);
        expect(s.traceId).toMatch(/^[0-9a-f]{32}$/);
        expect(s.spanId).toMatch(/^[0-9a-f]{16}$/);
        expect(s.traceId).not.toBe("0".repeat(32));
        expect(s.traceparent).toBe(`00-${s.traceId}-${s.spanId}-0${s.isRecording() ? 1 : 0}`);
        traceIds.add(s.traceId);
      }
    }
    expect(traceIds.size).toBe(1500);
    // Spans under a parent build theirs at inject (the remote parent's trace id, a child's own span id).
    expect(factory(1).spans.start(ROOT_CONTEXT, REMOTE, SpanKind.SERVER).traceparent).toBe("");
  });
});

describe("the request path's spans through Telemetry", () => {
  const request = (headers: Record<string, string> = {}) =>
    new Request("http://example.com/x", { headers: { host: "example.com", ...headers } });

  test("an unsampled request is one non-recording span: traceparent 00 and the incoming baggage go upstream, no ids, nothing exported", async () => {
    const tel = await createTelemetry({ traces: { endpoint: "http://127.0.0.1:9/v1/traces", sample_ratio: 0 } }, {
      serviceVersion: "1",
      env: {},
    });
    const server = tel.startServerSpan(request({ baggage: "tenant=a" }), "api", "10.0.0.1")!;
    expect(server.span.isRecording()).toBe(false);
    expect(tel.startClientSpan(server, { pool: "p", backend: "b", strategy: "s", attempt: 1, url: "http://b/" })).toBe(server);
    const headers: Record<string, string> = {};
    tel.inject(server, headers);
    expect(headers.traceparent).toBe(`00-${server.span.spanContext().traceId}-${server.span.spanContext().spanId}-00`);
    expect(headers.baggage).toBe("tenant=a");
    expect(tel.ids(server)).toBeUndefined();
    tel.endServer(server, 200);
    await tel.shutdown(100);
  });

  test("inject writes what the W3C propagators write (Headers and records, tracestate, baggage) for a sampled request", async () => {
    const tel = await createTelemetry({ traces: { endpoint: "http://127.0.0.1:9/v1/traces" } }, { serviceVersion: "1", env: {} });
    const server = tel.startServerSpan(
      request({ traceparent: `00-${REMOTE.traceId}-${REMOTE.spanId}-01`, tracestate: "vendor=abc", baggage: "k=v" }),
      "api",
      "10.0.0.1",
    )!;
    const client = tel.startClientSpan(server, { pool: "p", backend: "b", strategy: "s", attempt: 1, url: "http://b:81/" })!;
    const h = new Headers();
    tel.inject(client, h);
    const rec: Record<string, string> = {};
    tel.inject(client, rec);
    const sc = client.span.spanContext();
    expect(Object.fromEntries(h)).toEqual({
      traceparent: `00-${REMOTE.traceId}-${sc.spanId}-01`,
      tracestate: "vendor=abc",
      baggage: "k=v",
    });
    expect(rec).toEqual(Object.fromEntries(h));
    expect(tel.ids(server)).toEqual({ trace_id: REMOTE.traceId, span_id: server.span.spanContext().spanId });
    // The context handed to plugins carries the span and the incoming baggage.
    expect(trace.getSpanContext(server.ctx)?.spanId).toBe(server.span.spanContext().spanId);
    tel.endClient(client, 200);
    tel.endServer(server, 200);
    await tel.shutdown(100);
  });
});

// Both transports: fetch, and the runtime's own upstream client (Bun's, for plain http: endpoints),
// counted so that a test can tell which one sent.
let upstreamSends = 0;
const countingClient: UpstreamClient = (target, options) => {
  const agent = bunUpstreamClient(target, options);
  return { send: (req) => (upstreamSends++, agent.send(req)), destroy: () => agent.destroy() };
};
for (const [name, upstreamClient] of [["fetch", undefined], ["the runtime's upstream client", countingClient]] as const) {
  describe(`the export transport (${name})`, () => {
    /** A collector answering each export with the next of `statuses` (then 200), counting requests and connections. */
    function scripted(statuses: { status: number; headers?: Record<string, string>; body?: Uint8Array }[], holdUntil = 0) {
      const bodies: Uint8Array[] = [];
      const heads: Headers[] = [];
      // With holdUntil, no reply leaves before that many exports have arrived: they are all in flight at once.
      const held: (() => void)[] = [];
      const ports = new Set<number>();
      let waiter: { n: number; resolve: () => void } | undefined;
      const server = Bun.serve({
        hostname: "127.0.0.1",
        port: 0,
        async fetch(req, srv) {
          ports.add(srv.requestIP(req)!.port);
          heads.push(req.headers);
          bodies.push(new Uint8Array(await req.arrayBuffer()));
          if (waiter !== undefined && bodies.length >= waiter.n) waiter.resolve();
          if (bodies.length < holdUntil) await new Promise<void>((resolve) => held.push(resolve));
          else for (const release of held.splice(0)) release();
          const next = statuses.shift() ?? { status: 200 };
          return new Response((next.body as Uint8Array<ArrayBuffer> | undefined) ?? (next.status === 200 ? new Uint8Array(0) : "no"), next);
        },
      });
      cleanups.push(() => server.stop(true));
      /** Resolves once `n` exports have arrived. */
      const arrived = (n: number) => (bodies.length >= n ? Promise.resolve() : new Promise<void>((resolve) => (waiter = { n, resolve })));
      return { url: `http://127.0.0.1:${server.port}/v1/traces`, port: server.port, bodies, heads, ports, arrived };
    }
    const telemetry = (traces: Record<string, unknown>) => createTelemetry({ traces }, { serviceVersion: "1", env: {}, upstreamClient });
    const oneSpan = (tel: Awaited<ReturnType<typeof createTelemetry>>) =>
      tel.endServer(tel.startServerSpan(new Request("http://h/x"), "api", "10.0.0.1"), 200);

    test("a 503 with Retry-After is retried and the retry delivers the batch; nothing is counted lost", async () => {
      const c = scripted([{ status: 503, headers: { "retry-after": "0" } }, { status: 429, headers: { "retry-after": "0" } }]);
      const tel = await telemetry({ endpoint: c.url, scheduled_delay: 10 });
      oneSpan(tel);
      await tel.shutdown(3000);
      expect(c.bodies).toHaveLength(3);
      expect(Buffer.from(c.bodies[2]!)).toEqual(Buffer.from(c.bodies[0]!));
      expect(decodeExportTraceServiceRequest(c.bodies[2]!)[0]!.scopes[0]!.spans).toHaveLength(1);
      expect(tel.droppedSpans()).toBe(0);
    });

    test("a 400 fails the export at once (no retry) and its spans are counted lost", async () => {
      const c = scripted([{ status: 400 }]);
      const tel = await telemetry({ endpoint: c.url, scheduled_delay: 10 });
      oneSpan(tel);
      oneSpan(tel);
      await tel.shutdown(3000);
      expect(c.bodies).toHaveLength(1);
      expect(tel.droppedSpans()).toBe(2);
    });

    test("a reply body over 4 MiB fails the export (the library's limit) and its spans are counted lost", async () => {
      const c = scripted([{ status: 200, body: new Uint8Array(4 * 1024 * 1024 + 1) }]);
      const tel = await telemetry({ endpoint: c.url, scheduled_delay: 10 });
      oneSpan(tel);
      await tel.shutdown(3000);
      expect(c.bodies).toHaveLength(1);
      expect(tel.droppedSpans()).toBe(1);
    });

    test("exports one after another share one keep-alive connection, each body whole", async () => {
      upstreamSends = 0;
      const c = scripted([]);
      const tel = await telemetry({ endpoint: c.url, scheduled_delay: 10_000 });
      // Four full batches: the processor sends each once the one before has its reply. Each body
      // (~80 KB) is larger than the client's reused buffer, so it leaves in a write of its own.
      for (let j = 0; j < 4 * 512; j++) oneSpan(tel);
      await c.arrived(4);
      await tel.shutdown(3000);
      expect(Math.min(...c.bodies.map((b) => b.length))).toBeGreaterThan(64 * 1024);
      expect(c.ports.size).toBe(1);
      expect(c.bodies.map((b) => decodeExportTraceServiceRequest(b)[0]!.scopes[0]!.spans.length)).toEqual([512, 512, 512, 512]);
      expect(upstreamSends).toBe(upstreamClient === undefined ? 0 : 4);
      expect(tel.droppedSpans()).toBe(0);
    });

    test("a flush sends every batch at once, each export with its own buffer: every span arrives exactly once", async () => {
      const c = scripted([], 10); // the ten exports are all in flight before any is answered
      const tel = await telemetry({ endpoint: c.url, scheduled_delay: 60_000, max_export_batch_size: 100, max_queue_size: 2000 });
      for (let j = 0; j < 1000; j++) oneSpan(tel);
      await tel.shutdown(5000);
      expect(c.bodies).toHaveLength(10);
      const ids = c.bodies.flatMap((b) => decodeExportTraceServiceRequest(b)[0]!.scopes[0]!.spans.map((sp) => sp.spanId));
      expect(new Set(ids).size).toBe(1000);
      expect(tel.droppedSpans()).toBe(0);
    });

    test("credentials in the endpoint URL are sent as Basic auth; framing headers in the config do not reach the wire; names differing in case are joined", async () => {
      const c = scripted([]);
      const tel = await telemetry({
        endpoint: `http://us%20er:p%40ss%E2%82%AC@127.0.0.1:${c.port}/v1/traces`,
        scheduled_delay: 10,
        headers: { "content-length": "3", connection: "close", "X-Tenant": "a", "x-tenant": "b" },
      });
      oneSpan(tel);
      await c.arrived(1);
      await tel.shutdown(3000);
      const h = c.heads[0]!;
      expect(h.get("authorization")).toBe("Basic " + Buffer.from("us er:p@ss€", "utf8").toString("base64"));
      expect(h.get("x-tenant")).toBe("a, b");
      expect(h.get("content-length")).toBe(String(c.bodies[0]!.length));
      expect(decodeExportTraceServiceRequest(c.bodies[0]!)[0]!.scopes[0]!.spans).toHaveLength(1);
      expect(tel.droppedSpans()).toBe(0);
    });

    test("a header that cannot be sent (CR LF from OTEL_EXPORTER_OTLP_HEADERS) fails the export without sending anything", async () => {
      const c = scripted([]);
      const tel = await createTelemetry(
        { traces: { endpoint: c.url, scheduled_delay: 10 } },
        { serviceVersion: "1", env: { OTEL_EXPORTER_OTLP_HEADERS: "x-tenant=a%0D%0AX-Injected: 1" }, upstreamClient },
      );
      oneSpan(tel);
      await tel.shutdown(3000);
      expect(c.bodies).toHaveLength(0);
      expect(tel.droppedSpans()).toBe(1);
    });

    test("a collector that accepts but never answers fails the export at export_timeout; the spans are counted lost", async () => {
      const r = await startOtlpReceiver({ mode: "hang" });
      cleanups.push(() => r.stop());
      const tel = await telemetry({ endpoint: r.url, scheduled_delay: 10, export_timeout: 300 });
      oneSpan(tel);
      await r.waitForRequests(1);
      const t0 = performance.now();
      await tel.shutdown(5000);
      expect(performance.now() - t0).toBeLessThan(4000); // the export gave up by itself, not the shutdown bound
      expect(tel.droppedSpans()).toBe(1);
    });

    test("OTEL_EXPORTER_OTLP_COMPRESSION=gzip gzips the body; configured headers and the OTLP user agent are sent", async () => {
      const r = await startOtlpReceiver();
      cleanups.push(() => r.stop());
      const before = process.env.OTEL_EXPORTER_OTLP_COMPRESSION;
      process.env.OTEL_EXPORTER_OTLP_COMPRESSION = "gzip"; // read by the library's config merge, as before
      try {
        const tel = await telemetry({ endpoint: r.url, scheduled_delay: 10, headers: { authorization: "Bearer t" } });
        oneSpan(tel);
        await r.waitForSpans(1);
        await tel.shutdown(1000);
      } finally {
        if (before === undefined) delete process.env.OTEL_EXPORTER_OTLP_COMPRESSION;
        else process.env.OTEL_EXPORTER_OTLP_COMPRESSION = before;
      }
      const h = r.requests[0]!.headers;
      expect(h.get("content-encoding")).toBe("gzip");
      expect(h.get("content-type")).toBe("application/x-protobuf");
      expect(h.get("authorization")).toBe("Bearer t");
      expect(h.get("user-agent")).toStartWith("OTel-OTLP-Exporter-JavaScript");
      expect(r.spans[0]!.kind).toBe("SERVER");
    });
  });
}

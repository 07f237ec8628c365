import { afterEach, describe, expect, test } from "bun:test";
import {
  createTelemetry,
  NOOP_TELEMETRY,
  portOf,
  resolveTraces,
  type Telemetry,
  type TelemetryConfig,
} from "../../core/telemetry/tracing.ts";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "../helpers/otlp-receiver.ts";
import { startBackend, startTestProxy, type RecordingBackend } from "../helpers/trace-proxy.ts";

const INCOMING_TRACE = "0af7651916cd43dd8448eb211c80319c";
const INCOMING_PARENT = "b7ad6b7169203331";

// Everything a test starts is stopped afterwards, even when an assertion fails.
let cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

async function receiver(mode?: "ok" | "hang" | "refuse"): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver({ mode });
  cleanups.push(() => r.stop());
  return r;
}
async function telemetry(traces: NonNullable<TelemetryConfig["traces"]>, env: Record<string, string> = {}): Promise<Telemetry> {
  const tel = await createTelemetry({ traces: { scheduled_delay: 20, ...traces } }, { serviceVersion: "9.9.9", env });
  cleanups.push(() => tel.shutdown(1000));
  return tel;
}
function backend(status = 200): RecordingBackend {
  const b = startBackend(status);
  cleanups.push(() => b.stop());
  return b;
}
function proxy(tel: Telemetry, backends: string[]) {
  const p = startTestProxy(tel, backends);
  cleanups.push(() => p.stop());
  return p;
}
const byKind = (spans: ReceivedSpan[], kind: string) => spans.filter((s) => s.kind === kind);
const parseTraceparent = (v: string | null) => {
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(v ?? "");
  if (!m) throw new Error(`not a traceparent: ${v}`);
  return { traceId: m[1]!, parentId: m[2]!, flags: m[3]! };
};

describe("tracing through a proxy loop", () => {
  for (const protocol of ["http/protobuf", "http/json"] as const) {
    test(`a retried request exports one SERVER span and two CLIENT spans (${protocol})`, async () => {
      const r = await receiver();
      const tel = await telemetry({ endpoint: r.url, protocol });
      const failing = backend(503);
      const healthy = backend(200);
      const p = proxy(tel, [failing.url, healthy.url]);

      const res = await fetch(`${p.url}/users/42?secret=1`, { headers: { "user-agent": "test-agent" } });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("hello");

      const spans = await r.waitForSpans(3);
      expect(r.requests[0]!.contentType).toBe(protocol === "http/json" ? "application/json" : "application/x-protobuf");
      const [server] = byKind(spans, "SERVER");
      const clients = byKind(spans, "CLIENT").sort((a, b) =>
        Number(a.attributes["fulcrum.attempt"]) - Number(b.attributes["fulcrum.attempt"])
      );
      expect(byKind(spans, "SERVER")).toHaveLength(1);
      expect(clients).toHaveLength(2);

      expect(server!.name).toBe("GET api");
      expect(server!.parentSpanId).toBe("");
      expect(server!.status.code).toBe("UNSET");
      expect(server!.attributes).toMatchObject({
        "http.request.method": "GET",
        "http.route": "api",
        "url.path": "/users/42",
        "url.scheme": "http",
        "server.address": "127.0.0.1",
        "client.address": "127.0.0.1",
        "http.response.status_code": 200,
        "user_agent.original": "test-agent",
      });
      expect(res.headers.get("x-trace-id")).toBe(server!.traceId);
      expect(res.headers.get("x-span-id")).toBe(server!.spanId);
      expect(server!.resource).toMatchObject({ "service.name": "fulcrum", "service.version": "9.9.9" });
      expect(typeof server!.resource["host.name"]).toBe("string");

      const [first, second] = clients as [ReceivedSpan, ReceivedSpan];
      for (const c of clients) {
        expect(c.traceId).toBe(server!.traceId);
        expect(c.parentSpanId).toBe(server!.spanId);
        expect(c.name).toBe("GET web");
        expect(c.endTimeUnixNano).toBeGreaterThanOrEqual(c.startTimeUnixNano);
      }
      const failingPort = Number(new URL(failing.url).port);
      expect(first.attributes).toMatchObject({
        "http.request.method": "GET",
        "http.response.status_code": 503,
        "server.address": "127.0.0.1",
        "server.port": failingPort,
        "network.peer.address": "127.0.0.1",
        "url.full": `${failing.url}/users/42`,
        "fulcrum.pool": "web",
        "fulcrum.backend": "b1",
        "fulcrum.strategy": "round-robin",
        "fulcrum.attempt": 1,
        "error.type": "503",
      });
      expect(first.attributes["fulcrum.retry_reason"]).toBeUndefined();
      expect(first.status.code).toBe("ERROR");
      expect(second.attributes).toMatchObject({
        "http.response.status_code": 200,
        "fulcrum.backend": "b2",
        "fulcrum.attempt": 2,
        "fulcrum.retry_reason": "status_503",
        "http.request.resend_count": 1,
      });
      expect(second.status.code).toBe("UNSET");

      // Each backend saw the context of the CLIENT span that called it, not the SERVER span's.
      const seenByFailing = parseTraceparent(failing.received[0]!.get("traceparent"));
      const seenByHealthy = parseTraceparent(healthy.received[0]!.get("traceparent"));
      expect(seenByFailing).toEqual({ traceId: server!.traceId, parentId: first.spanId, flags: "01" });
      expect(seenByHealthy).toEqual({ traceId: server!.traceId, parentId: second.spanId, flags: "01" });
    });
  }

  test("an incoming traceparent and tracestate are continued", async () => {
    const r = await receiver();
    const tel = await telemetry({ endpoint: r.url });
    const b = backend();
    const p = proxy(tel, [b.url]);

    await fetch(`${p.url}/x`, {
      headers: { traceparent: `00-${INCOMING_TRACE}-${INCOMING_PARENT}-01`, tracestate: "vendor=abc" },
    });
    const spans = await r.waitForSpans(2);
    const [server] = byKind(spans, "SERVER");
    const [client] = byKind(spans, "CLIENT");
    expect(server!.traceId).toBe(INCOMING_TRACE);
    expect(server!.parentSpanId).toBe(INCOMING_PARENT);
    expect(server!.traceState).toBe("vendor=abc");
    expect(client!.parentSpanId).toBe(server!.spanId);
    expect(parseTraceparent(b.received[0]!.get("traceparent"))).toEqual({ traceId: INCOMING_TRACE, parentId: client!.spanId, flags: "01" });
    expect(b.received[0]!.get("tracestate")).toBe("vendor=abc");
  });

  test("sample_ratio 0 exports nothing but still propagates the unsampled decision", async () => {
    const r = await receiver();
    const tel = await telemetry({ endpoint: r.url, sample_ratio: 0 });
    const b = backend();
    const p = proxy(tel, [b.url]);

    for (let i = 0; i < 5; i++) expect((await fetch(`${p.url}/x`)).headers.get("x-trace-id")).toBe("");
    await tel.shutdown(2000); // flushes whatever is queued: nothing should be
    expect(r.requests).toHaveLength(0);
    expect(r.spans).toHaveLength(0);
    expect(parseTraceparent(b.received[0]!.get("traceparent")).flags).toBe("00");
  });

  test("B3 multi-header is injected beside traceparent when enabled, and B3 single is extracted", async () => {
    const r = await receiver();
    const tel = await telemetry({ endpoint: r.url, propagators: ["b3", "b3multi", "tracecontext"] });
    const b = backend();
    const p = proxy(tel, [b.url]);

    await fetch(`${p.url}/x`, { headers: { b3: `${INCOMING_TRACE}-${INCOMING_PARENT}-1` } });
    const spans = await r.waitForSpans(2);
    const [server] = byKind(spans, "SERVER");
    const [client] = byKind(spans, "CLIENT");
    expect(server!.traceId).toBe(INCOMING_TRACE);
    expect(server!.parentSpanId).toBe(INCOMING_PARENT);
    const h = b.received[0]!;
    expect(h.get("x-b3-traceid")).toBe(INCOMING_TRACE);
    expect(h.get("x-b3-spanid")).toBe(client!.spanId);
    expect(h.get("x-b3-sampled")).toBe("1");
    expect(h.get("b3")).toBe(`${INCOMING_TRACE}-${client!.spanId}-1`);
    expect(parseTraceparent(h.get("traceparent")).parentId).toBe(client!.spanId);
  });

  test("an unreachable backend gives an ERROR client span with the exception and a 502 server span", async () => {
    const r = await receiver();
    const tel = await telemetry({ endpoint: r.url, protocol: "http/json" });
    const dead = backend();
    await dead.stop();
    const p = proxy(tel, [dead.url]);

    expect((await fetch(`${p.url}/x`)).status).toBe(502);
    const spans = await r.waitForSpans(2);
    const [server] = byKind(spans, "SERVER");
    const [client] = byKind(spans, "CLIENT");
    expect(client!.status.code).toBe("ERROR");
    expect(client!.attributes["http.response.status_code"]).toBeUndefined();
    expect(client!.events.map((e) => e.name)).toContain("exception");
    expect(server!.status.code).toBe("ERROR");
    expect(server!.attributes["http.response.status_code"]).toBe(502);
    expect(server!.events.map((e) => e.name)).toContain("exception");
  });
});

describe("a dead collector", () => {
  test("a hanging collector does not delay responses", async () => {
    const r = await receiver("hang");
    const tel = await telemetry({ endpoint: r.url, max_export_batch_size: 1, export_timeout: 30_000 });
    const b = backend();
    const p = proxy(tel, [b.url]);

    expect((await fetch(`${p.url}/first`)).status).toBe(200);
    await r.waitForRequests(1); // an export is now stuck in the collector
    const started = performance.now();
    for (let i = 0; i < 20; i++) expect((await fetch(`${p.url}/x`)).status).toBe(200);
    // Far below the 30 s export timeout: requests never waited for the exporter.
    expect(performance.now() - started).toBeLessThan(2000);
    expect(r.requests.length).toBeGreaterThanOrEqual(1);
  });

  test("a refused connection fails exports, not requests, and the lost spans are counted", async () => {
    const r = await receiver("refuse");
    const tel = await telemetry({ endpoint: r.url, export_timeout: 500, scheduled_delay: 60_000 });
    const b = backend();
    const p = proxy(tel, [b.url]);

    for (let i = 0; i < 3; i++) expect((await fetch(`${p.url}/x`)).status).toBe(200);
    expect(tel.droppedSpans()).toBe(0);
    await tel.shutdown(5000); // the final flush fails against the closed port
    expect(tel.droppedSpans()).toBe(6);
  });
});

describe("export settings", () => {
  test("configured headers reach the collector and OTEL_SERVICE_NAME names the service", async () => {
    const r = await receiver();
    const tel = await telemetry(
      { endpoint: r.url, headers: { authorization: "Bearer cfg" } },
      { OTEL_SERVICE_NAME: "edge-lb", OTEL_EXPORTER_OTLP_HEADERS: "x-tenant=acme,authorization=Bearer%20env" },
    );
    tel.endServer(tel.startServerSpan(new Request("http://h/x"), "api", "10.0.0.1"), 200);
    const [span] = await r.waitForSpans(1);
    expect(span!.resource["service.name"]).toBe("edge-lb");
    expect(r.requests[0]!.headers.get("authorization")).toBe("Bearer cfg");
    expect(r.requests[0]!.headers.get("x-tenant")).toBe("acme");
  });

  test("export failures reach the logger, at most one SDK message a minute", async () => {
    const r = await receiver("refuse");
    const warnings: string[] = [];
    let firstWarning!: () => void;
    const warned = new Promise<void>((resolve) => (firstWarning = resolve));
    const log = (m: string) => {
      warnings.push(m);
      firstWarning();
    };
    const tel = await createTelemetry(
      { traces: { endpoint: r.url, export_timeout: 500, scheduled_delay: 10, max_export_batch_size: 1 } },
      { serviceVersion: "1", env: {}, logger: { warn: log, error: log } },
    );
    cleanups.push(() => tel.shutdown(1000));
    for (let i = 0; i < 5; i++) tel.endServer(tel.startServerSpan(new Request("http://h/x"), "api", "10.0.0.1"), 200);
    await warned; // bun:test's own timeout bounds this
    await tel.shutdown(5000);
    expect(tel.droppedSpans()).toBe(5);
    expect(warnings[0]).toStartWith("opentelemetry: ");
    // Five failed exports: one SDK message, then silence; shutdown's own warning may follow.
    expect(warnings.filter((w) => w.startsWith("opentelemetry: "))).toHaveLength(1);
  });
});

describe("span queue", () => {
  test("spans beyond max_queue_size are dropped and counted", async () => {
    const r = await receiver("hang");
    const tel = await telemetry({ endpoint: r.url, max_queue_size: 2, max_export_batch_size: 1 });
    for (let i = 0; i < 10; i++) tel.endServer(tel.startServerSpan(new Request("http://h/x"), "api", "10.0.0.1"), 200);
    // The first span left with an export (stuck in the collector), two wait in the queue, seven are dropped.
    expect(tel.droppedSpans()).toBe(7);
    await tel.shutdown(50); // the collector never answers: don't wait for the flush
  });
});

describe("plugins", () => {
  test("a plugin tracer's span is a child of the request's SERVER span", async () => {
    const r = await receiver();
    const tel = await telemetry({ endpoint: r.url });
    const server = tel.startServerSpan(new Request("http://h/x"), "api", "10.0.0.1")!;
    tel.tracer("my-plugin", "1.0.0").startSpan("check-api-key", {}, server.ctx).end();
    tel.endServer(server, 200);

    const spans = await r.waitForSpans(2);
    const child = spans.find((s) => s.name === "check-api-key")!;
    expect(child.scope).toEqual({ name: "my-plugin", version: "1.0.0" });
    expect(child.parentSpanId).toBe(server.span.spanContext().spanId);
    expect(child.kind).toBe("INTERNAL");
  });
});

describe("tracing off", () => {
  test("createTelemetry() without a traces section or OTLP env returns the shared no-op", async () => {
    const tel = await createTelemetry(undefined, { serviceVersion: "1", env: {} });
    expect(tel).toBe(NOOP_TELEMETRY);
    expect(
      await createTelemetry({ traces: { enabled: false } }, { serviceVersion: "1", env: { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" } }),
    ).toBe(NOOP_TELEMETRY);
    const span = tel.startServerSpan(new Request("http://h/"), "api", "1.2.3.4");
    expect(span).toBeUndefined();
    const headers: Record<string, string> = {};
    tel.inject(span, headers);
    expect(headers).toEqual({});
    expect(tel.ids(span)).toBeUndefined();
    expect(tel.startClientSpan(span, { pool: "p", backend: "b", strategy: "s", attempt: 1, url: "http://b/" })).toBeUndefined();
    tel.endClient(undefined, 200);
    tel.endServer(span, 200);
    expect(tel.tracer("p").startSpan("x").isRecording()).toBe(false);
    expect(tel.droppedSpans()).toBe(0);
  });
});

describe("resolveTraces()", () => {
  test("the config wins over the environment; the signal variable over the generic one", () => {
    const env = {
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://generic:4318/",
      OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20env,x-a=1",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_SERVICE_NAME: "edge",
    };
    expect(resolveTraces(undefined, env)).toMatchObject({
      url: "http://generic:4318/v1/traces",
      protocol: "http/json",
      headers: { authorization: "Bearer env", "x-a": "1" },
      serviceName: "edge",
      sampleRatio: 1,
      propagators: ["tracecontext", "baggage"],
    });
    expect(resolveTraces(undefined, { ...env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://signal:4318/custom" })!.url)
      .toBe("http://signal:4318/custom");
    expect(resolveTraces({ traces: { endpoint: "http://cfg:4318", protocol: "http/protobuf", headers: { "x-a": "2" } } }, env))
      .toMatchObject({ url: "http://cfg:4318/v1/traces", protocol: "http/protobuf", headers: { authorization: "Bearer env", "x-a": "2" } });
    expect(resolveTraces({ traces: {} }, {})!.url).toBe("http://localhost:4318/v1/traces");
    expect(resolveTraces({ traces: {} }, { OTEL_SDK_DISABLED: "true" })).toBeUndefined();
  });

  test("bad values throw a RangeError naming the key and the value", () => {
    expect(() => resolveTraces({ traces: { sample_ratio: 1.5 } }, {})).toThrow(
      "telemetry.traces.sample_ratio must be a number from 0 to 1, got 1.5",
    );
    expect(() => resolveTraces({ traces: { protocol: "grpc" as "http/json" } }, {})).toThrow(RangeError);
    expect(() => resolveTraces({ traces: { max_queue_size: 0 } }, {})).toThrow("max_queue_size must be a positive integer, got 0");
    expect(() => resolveTraces({ traces: { endpoint: "collector:4318" } }, {})).toThrow("telemetry.traces.endpoint must be an http(s) URL");
    expect(() => resolveTraces({ traces: { propagators: ["xray" as "b3"] } }, {})).toThrow('unknown "xray"');
  });

  test("portOf() reads the port of a Host value, else the scheme's default; -1 when it is not a port", () => {
    expect(portOf("h:8080", 80)).toBe(8080);
    expect(portOf("h", 80)).toBe(80);
    expect(portOf("h", 443)).toBe(443);
    expect(portOf("h:", 80)).toBe(80);
    expect(portOf("[::1]:9", 80)).toBe(9);
    expect(portOf("[::1]", 443)).toBe(443);
    expect(portOf("h:x", 80)).toBe(-1);
    expect(portOf("h:70000", 80)).toBe(-1);
  });
});

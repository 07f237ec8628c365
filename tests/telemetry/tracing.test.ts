// Tracing through the real request path: Fulcrum in-process on loopback, real backends, and the
// OTLP receiver as the collector.
import { describe, expect, test } from "bun:test";
import { closedPort, startRawBackend, type TestBackend } from "../helpers/backends.ts";
import { outcome, RawClient } from "../helpers/raw-client.ts";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "../helpers/otlp-receiver.ts";
import { createTelemetry } from "../../core/telemetry/tracing.ts";
import { createObserver, type ObservedExchange } from "../../core/telemetry/observer.ts";
import { testScope } from "../helpers/scope.ts";

const { cleanups, backend, fulcrum } = testScope();

async function receiver(mode?: "ok" | "hang" | "refuse"): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver({ mode });
  cleanups.push(() => r.stop());
  return r;
}

function config(backends: TestBackend[] | string[], traces: string, extra = ""): string {
  const urls = backends.map((b) => (typeof b === "string" ? b : b.url));
  return `pools:
  web:
    backends:
${urls.map((u, i) => `      - { url: "${u}", id: b${i + 1} }`).join("\n")}
${extra}
telemetry:
  traces: { ${traces} }
log: { level: debug, access_log: true }
`;
}
const byKind = (spans: ReceivedSpan[], kind: string) => spans.filter((s) => s.kind === kind);
const traceparent = (v: string | null | undefined) => {
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(v ?? "");
  if (!m) throw new Error(`not a traceparent: ${v}`);
  return { traceId: m[1]!, parentId: m[2]!, flags: m[3]! };
};

describe("a traced request through Fulcrum", () => {
  test("retried once: one SERVER span, two CLIENT spans with attempt, retry reason, status; backends see the CLIENT span as parent", async () => {
    const r = await receiver();
    // The first request that reaches either backend gets 503, everything after 200.
    let seen = 0;
    const handler = (_req: Request, name: string) =>
      ++seen === 1 ? new Response("busy\n", { status: 503 }) : new Response(`hello from ${name}\n`, { headers: { "x-backend": name } });
    const b1 = backend("b1", handler);
    const b2 = backend("b2", handler);
    const f = await fulcrum(config([b1, b2], `endpoint: "${r.url}", protocol: http/json, scheduled_delay: 20ms`));

    const res = await fetch(`${f.url}/users/42?q=1`, { headers: { "user-agent": "t/1" } });
    expect(res.status).toBe(200);
    await res.text();

    const spans = await r.waitForSpans(3);
    expect(r.requests[0]!.contentType).toBe("application/json");
    const servers = byKind(spans, "SERVER");
    const clients = byKind(spans, "CLIENT").sort((a, b) =>
      Number(a.attributes["fulcrum.attempt"]) - Number(b.attributes["fulcrum.attempt"])
    );
    expect(servers).toHaveLength(1);
    expect(clients).toHaveLength(2);
    const server = servers[0]!;
    const route = f.access()[0]!.route as string;
    expect(server.name).toBe(`GET ${route}`);
    expect(server.parentSpanId).toBe("");
    expect(server.status.code).toBe("UNSET");
    expect(server.attributes).toMatchObject({
      "http.request.method": "GET",
      "http.route": route,
      "url.path": "/users/42",
      "url.query": "q=1",
      "url.scheme": "http",
      "server.address": "127.0.0.1",
      "server.port": f.server.listener.port,
      "client.address": "127.0.0.1",
      "network.protocol.version": "1.1",
      "http.response.status_code": 200,
      "fulcrum.pool": "web",
      "fulcrum.attempts": 2,
      "fulcrum.retry_reason": "503",
    });

    const [first, second] = clients as [ReceivedSpan, ReceivedSpan];
    const [failing, healthy] = first.attributes["fulcrum.backend"] === "b1" ? [b1, b2] : [b2, b1];
    for (const c of clients) {
      expect(c.traceId).toBe(server.traceId);
      expect(c.parentSpanId).toBe(server.spanId);
      expect(c.name).toBe("GET web");
      expect(c.attributes).toMatchObject({ "fulcrum.pool": "web", "fulcrum.strategy": "round-robin", "server.address": "127.0.0.1" });
    }
    expect(first.attributes).toMatchObject({
      "fulcrum.attempt": 1,
      "http.response.status_code": 503,
      "error.type": "503",
      "server.port": failing.port,
      "network.peer.port": failing.port,
      "url.full": `${failing.url}/users/42?q=1`,
    });
    expect(first.attributes["fulcrum.retry_reason"]).toBeUndefined();
    expect(first.status.code).toBe("ERROR");
    expect(second.attributes).toMatchObject({
      "fulcrum.attempt": 2,
      "fulcrum.retry_reason": "503",
      "http.request.resend_count": 1,
      "http.response.status_code": 200,
      "server.port": healthy.port,
    });
    expect(second.status.code).toBe("UNSET");

    // Each backend got the context of the CLIENT span that called it.
    expect(traceparent(failing.requests[0]!.headers.get("traceparent"))).toEqual({
      traceId: server.traceId,
      parentId: first.spanId,
      flags: "01",
    });
    expect(traceparent(healthy.requests[0]!.headers.get("traceparent"))).toEqual({
      traceId: server.traceId,
      parentId: second.spanId,
      flags: "01",
    });

    // The access log joins the trace.
    expect(f.access()[0]).toMatchObject({ trace_id: server.traceId, span_id: server.spanId, status: 200, attempts: 2 });
  });

  test("the client's header lines still pass as bytes; one traceparent reaches the backend, Fulcrum's", async () => {
    const r = await receiver();
    const b = startRawBackend((_head, s) => void s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
    cleanups.push(() => b.stop());
    const f = await fulcrum(config([b.url], `endpoint: "${r.url}", scheduled_delay: 20ms`));
    const c = await RawClient.connect(f.server.listener.port);
    cleanups.push(() => c.destroy());
    const trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    c.write("GET /a HTTP/1.1\r\nHost: x\r\nX-Case: 1\r\n\r\n");
    expect(outcome(await c.readResponse())).toBe(200);
    c.write(`GET /b HTTP/1.1\r\nHost: x\r\nX-Case: 2\r\nTraceParent: 00-${trace}-00f067aa0ba902b7-01\r\n\r\n`);
    expect(outcome(await c.readResponse())).toBe(200);
    const [a, bHead] = b.heads.map((h) => h.head.split("\r\n"));
    // No trace context from the client: its lines as bytes (the name's case kept), ours added.
    expect(a).toContain("X-Case: 1");
    expect(a!.filter((l) => /^traceparent:/i.test(l))).toHaveLength(1);
    // The client's traceparent is replaced by Fulcrum's, which continues its trace.
    const tps = bHead!.filter((l) => /^traceparent:/i.test(l));
    expect(tps).toHaveLength(1);
    const tp = traceparent(tps[0]!.slice(tps[0]!.indexOf(":") + 1).trim());
    expect(tp.traceId).toBe(trace);
    expect(tp.parentId).not.toBe("00f067aa0ba902b7");
    expect(bHead!.filter((l) => /^x-case:/i.test(l))).toHaveLength(1);
  });

  test("an incoming traceparent and tracestate are continued (exported as http/protobuf)", async () => {
    const r = await receiver();
    const b = backend("b1");
    const f = await fulcrum(config([b], `endpoint: "${r.url}", scheduled_delay: 20ms`));
    const trace = "0af7651916cd43dd8448eb211c80319c";
    const parent = "b7ad6b7169203331";
    await (await fetch(`${f.url}/x`, { headers: { traceparent: `00-${trace}-${parent}-01`, tracestate: "vendor=abc" } })).text();

    const spans = await r.waitForSpans(2);
    expect(r.requests[0]!.contentType).toBe("application/x-protobuf");
    const server = byKind(spans, "SERVER")[0]!;
    const client = byKind(spans, "CLIENT")[0]!;
    expect(server.traceId).toBe(trace);
    expect(server.parentSpanId).toBe(parent);
    expect(server.traceState).toBe("vendor=abc");
    expect(client.parentSpanId).toBe(server.spanId);
    expect(server.resource).toMatchObject({ "service.name": "fulcrum", "service.version": "0.0.0-test" });
    const seen = b.requests[0]!.headers;
    expect(traceparent(seen.get("traceparent"))).toEqual({ traceId: trace, parentId: client.spanId, flags: "01" });
    expect(seen.get("tracestate")).toBe("vendor=abc");
    expect(f.access()[0]).toMatchObject({ trace_id: trace, span_id: server.spanId });
  });

  test("sample_ratio 0 exports nothing; backends get an unsampled traceparent; the access log has no ids", async () => {
    const r = await receiver();
    const b = backend("b1");
    const f = await fulcrum(config([b], `endpoint: "${r.url}", protocol: http/json, sample_ratio: 0, scheduled_delay: 20ms`));
    for (let i = 0; i < 5; i++) expect((await fetch(`${f.url}/x`)).status).toBe(200);
    await f.obs.telemetry.shutdown(2000); // flush: nothing may be queued
    expect(r.spans).toHaveLength(0);
    expect(r.requests).toHaveLength(0);
    expect(traceparent(b.requests[0]!.headers.get("traceparent")).flags).toBe("00");
    expect(f.access()[0]!.trace_id).toBeUndefined();
  });

  test("B3 is opt-in: with propagators [tracecontext, b3multi] the backend gets both", async () => {
    const r = await receiver();
    const b = backend("b1");
    const f = await fulcrum(
      config([b], `endpoint: "${r.url}", protocol: http/json, propagators: [tracecontext, b3multi], scheduled_delay: 20ms`),
    );
    await (await fetch(`${f.url}/x`)).text();
    const client = byKind(await r.waitForSpans(2), "CLIENT")[0]!;
    const h = b.requests[0]!.headers;
    expect(h.get("x-b3-traceid")).toBe(client.traceId);
    expect(h.get("x-b3-spanid")).toBe(client.spanId);
    expect(traceparent(h.get("traceparent")).parentId).toBe(client.spanId);
  });

  test("a failed attempt that opens the breaker: ERROR client span with the exception and a circuit event; a 502 is an ERROR server span", async () => {
    const r = await receiver();
    const dead = `http://127.0.0.1:${closedPort()}`;
    const f = await fulcrum(
      config(
        [dead],
        `endpoint: "${r.url}", protocol: http/json, scheduled_delay: 20ms`,
        "    circuit_breaker: { failures: 1 }\n    retry: { attempts: 1 }",
      ),
    );
    expect((await fetch(`${f.url}/x`)).status).toBe(502);
    const spans = await r.waitForSpans(2);
    const server = byKind(spans, "SERVER")[0]!;
    const client = byKind(spans, "CLIENT")[0]!;
    expect(client.status.code).toBe("ERROR");
    expect(client.events.map((e) => e.name).sort()).toEqual(["exception", "fulcrum.circuit_transition"]);
    expect(client.events.find((e) => e.name === "fulcrum.circuit_transition")!.attributes).toMatchObject({ from: "closed", to: "open" });
    expect(server.status.code).toBe("ERROR");
    expect(server.attributes["http.response.status_code"]).toBe(502);
  });

  test("a request no route matches gets a SERVER span named by its method alone", async () => {
    const r = await receiver();
    const b = backend("b1");
    const f = await fulcrum(`pools:
  web: { backends: ["${b.url}"] }
routes:
  - { match: { path: /api }, pool: web }
telemetry: { traces: { endpoint: "${r.url}", protocol: http/json, scheduled_delay: 20ms } }
`);
    expect((await fetch(`${f.url}/nope`)).status).toBe(404);
    const [span] = await r.waitForSpans(1);
    expect(span!.name).toBe("GET");
    expect(span!.attributes["http.route"]).toBeUndefined();
    expect(span!.attributes["http.response.status_code"]).toBe(404);
  });

  test("a backend kept across a reload that changes its pool's strategy: its CLIENT spans name the new strategy", async () => {
    const r = await receiver();
    const b = backend("b1");
    let strategy = "round-robin";
    const yaml = () =>
      `pools:\n  web: { strategy: ${strategy}, backends: ["${b.url}"] }\ntelemetry:\n  traces: { endpoint: "${r.url}", scheduled_delay: 10ms }\n`;
    const f = await fulcrum(yaml(), { reload: yaml });
    const kept = f.server.gateway.pools.get("web")!.backends[0]!;
    expect((await fetch(`${f.url}/one`)).status).toBe(200);
    await r.waitForSpans(2);
    strategy = "least-connections";
    expect((await f.server.reload()).ok).toBe(true);
    expect(f.server.gateway.pools.get("web")!.backends[0]).toBe(kept); // the same object, whose span attributes are cached
    expect((await fetch(`${f.url}/two`)).status).toBe(200);
    const spans = await r.waitForSpans(4);
    const clients = spans.filter((s) => s.kind === "CLIENT").map((s) => [s.attributes["url.full"], s.attributes["fulcrum.strategy"]]);
    expect(clients).toEqual([[`${b.url}/one`, "round-robin"], [`${b.url}/two`, "least-connections"]]);
  });
});

describe("a dead collector", () => {
  // Median request latency over `n` sequential requests.
  async function median(url: string, n: number): Promise<number> {
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("hello from b1\n");
      times.push(performance.now() - t);
    }
    return times.sort((a, b) => a - b)[n >> 1]!;
  }

  for (const mode of ["hang", "refuse"] as const) {
    test(`(${mode}) changes neither the response nor its latency beyond noise`, async () => {
      const r = await receiver(mode);
      const b = backend("b1");
      const off = await fulcrum(config([b], "enabled: false"));
      const on = await fulcrum(config([b], `endpoint: "${r.url}", max_export_batch_size: 1, export_timeout: 30s, scheduled_delay: 1ms`));
      await median(`${off.url}/x`, 20); // warm both up
      await median(`${on.url}/x`, 20);
      if (mode === "hang") await r.waitForRequests(1); // exports are stuck in the collector now
      const base = await median(`${off.url}/x`, 100);
      const dead = await median(`${on.url}/x`, 100);
      // Bounded, not timed to the microsecond: a request that waited for the exporter would take
      // the 30 s export timeout (hang) or a connect attempt (refuse).
      expect(dead).toBeLessThan(base * 3 + 5);
    });
  }
});

describe("plugins", () => {
  test("PluginApi.tracer spans are children of the SERVER span of the request they are given", async () => {
    const r = await receiver();
    const tel = await createTelemetry({ traces: { endpoint: r.url, protocol: "http/json", scheduled_delay: 20 } }, {
      serviceVersion: "1",
      env: {},
    });
    cleanups.push(() => tel.shutdown(1000));
    const obs = createObserver(tel, undefined)!;
    const request = new Request("http://h/x");
    const start = performance.now();
    const ex = {
      route: "r",
      clientIp: "127.0.0.1",
      start,
      method: "GET",
      path: "/x",
      pool: "",
      backend: "",
      status: 200,
      attempts: 0,
      bytes: 0,
    } as unknown as ObservedExchange;
    obs.requestStart(ex, request);
    const tracer = obs.pluginTracer("my-plugin", "1.2.3");
    tracer.startSpan("check-key", { parent: { headers: request.headers }, attributes: { tenant: "acme" } }).end();
    tracer.startSpan("background").end();
    obs.requestEnd(ex, performance.now() - start);

    const spans = await r.waitForSpans(3);
    const server = spans.find((s) => s.kind === "SERVER")!;
    const child = spans.find((s) => s.name === "check-key")!;
    expect(child.parentSpanId).toBe(server.spanId);
    expect(child.traceId).toBe(server.traceId);
    expect(child.scope).toEqual({ name: "my-plugin", version: "1.2.3" });
    expect(child.attributes.tenant).toBe("acme");
    expect(spans.find((s) => s.name === "background")!.parentSpanId).toBe("");
  });
});

describe("plugin spans through Fulcrum's own listener", () => {
  test("a strategy's and a middleware's spans, parented by the request they were given, are children of its SERVER span", async () => {
    const { spawnFulcrum } = await import("../helpers/fulcrum.ts");
    const { tempDir } = await import("../helpers/plugins.ts");
    const r = await receiver();
    const b = backend("b1");
    const t = tempDir("fulcrum-plugin-spans-");
    t.write(
      "pick.ts",
      `export default { kind: "strategy", name: "traced-first", create: (_o, api) => ({
      pick(backends, request) { api.tracer?.startSpan("pick", { parent: request }).end(); return backends[0]; } }) };\n`,
    );
    t.write(
      "mw.ts",
      `export default { kind: "middleware", name: "traced-mw", create: (_o, api) => async (c, next) => {
      const span = api.tracer?.startSpan("mw", { parent: c.req.raw }); await next(); span?.end(); } };\n`,
    );
    const file = t.write(
      "f.yaml",
      `listen: 127.0.0.1:0
workers: 1
admin: false
pools: { web: { backends: ["${b.url}"], strategy: { plugin: ./pick.ts } } }
routes:
  - { match: { path: /mw }, pool: web, middleware: [{ plugin: ./mw.ts }] }
  - { match: { path: / }, pool: web }
telemetry: { traces: { endpoint: "${r.url}", scheduled_delay: 1m } }
`,
    );
    const child = await spawnFulcrum(["run", "--config", file]);
    cleanups.push(() => child.kill("SIGKILL"));
    expect((await fetch(`${child.url}/direct`)).status).toBe(200);
    expect((await fetch(`${child.url}/mw/x`)).status).toBe(200);
    child.kill("SIGTERM"); // flushes the queued spans
    expect(await child.exited).toBe(0);

    const spans = r.spans;
    const servers = byKind(spans, "SERVER");
    expect(servers).toHaveLength(2);
    const direct = servers.find((s) => s.attributes["url.path"] === "/direct")!;
    const viaMw = servers.find((s) => s.attributes["url.path"] === "/mw/x")!;
    const named = (name: string, server: ReceivedSpan) => spans.filter((s) => s.name === name && s.traceId === server.traceId);
    expect(named("pick", direct).map((s) => s.parentSpanId)).toEqual([direct.spanId]);
    expect(named("pick", viaMw).map((s) => s.parentSpanId)).toEqual([viaMw.spanId]);
    expect(named("mw", viaMw).map((s) => s.parentSpanId)).toEqual([viaMw.spanId]);
    expect(spans.filter((s) => s.parentSpanId === "")).toHaveLength(2); // only the SERVER spans are roots
  });
});

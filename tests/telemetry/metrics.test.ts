// /metrics on the admin listener: it parses as Prometheus text and its numbers match the
// requests sent. Also: the observability config keys and their file:line:col errors, and the
// compiled-in wiring through the real CLI (admin port, spans flushed on SIGTERM).
import { describe, expect, test } from "bun:test";
import { spawnFulcrum, type InProcess } from "../helpers/fulcrum.ts";
import { parsePrometheus, sum } from "../helpers/prometheus.ts";
import { tempDir } from "../helpers/plugins.ts";
import { startOtlpReceiver } from "../helpers/otlp-receiver.ts";
import { ConfigError, parseConfig } from "../../core/config/load.ts";
import { createMetrics } from "../../core/telemetry/metrics.ts";
import { testScope } from "../helpers/scope.ts";

const { cleanups, backend, fulcrum } = testScope();
async function scrape(f: InProcess) {
  const r = await fetch(`${f.adminUrl}/metrics`);
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
  return parsePrometheus(await r.text());
}

describe("/metrics", () => {
  test("parses as Prometheus text and its counters match the requests sent", async () => {
    let flaky = 0;
    const handler = (req: Request, name: string) =>
      new URL(req.url).pathname === "/api/flaky" && ++flaky === 1
        ? new Response("busy", { status: 503 })
        : new Response(`hello from ${name}\n`, { headers: { "x-backend": name } });
    const bs = [backend("b1", handler), backend("b2", handler)];
    const f = await fulcrum(`pools:
  web:
    backends: [{ url: "${bs[0]!.url}", id: b1 }, { url: "${bs[1]!.url}", id: b2 }]
    health: { path: /, interval: 1h }
routes:
  - { match: { path: /api }, pool: web }
`);
    const web = f.server.gateway.pools.get("web")!;
    for (const b of web.backends) await web.health!.runOnce(b);
    const send = async (path: string, method = "GET") =>
      (await fetch(`${f.url}${path}`, { method, body: method === "POST" ? "x" : undefined })).text();
    for (let i = 0; i < 6; i++) await send("/api/x");
    for (let i = 0; i < 2; i++) await send("/api/x", "POST");
    await send("/api/flaky"); // 503 once, retried on the other backend
    await send("/elsewhere"); // no route: 404

    const m = await scrape(f);
    expect(m.get("fulcrum_requests_total")!.type).toBe("counter");
    expect(sum(m, "fulcrum_requests_total")).toBe(10);
    expect(sum(m, "fulcrum_requests_total", { pool: "web", method: "GET", status_class: "2xx" })).toBe(7);
    expect(sum(m, "fulcrum_requests_total", { pool: "web", method: "POST", status_class: "2xx" })).toBe(2);
    expect(sum(m, "fulcrum_requests_total", { pool: "", status_class: "4xx" })).toBe(1);
    expect(sum(m, "fulcrum_requests_total", { backend: "b1" }) + sum(m, "fulcrum_requests_total", { backend: "b2" })).toBe(9);

    expect(sum(m, "fulcrum_retries_total", { pool: "web", reason: "503" })).toBe(1);
    expect(sum(m, "fulcrum_upstream_attempts_total")).toBe(10);
    expect(sum(m, "fulcrum_upstream_attempts_total", { outcome: "5xx" })).toBe(1);
    expect(sum(m, "fulcrum_upstream_duration_seconds_count")).toBe(10);
    expect(sum(m, "fulcrum_request_duration_seconds_count", { pool: "web" })).toBe(9);
    expect(sum(m, "fulcrum_request_duration_seconds_bucket", { pool: "web", le: "+Inf" })).toBe(9);
    expect(sum(m, "fulcrum_request_duration_seconds_sum", { pool: "web" })).toBeGreaterThan(0);
    expect(m.get("fulcrum_request_duration_seconds")!.type).toBe("histogram");

    for (const id of ["b1", "b2"]) {
      expect(sum(m, "fulcrum_backend_up", { pool: "web", backend: id })).toBe(1);
      expect(sum(m, "fulcrum_backend_available", { backend: id })).toBe(1);
      expect(sum(m, "fulcrum_backend_weight", { backend: id })).toBe(1);
      expect(sum(m, "fulcrum_backend_circuit_state", { backend: id, state: "closed" })).toBe(1);
      expect(sum(m, "fulcrum_backend_circuit_state", { backend: id, state: "open" })).toBe(0);
      expect(sum(m, "fulcrum_health_checks_total", { backend: id, result: "ok" })).toBe(1);
    }
    expect(sum(m, "fulcrum_requests_in_flight")).toBe(0);
    expect(sum(m, "fulcrum_spans_dropped_total")).toBe(0);
    expect(m.has("fulcrum_rate_limited_total")).toBe(true);
    expect(m.has("fulcrum_plugin_errors_total")).toBe(true);
    expect(m.has("fulcrum_log_records_dropped_total")).toBe(true);
    expect(m.has("process_resident_memory_bytes")).toBe(true);

    // Draining shows up at the next scrape.
    await fetch(`${f.adminUrl}/backends/web/b1/drain`, { method: "POST" });
    const after = await scrape(f);
    expect(sum(after, "fulcrum_backend_available", { backend: "b1" })).toBe(0);
    expect(sum(after, "fulcrum_backend_draining", { backend: "b1" })).toBe(1);
  });

  test("counters other modules increment: rate-limited requests, plugin errors, dropped log records", async () => {
    const m = createMetrics();
    const limited = m.rateLimited.child("api");
    limited.inc();
    limited.inc();
    m.pluginErrors.child("canary").inc();
    m.logRecordsDropped.inc(3);
    const parsed = parsePrometheus((await m.render()).text);
    expect(sum(parsed, "fulcrum_rate_limited_total", { route: "api" })).toBe(2);
    expect(sum(parsed, "fulcrum_plugin_errors_total", { plugin: "canary" })).toBe(1);
    expect(sum(parsed, "fulcrum_log_records_dropped_total")).toBe(3);
  });

  test("process metrics are added at the first read, without the gauges prom-client names *_total", async () => {
    const m = createMetrics();
    const names = (json: { name: string }[]) => new Set(json.map((x) => x.name));
    // Not loaded at creation (start-up does not pay for them)...
    expect(names(await m.registry.getMetricsAsJSON()).has("process_cpu_seconds_total")).toBe(false);
    // ...but every way of reading the metrics has them.
    const first = names(await m.json());
    expect(first.has("process_cpu_seconds_total")).toBe(true);
    expect(first.has("nodejs_eventloop_lag_seconds")).toBe(true);
    expect(first.has("nodejs_active_handles")).toBe(true);
    for (const n of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) {
      expect(first.has(n)).toBe(false);
    }
    const text = (await createMetrics().render()).text;
    expect(parsePrometheus(text).has("process_resident_memory_bytes")).toBe(true);
    // Registered once: a second read adds nothing (prom-client throws on a duplicate name).
    expect(names(await m.json())).toEqual(first);
  });

  test("end to end: 429s from rate limiting and a failing user plugin are counted", async () => {
    const t = tempDir();
    const plugin = t.write(
      "boom.ts",
      `export default { kind: "strategy", name: "boom", create: () => ({ pick() { throw new Error("boom"); } }) };\n`,
    );
    const b = backend("b1");
    const f = await fulcrum(`pools:
  web: { strategy: { plugin: "${plugin}" }, backends: ["${b.url}"] }
routes:
  - { pool: web, middleware: [ { rate-limit: { rate: 1/m, burst: 2 } } ] }
`);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await fetch(f.url)).status);
    expect(statuses).toEqual([200, 200, 429, 429, 429]);
    const parsed = await scrape(f);
    expect(sum(parsed, "fulcrum_rate_limited_total")).toBe(3);
    // Both proxied requests fell back to round robin after the plugin threw.
    expect(sum(parsed, "fulcrum_plugin_errors_total", { plugin: "boom" })).toBe(2);
  });

  test("a backend that leaves for good loses its per-backend series; one that stays keeps them", async () => {
    const bs = [backend("b1"), backend("b2"), backend("b3")];
    const cfg = (ids: string[], idle = "4s") =>
      `pools:\n  web:\n    keepalive: { idle_timeout: ${idle} }\n    backends: [${
        ids.map((id) => `{ url: "${bs[Number(id.slice(1)) - 1]!.url}", id: ${id} }`).join(", ")
      }]\n`;
    let next = cfg(["b1", "b2", "b3"]);
    const f = await fulcrum(next, { reload: () => next });
    for (let i = 0; i < 6; i++) await (await fetch(f.url)).text();
    const series = async (id: string) => {
      const m = await scrape(f);
      return ["fulcrum_requests_total", "fulcrum_upstream_attempts_total", "fulcrum_upstream_duration_seconds_count"].map((n) =>
        sum(m, n, { backend: id })
      );
    };
    expect(await series("b2")).toEqual([2, 2, 2]);

    // Dropped by a reload: gone. Kept, as a new object (keepalive settings changed): counts carry on.
    next = cfg(["b1", "b3"], "5s");
    expect((await f.server.reload()).ok).toBe(true);
    const m = await scrape(f);
    expect([...m.get("fulcrum_requests_total")!.samples.map((x) => x.labels.backend)].sort()).toEqual(["b1", "b3"]);
    expect(await series("b1")).toEqual([2, 2, 2]);

    // Removed at run time (as discovery does): gone once its last request is done.
    const web = f.server.gateway.pools.get("web")!;
    web.removeBackend(web.backends.find((b) => b.id === "b3")!);
    expect(await series("b3")).toEqual([0, 0, 0]);
    expect(await series("b1")).toEqual([2, 2, 2]);
    // Requests after that are counted from zero for a returning id, not lost in a forgotten series.
    next = cfg(["b1", "b2"], "5s");
    expect((await f.server.reload()).ok).toBe(true);
    for (let i = 0; i < 4; i++) await (await fetch(f.url)).text();
    expect((await series("b2"))[0]).toBe(2);
  });

  test("a backend removed with a request in flight: no series of it once that request is done; its id back in a reload keeps counting", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const handler = async (req: Request) => {
      if (new URL(req.url).pathname === "/slow") await gate;
      return new Response("ok");
    };
    const bs = [backend("b1", handler), backend("b2", handler)];
    const cfg = (ids: string[], idle: string) =>
      `pools:\n  web:\n    keepalive: { idle_timeout: ${idle} }\n    backends: [${
        ids.map((id) => `{ url: "${bs[Number(id.slice(1)) - 1]!.url}", id: ${id} }`).join(", ")
      }]\n`;
    let next = cfg(["b1", "b2"], "4s");
    const f = await fulcrum(next, { reload: () => next });
    const until = async (check: () => boolean) => {
      for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
      expect(check()).toBe(true);
    };
    const web0 = f.server.gateway.pools.get("web")!;
    const [b1, b2] = web0.backends;
    // One request held at each backend, then both removed at run time (as discovery does).
    const held = [fetch(`${f.url}/slow`), fetch(`${f.url}/slow`)];
    await until(() => b1!.inflight === 1 && b2!.inflight === 1);
    web0.removeBackend(b1!);
    web0.removeBackend(b2!);
    // A reload lists b2 again (a new object: other keepalive settings) and it serves; b1 stays gone.
    next = cfg(["b2"], "5s");
    expect((await f.server.reload()).ok).toBe(true);
    for (let i = 0; i < 3; i++) await (await fetch(`${f.url}/fast`)).text();
    release();
    for (const r of held) expect((await r).status).toBe(200);
    await until(() => f.server.gateway.inflight() === 0 && web0.inflight === 0);
    for (let i = 0; i < 2; i++) await (await fetch(`${f.url}/fast`)).text();
    const m = await scrape(f);
    expect((m.get("fulcrum_requests_total")?.samples ?? []).filter((x) => x.labels.backend === "b1")).toEqual([]);
    expect(sum(m, "fulcrum_upstream_attempts_total", { backend: "b1" })).toBe(0);
    // b2's requests on both objects are in its series: 1 held + 5 after the reload.
    expect(sum(m, "fulcrum_requests_total", { backend: "b2" })).toBe(6);
    expect(sum(m, "fulcrum_upstream_attempts_total", { backend: "b2" })).toBe(6);
    expect(sum(m, "fulcrum_upstream_duration_seconds_count", { backend: "b2" })).toBe(6);
  });

  test("admin.metrics: false serves no /metrics", async () => {
    const f = await fulcrum(`pools: { web: { backends: ["${backend("b1").url}"] } }\nadmin: { metrics: false }\n`);
    expect((await fetch(`${f.adminUrl}/metrics`)).status).toBe(404);
    expect(f.obs.observer).toBeUndefined(); // nothing on the request path at all
  });
});

describe("observability config", () => {
  const problems = (yaml: string) => {
    try {
      parseConfig(`pools: { web: { backends: [http://127.0.0.1:1] } }\n${yaml}`, { file: "f.yaml", env: () => undefined });
    } catch (e) {
      return (e as ConfigError).problems;
    }
    return [];
  };

  test("every telemetry and admin key is validated with file:line:col", () => {
    expect(problems("telemetry:\n  traces: { endpoint: collector:4318, sample_ratio: 2, protocol: grpc, propagators: [xray] }\n")).toEqual([
      'f.yaml:3:23: telemetry.traces.endpoint must be an http:// or https:// URL of an OTLP/HTTP collector, e.g. http://127.0.0.1:4318, got "collector:4318"',
      "f.yaml:3:53: telemetry.traces.sample_ratio must be a percentage like 20% or a ratio like 0.2, got 2",
      'f.yaml:3:66: telemetry.traces.protocol must be "http/protobuf" or "http/json", got "grpc"',
      'f.yaml:3:86: telemetry.traces.propagators[0] must be one of tracecontext, baggage, b3, b3multi, got "xray"',
    ]);
    expect(problems("telemetry: { traces: { endpont: http://c:4318 } }\n")).toEqual([
      'f.yaml:2:24: telemetry.traces.endpont is not a known key; did you mean "endpoint"?',
    ]);
    expect(problems("admin: { listen: nowhere, tokn: x }\n")).toEqual([
      'f.yaml:2:18: admin.listen must be host:port, :port or a port number (0-65535), got "nowhere"',
      'f.yaml:2:27: admin.tokn is not a known key; did you mean "token"?',
    ]);
    expect(problems("telemetry: { traces: { max_queue_size: 10, max_export_batch_size: 20 } }\n")[0]).toContain(
      "max_export_batch_size must not exceed max_queue_size",
    );
  });

  test("defaults: admin on 127.0.0.1:9090 (unset listen), metrics on, tracing off; `admin: false` turns it off", () => {
    const c = parseConfig("pools: { web: { backends: [http://127.0.0.1:1] } }\n", { file: "f.yaml", env: () => undefined });
    expect(c.admin).toEqual({ enabled: true, metrics: true });
    expect(c.telemetry).toBeUndefined();
    const off = parseConfig("pools: { web: { backends: [http://127.0.0.1:1] } }\nadmin: false\n", { file: "f.yaml", env: () => undefined });
    expect(off.admin.enabled).toBe(false);
    const t = parseConfig(
      "pools: { web: { backends: [http://127.0.0.1:1] } }\ntelemetry: { traces: { sample_ratio: 1%, scheduled_delay: 2s } }\n",
      {
        file: "f.yaml",
        env: () => undefined,
      },
    );
    expect(t.telemetry!.traces).toEqual({ sample_ratio: 0.01, scheduled_delay: 2000 });
  });
});

describe("through the CLI", () => {
  test("the admin listener runs beside the proxy, and SIGTERM flushes the spans still queued", async () => {
    const r = await startOtlpReceiver();
    cleanups.push(() => r.stop());
    const b = backend("b1");
    // A long export delay: only the shutdown flush can deliver the spans.
    const file = tempDir("fulcrum-obs-").write(
      "f.yaml",
      `listen: 127.0.0.1:0
admin: { listen: 127.0.0.1:0 }
pools: { web: { backends: ["${b.url}"] } }
telemetry: { traces: { endpoint: "${r.url}", protocol: http/json, scheduled_delay: 1m } }
`,
    );
    const child = await spawnFulcrum(["run", "--config", file]);
    cleanups.push(() => child.kill("SIGKILL"));
    const adminLine = child.lines.find((l) => l.includes('"message":"admin API listening"'));
    const adminUrl = JSON.parse(adminLine!).url as string;
    expect(await (await fetch(`${adminUrl}/ready`)).json()).toEqual({ status: "ready" });
    expect((await fetch(`${child.url}/x`)).status).toBe(200);
    expect(r.spans).toHaveLength(0);
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    expect(r.spans.map((s) => s.kind).sort()).toEqual(["CLIENT", "SERVER"]);
  });
});

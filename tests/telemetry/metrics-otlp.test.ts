import { afterEach, expect, test } from "bun:test";
import { createMetrics } from "../../core/telemetry/metrics.ts";
import { startMetricsExport, toOtlp } from "../../core/telemetry/metrics-otlp.ts";

const stops: (() => unknown)[] = [];
afterEach(async () => {
  while (stops.length) await stops.pop()!();
});

type Point = {
  attributes: { key: string; value: { stringValue: string } }[];
  asDouble?: number;
  count?: string;
  bucketCounts?: string[];
  explicitBounds?: number[];
  sum?: number;
};
type Metric = {
  name: string;
  sum?: { dataPoints: Point[]; isMonotonic: boolean; aggregationTemporality: number };
  gauge?: { dataPoints: Point[] };
  histogram?: { dataPoints: Point[] };
};
type Body = { resourceMetrics: { resource: { attributes: Point["attributes"] }; scopeMetrics: { metrics: Metric[] }[] }[] };

const attr = (p: Point, k: string) => p.attributes.find((a) => a.key === k)?.value.stringValue;

test("toOtlp: counters become cumulative monotonic sums, histograms explicit-bucket histograms", async () => {
  const m = createMetrics();
  m.requests.child("web", "b1", "GET", "2xx").inc(3);
  const h = m.requestDuration.child("web");
  h.observe(0.002);
  h.observe(0.2);
  h.observe(100);
  const body = toOtlp(await m.registry.getMetricsAsJSON(), { "service.name": "fulcrum" }, 1n, 2n) as Body;
  const metrics = body.resourceMetrics[0]!.scopeMetrics[0]!.metrics;
  expect(attr(body.resourceMetrics[0]!.resource as unknown as Point, "service.name")).toBe("fulcrum");

  const requests = metrics.find((x) => x.name === "fulcrum_requests_total")!;
  expect(requests.sum!.isMonotonic).toBe(true);
  expect(requests.sum!.aggregationTemporality).toBe(2);
  const point = requests.sum!.dataPoints[0]!;
  expect(point.asDouble).toBe(3);
  expect([attr(point, "pool"), attr(point, "backend"), attr(point, "method"), attr(point, "status_class")]).toEqual([
    "web",
    "b1",
    "GET",
    "2xx",
  ]);

  const duration = metrics.find((x) => x.name === "fulcrum_request_duration_seconds")!.histogram!.dataPoints[0]!;
  expect(duration.count).toBe("3");
  expect(duration.sum).toBeCloseTo(100.202, 5);
  expect(duration.explicitBounds![0]).toBe(0.001);
  // Per-bucket (not cumulative) counts, one more than the bounds for +Inf: 0.002 → ≤0.0025, 0.2 → ≤0.25, 100 → +Inf.
  expect(duration.bucketCounts!.length).toBe(duration.explicitBounds!.length + 1);
  expect(duration.bucketCounts!.reduce((a, b) => a + Number(b), 0)).toBe(3);
  expect(duration.bucketCounts!.at(-1)).toBe("1");
  expect(attr(duration, "le")).toBeUndefined();
});

test("startMetricsExport posts OTLP/JSON on its interval with the configured headers, and a dead collector only logs", async () => {
  const bodies: Body[] = [];
  const auth: (string | null)[] = [];
  let arrived!: () => void;
  let wanted = 2;
  const enough = new Promise<void>((r) => (arrived = r));
  const collector = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      auth.push(req.headers.get("authorization"));
      bodies.push((await req.json()) as Body);
      if (--wanted === 0) arrived();
      return new Response("{}");
    },
  });
  stops.push(() => collector.stop(true));
  const m = createMetrics();
  m.retries.child("web", "503").inc();
  const warnings: string[] = [];
  const exporter = startMetricsExport(
    () => m.registry.getMetricsAsJSON(),
    {
      endpoint: `http://127.0.0.1:${collector.port}/v1/metrics`,
      headers: { authorization: "Bearer t" },
      interval: 20,
      timeout: 1000,
    },
    { "service.name": "fulcrum" },
    { warn: (msg) => warnings.push(msg) },
  );
  stops.push(() => exporter.stop());
  await enough;
  expect(auth[0]).toBe("Bearer t");
  const names = bodies[0]!.resourceMetrics[0]!.scopeMetrics[0]!.metrics.map((x) => x.name);
  expect(names).toContain("fulcrum_retries_total");
  expect(warnings).toEqual([]);

  const dead = startMetricsExport(
    () => m.registry.getMetricsAsJSON(),
    {
      endpoint: "http://127.0.0.1:9/v1/metrics",
      headers: {},
      interval: 60_000,
      timeout: 500,
    },
    {},
    { warn: (msg) => warnings.push(msg) },
  );
  await dead.stop(); // stop() flushes once
  expect(warnings).toEqual(["metrics export failed"]);
});

test("end to end: telemetry.metrics exports the requests Fulcrum served", async () => {
  const { startFulcrum } = await import("../helpers/fulcrum.ts");
  const { startBackend } = await import("../helpers/backends.ts");
  const backend = startBackend("b1");
  stops.push(() => backend.stop());
  const seen: Body[] = [];
  let resolveSeen!: () => void;
  const gotFive = new Promise<void>((r) => (resolveSeen = r));
  const total = (b: Body) =>
    b.resourceMetrics[0]!.scopeMetrics[0]!.metrics.find((x) => x.name === "fulcrum_requests_total")?.sum?.dataPoints
      .reduce((n, p) => n + (p.asDouble ?? 0), 0) ?? 0;
  const collector = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const body = (await req.json()) as Body;
      seen.push(body);
      if (total(body) === 5) resolveSeen();
      return new Response("{}");
    },
  });
  stops.push(() => collector.stop(true));
  const f = await startFulcrum(
    `pools:\n  web: { backends: ["${backend.url}"] }\ntelemetry:\n  metrics: { endpoint: "http://127.0.0.1:${collector.port}/v1/metrics", interval: 50ms }\n`,
  );
  stops.push(() => f.stop());
  for (let i = 0; i < 5; i++) await (await fetch(f.url)).text();
  await gotFive;
  const resource = seen.at(-1)!.resourceMetrics[0]!.resource.attributes;
  expect(resource.find((a) => a.key === "service.name")?.value.stringValue).toBe("fulcrum");
});

test("toOtlp's body is an ExportMetricsServiceRequest by the official schema's OTLP/JSON rules", async () => {
  const { decodeMetricsJson, flattenMetrics } = await import("../helpers/otlp-proto.ts");
  const m = createMetrics();
  m.requests.child("web", "b1", "PURGE", "2xx").inc(2);
  m.upstreamDuration.child("web", "b1").observe(0.003);
  const body = JSON.parse(JSON.stringify(toOtlp(await m.json(), { "service.name": "fulcrum" }, 1n, 2n)));
  const { resource, metrics } = flattenMetrics(decodeMetricsJson(body));
  expect(resource["service.name"]).toBe("fulcrum");
  expect(metrics.get("fulcrum_requests_total")).toMatchObject({ kind: "sum", monotonic: true, points: [{ value: 2 }] });
  expect(metrics.get("fulcrum_upstream_duration_seconds")).toMatchObject({ kind: "histogram", points: [{ count: 1 }] });
  expect(metrics.get("process_cpu_seconds_total")?.kind).toBe("sum");
  expect(metrics.get("nodejs_eventloop_lag_seconds")?.kind).toBe("gauge");
  // The checker is strict: a misspelt field or a string enum is refused.
  expect(() => decodeMetricsJson({ resourceMetrics: [{ scopeMetric: [] }] })).toThrow("no such field");
  expect(() =>
    decodeMetricsJson({ resourceMetrics: [{ scopeMetrics: [{ metrics: [{ sum: { aggregationTemporality: "CUMULATIVE" } }] }] }] })
  )
    .toThrow("an enum must be an integer");
});

test("stop() exports once more even when an export is under way: the last export reads the metrics as they are then", async () => {
  const totals: number[] = [];
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let firstArrived!: () => void;
  const first = new Promise<void>((r) => (firstArrived = r));
  const collector = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const body = (await req.json()) as Body;
      const requests = body.resourceMetrics[0]!.scopeMetrics[0]!.metrics.find((x) => x.name === "fulcrum_requests_total");
      totals.push(requests?.sum?.dataPoints.reduce((n, p) => n + (p.asDouble ?? 0), 0) ?? 0);
      if (totals.length === 1) {
        firstArrived();
        await held; // the first export is still under way when stop() is called
      }
      return new Response("{}");
    },
  });
  stops.push(() => collector.stop(true));
  const m = createMetrics();
  const child = m.requests.child("web", "b1", "GET", "2xx");
  child.inc();
  const exporter = startMetricsExport(
    () => m.registry.getMetricsAsJSON(),
    { endpoint: `http://127.0.0.1:${collector.port}/v1/metrics`, headers: {}, interval: 60_000, timeout: 5000 },
    {},
    { warn: () => {} },
  );
  void exporter.flush();
  await first;
  child.inc(4); // served after the first export read the metrics
  const stopped = exporter.stop();
  release();
  await stopped;
  expect(totals).toEqual([1, 5]);
});

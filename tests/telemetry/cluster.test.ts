// Metrics with `workers: 2`: the primary's OTLP export at shutdown counts what every worker served
// (the workers hand over their final counts before they exit), and the primary's merged /metrics
// passes `promtool check metrics`. Each test runs a primary and two workers, stopped by pid.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { startBackend } from "../helpers/backends.ts";
import { spawnRun, tempDir, type ChildFulcrum } from "../helpers/plugins.ts";
import { startOtlpReceiver } from "../helpers/otlp-receiver.ts";
import { promtoolCheck, promtoolOrSkip } from "../helpers/prometheus.ts";
import { testScope } from "../helpers/scope.ts";

setDefaultTimeout(30_000);
const { cleanups } = testScope();

async function cluster(yaml: string): Promise<ChildFulcrum & { adminUrl: string }> {
  const file = tempDir("fulcrum-cluster-").write(
    "fulcrum.yaml",
    `listen: 127.0.0.1:0\nworkers: 2\nadmin: { listen: 127.0.0.1:0 }\nlog: { access_log: true }\n${yaml}`,
  );
  const c = await spawnRun([process.execPath, "main.ts", "run", "--config", file]);
  cleanups.push(async () => {
    c.proc.kill("SIGKILL");
    await c.closed;
  });
  const admin = await c.waitFor('"message":"admin API listening"');
  for (let from = 0, n = 0; n < 2; n++) from = c.lines.indexOf(await c.waitFor('"message":"worker listening"', from)) + 1;
  return { ...c, adminUrl: JSON.parse(admin).url as string };
}

/** `n` requests, each on a fresh connection so that the kernel spreads them over the workers; the workers that served them. */
async function burst(c: ChildFulcrum, n: number): Promise<number[]> {
  const from = c.lines.length;
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${c.url}/x?i=${i}`, { headers: { connection: "close" } });
    expect(r.status).toBe(200);
    await r.arrayBuffer();
  }
  const workers = new Set<number>();
  for (let at = from, seen = 0; seen < n; seen++) {
    const line = await c.waitFor('"message":"access"', at);
    at = c.lines.indexOf(line, at) + 1;
    workers.add(JSON.parse(line).worker);
  }
  return [...workers].sort();
}

describe("workers: 2", () => {
  test("the OTLP metrics export at SIGTERM has every worker's requests", async () => {
    const r = await startOtlpReceiver();
    cleanups.push(() => r.stop());
    const b = startBackend("b1");
    cleanups.push(() => b.stop());
    // An interval far longer than the test: the only export is the one at shutdown.
    const c = await cluster(
      `pools:\n  web: { backends: [{ url: "${b.url}", id: b1 }] }\ntelemetry:\n  metrics: { endpoint: "${r.metricsUrl}", interval: 1h }\n`,
    );
    const n = 40;
    expect(await burst(c, n)).toEqual([1, 2]);
    c.proc.kill("SIGTERM");
    expect(await c.exited).toBe(0);

    const exports = await r.waitForMetricExports(1);
    const last = exports.at(-1)!;
    const total = (name: string) => last.metrics.get(name)?.points.reduce((sum, p) => sum + (p.count ?? p.value), 0);
    expect(total("fulcrum_requests_total")).toBe(n);
    expect(total("fulcrum_upstream_attempts_total")).toBe(n);
    expect(total("fulcrum_request_duration_seconds")).toBe(n); // the histogram's count
    const requests = last.metrics.get("fulcrum_requests_total")!;
    expect(requests.kind).toBe("sum");
    expect(requests.monotonic).toBe(true);
    expect(requests.points.map((p) => p.attributes)).toEqual([{ pool: "web", backend: "b1", method: "GET", status_class: "2xx" }]);
    expect(last.resource["service.name"]).toBe("fulcrum");
  });

  test("/metrics on the primary (merged over the workers) passes promtool check metrics", async () => {
    const promtool = promtoolOrSkip();
    if (promtool === undefined) return;
    const b = startBackend("b1");
    cleanups.push(() => b.stop());
    const c = await cluster(`pools:\n  web: { backends: [{ url: "${b.url}", id: b1 }], health: { path: /, interval: 1h } }\n`);
    expect(await burst(c, 20)).toEqual([1, 2]);
    const text = await (await fetch(`${c.adminUrl}/metrics`)).text();
    expect(text).toContain("fulcrum_workers 2");
    expect(await promtoolCheck(promtool, text)).toEqual({ code: 0, output: "" });
  });
});

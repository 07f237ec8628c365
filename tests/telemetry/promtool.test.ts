// /metrics checked by Prometheus' own tool: `promtool check metrics` parses the exposition and
// applies its naming rules (a gauge must not end in _total, a counter must, units in base units…).
// promtool comes from Debian's prometheus package (.ci/install-promtool); without it these tests
// say so and skip, except under CI, which must have it. The merged /metrics of workers is checked
// in cluster.test.ts.
import { describe, expect, test } from "bun:test";
import { createMetrics } from "../../core/telemetry/metrics.ts";
import { promtoolCheck, promtoolOrSkip } from "../helpers/prometheus.ts";
import { testScope } from "../helpers/scope.ts";

const { backend, fulcrum } = testScope();
const promtool = promtoolOrSkip();

describe.skipIf(promtool === undefined)("promtool check metrics", () => {
  test("the registry as created, with no traffic yet: no gauge named *_total (prom-client's defaults)", async () => {
    const { text } = await createMetrics().render();
    // The per-type gauges stay; their `*_total` siblings are gone.
    for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) {
      expect(text).not.toContain(`# TYPE ${name} `);
    }
    expect(await promtoolCheck(promtool!, text)).toEqual({ code: 0, output: "" });
  });

  test("/metrics after traffic of every kind: proxied, retried, no route, rate limited, health checked", async () => {
    let flaky = 0;
    const handler = (req: Request, name: string) =>
      new URL(req.url).pathname === "/flaky" && ++flaky === 1 ? new Response("busy", { status: 503 }) : new Response(`hello from ${name}`);
    const bs = [backend("b1", handler), backend("b2", handler)];
    const f = await fulcrum(`pools:
  web:
    backends: [{ url: "${bs[0]!.url}", id: b1 }, { url: "${bs[1]!.url}", id: b2 }]
    health: { path: /, interval: 1h }
routes:
  - { match: { host: api.test }, pool: web, middleware: [{ rate-limit: { rate: 1/m, burst: 1 } }] }
  - { match: { path: / }, pool: web }
`);
    const web = f.server.gateway.pools.get("web")!;
    for (const b of web.backends) await web.health!.runOnce(b);
    for (const path of ["/", "/flaky", "/x?q=1"]) await (await fetch(f.url + path)).text();
    for (let i = 0; i < 2; i++) await (await fetch(f.url, { headers: { host: "api.test" } })).text(); // the second is 429
    await (await fetch(f.url, { method: "PURGE" })).text();
    const text = await (await fetch(`${f.adminUrl}/metrics`)).text();
    expect(text).toContain('fulcrum_rate_limited_total{route="api.test/ → web"} 1');
    expect(text).toContain("fulcrum_retries_total");
    expect(await promtoolCheck(promtool!, text)).toEqual({ code: 0, output: "" });
  });
});

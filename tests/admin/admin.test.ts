// The admin API on its own loopback listener, against a real Fulcrum and real backends.
import { describe, expect, test } from "bun:test";
import { getLogger } from "@logtape/logtape";
import { type TestBackend } from "../helpers/backends.ts";
import { startFulcrum, type InProcess } from "../helpers/fulcrum.ts";
import { parseConfig } from "../../core/config/load.ts";
import { startObservability } from "../../core/admin/observability.ts";
import { bunRuntime } from "../../core/runtime/bun.ts";
import type { BackendStatus } from "../../core/pool/pool.ts";
import { testScope } from "../helpers/scope.ts";

const { cleanups, backend } = testScope();
async function fulcrum(yaml: string, env?: Record<string, string>): Promise<InProcess> {
  const f = await startFulcrum(yaml, { env });
  cleanups.push(() => f.stop());
  return f;
}
function pool(bs: TestBackend[], opts: { strategy?: string; extra?: string } = {}): string {
  return `pools:
  web:
    strategy: ${opts.strategy ?? "round-robin"}
    backends:
${bs.map((b, i) => `      - { url: "${b.url}", id: b${i + 1} }`).join("\n")}
${opts.extra ?? ""}
`;
}
const get = (f: InProcess, path: string, init?: RequestInit) => fetch(`${f.adminUrl}${path}`, init);
const post = (f: InProcess, path: string, body?: unknown) =>
  fetch(`${f.adminUrl}${path}`, {
    method: "POST",
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
  });
async function hits(f: InProcess, n: number, path = "/"): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${f.url}${path}`);
    await r.text();
    const name = r.headers.get("x-backend") ?? `status ${r.status}`;
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

describe("liveness and readiness", () => {
  test("/ready is 503 until the server is attached, 200 while serving, 503 once draining; /health is 200 throughout", async () => {
    const b = backend("b1");
    const config = parseConfig(pool([b]), { file: "t.yaml", env: () => undefined });
    config.admin.listen = { hostname: "127.0.0.1", port: 0 };
    const logging = { logger: getLogger(["fulcrum"]), access: undefined, close: async () => {} };
    const obs = await startObservability(bunRuntime, config, { logging, serviceVersion: "t", env: () => undefined });
    cleanups.push(() => obs.close());
    await obs.listen();
    const admin = obs.admin!.url;
    expect((await fetch(`${admin}/health`)).status).toBe(200);
    const starting = await fetch(`${admin}/ready`);
    expect(starting.status).toBe(503);
    expect(await starting.json()).toEqual({ status: "starting" });

    const f = await fulcrum(pool([b]));
    expect((await get(f, "/ready")).status).toBe(200);
    expect(await (await get(f, "/health")).json()).toEqual({ status: "ok" });
    f.obs.draining(); // what SIGTERM does first
    const draining = await get(f, "/ready");
    expect(draining.status).toBe(503);
    expect(await draining.json()).toEqual({ status: "draining" });
    expect((await get(f, "/health")).status).toBe(200);
  });
});

describe("backends", () => {
  test("GET /backends lists every pool's backends with health, circuit, in-flight, weight and probe results with reasons", async () => {
    const ok = backend("b1");
    const sick = backend(
      "b2",
      (req, name) => (new URL(req.url).pathname === "/healthz" ? new Response("no", { status: 503 }) : new Response(name)),
    );
    const f = await fulcrum(
      pool([ok, sick], { extra: "    health: { path: /healthz, interval: 1h }\n    circuit_breaker: { failures: 3 }" }),
    );
    const web = f.server.gateway.pools.get("web")!;
    for (const b of web.backends) await web.health!.runOnce(b);

    const body = (await (await get(f, "/backends")).json()) as { pools: Record<string, { strategy: string; backends: BackendStatus[] }> };
    expect(Object.keys(body.pools)).toEqual(["web"]);
    expect(body.pools.web!.strategy).toBe("round-robin");
    const [b1, b2] = body.pools.web!.backends;
    expect(b1).toMatchObject({
      id: "b1",
      url: ok.url,
      weight: 1,
      healthy: true,
      available: true,
      circuit: "closed",
      inflight: 0,
      draining: false,
    });
    expect(b1!.probes[0]).toMatchObject({ ok: true, status: 200, reason: "status 200" });
    expect(b2!.probes[0]).toMatchObject({ ok: false, status: 503, reason: "status 503 not in 200-399" });
    expect((await (await get(f, "/backends/web/b2")).json()) as BackendStatus).toMatchObject({ id: "b2", probes: [{ ok: false }] });

    const missing = await get(f, "/backends/web/zz");
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: 'pool "web" has no backend "zz"', backends: ["b1", "b2"] });
    expect((await post(f, "/backends/nope/b1/drain")).status).toBe(404);
  });

  test("drain: a drained backend gets no new request while its in-flight one completes; enable puts it back", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let arrived!: (name: string) => void;
    const slowArrived = new Promise<string>((r) => (arrived = r));
    const handler = async (req: Request, name: string) => {
      if (new URL(req.url).pathname === "/slow") {
        arrived(name);
        await gate;
      }
      return new Response(`hello from ${name}\n`, { headers: { "x-backend": name } });
    };
    const bs = [backend("b1", handler), backend("b2", handler)];
    const f = await fulcrum(pool(bs));

    const slow = fetch(`${f.url}/slow`);
    const x = await slowArrived; // the backend now holding an in-flight request
    const y = x === "b1" ? "b2" : "b1";
    const drained = await post(f, `/backends/web/${x}/drain`);
    expect(drained.status).toBe(200);
    expect(await drained.json()).toMatchObject({ id: x, draining: true, available: false, inflight: 1 });

    expect(await hits(f, 10)).toEqual({ [y]: 10 });
    expect(bs.find((b) => b.name === x)!.requests).toHaveLength(1);

    release();
    const res = await slow;
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(`hello from ${x}\n`);
    const after = (await (await get(f, `/backends/web/${x}`)).json()) as BackendStatus;
    expect(after).toMatchObject({ draining: true, inflight: 0 });

    expect(await (await post(f, `/backends/web/${x}/enable`)).json()).toMatchObject({ draining: false, available: true });
    expect(await hits(f, 10)).toEqual({ b1: 5, b2: 5 });
  });

  test("draining every backend answers 503, also in panic mode", async () => {
    const f = await fulcrum(pool([backend("b1")], { extra: "    panic: true" }));
    await post(f, "/backends/web/b1/drain");
    expect((await fetch(f.url)).status).toBe(503);
  });

  test("a weight changed at run time is used by weighted round robin at once", async () => {
    const f = await fulcrum(pool([backend("b1"), backend("b2")], { strategy: "weighted-round-robin" }));
    expect(await hits(f, 4)).toEqual({ b1: 2, b2: 2 });
    const res = await fetch(`${f.adminUrl}/backends/web/b1/weight`, { method: "PUT", body: JSON.stringify({ weight: 3 }) });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: "b1", weight: 3 });
    expect(await hits(f, 8)).toEqual({ b1: 6, b2: 2 });

    for (const bad of [-1, 1.5, "3", null, 1_000_001]) {
      const r = await post(f, "/backends/web/b1/weight", { weight: bad });
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: string }).error).toStartWith(
        "weight must be a whole number from 0 to 1000000 (0 drains softly), got ",
      );
    }
    expect((await fetch(`${f.adminUrl}/backends/web/b1/weight`, { method: "POST", body: "not json" })).status).toBe(400);
  });

  test("weight 0 drains softly, as in the config: no new clients, health checks go on, a sticky client stays", async () => {
    const bs = [backend("b1"), backend("b2")];
    const f = await fulcrum(
      pool(bs, { strategy: "weighted-round-robin", extra: "    sticky: true\n    health: { path: /healthz, interval: 50ms }" }),
    );
    // A client stuck to b1.
    let cookie = "";
    for (let i = 0; i < 4 && !cookie; i++) {
      const r = await fetch(f.url);
      await r.text();
      if (r.headers.get("x-backend") === "b1") cookie = r.headers.get("set-cookie")!.split(";")[0]!;
    }
    expect(cookie).toStartWith("fulcrum_be=");

    const res = await fetch(`${f.adminUrl}/backends/web/b1/weight`, { method: "PUT", body: JSON.stringify({ weight: 0 }) });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: "b1", weight: 0, available: false, draining: false });
    expect(await hits(f, 6)).toEqual({ b2: 6 });
    const stuck = await fetch(f.url, { headers: { cookie } });
    await stuck.text();
    expect(stuck.headers.get("x-backend")).toBe("b1");
    // Still checked: new probes arrive at b1 while it takes no new clients.
    const probes = bs[0]!.requests.filter((r) => r.path === "/healthz").length;
    const deadline = Date.now() + 5000;
    while (bs[0]!.requests.filter((r) => r.path === "/healthz").length <= probes && Date.now() < deadline) await Bun.sleep(20);
    expect(bs[0]!.requests.filter((r) => r.path === "/healthz").length).toBeGreaterThan(probes);

    await post(f, "/backends/web/b1/weight", { weight: 1 });
    expect(await hits(f, 4)).toEqual({ b1: 2, b2: 2 });
  });
});

describe("reload, config, routing", () => {
  test("POST /reload reloads the running server; a rejected reload answers 422 with its problems", async () => {
    const f = await fulcrum(pool([backend("b1")]));
    const before = f.server.gateway;
    const ok = await post(f, "/reload");
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ status: "reloaded", ok: true, problems: [], restart_required: [] });
    expect(f.server.gateway).not.toBe(before);
    const server = f.server as unknown as { reload: () => Promise<unknown> };
    server.reload = async () => ({ ok: false, problems: ["f.yaml:1:1: bad"] });
    const rejected = await post(f, "/reload");
    expect(rejected.status).toBe(422);
    expect(await rejected.json()).toEqual({ status: "rejected", ok: false, problems: ["f.yaml:1:1: bad"], restart_required: [] });
  });

  test("GET /config shows the effective config with secrets masked", async () => {
    const f = await fulcrum(`${pool([backend("b1")], { extra: "    health: { path: /h, expect_body: /up/ }" })}
admin: { token: s3cret-token }
telemetry: { traces: { enabled: false, endpoint: "http://collector:4318", headers: { authorization: "Bearer abc123" } } }
`);
    const r = await get(f, "/config", { headers: { authorization: "Bearer s3cret-token" } });
    expect(r.status).toBe(200);
    const text = await r.text();
    expect(text).not.toContain("s3cret");
    expect(text).not.toContain("abc123");
    const c = JSON.parse(text);
    expect(c.admin.token).toBe("***");
    expect(c.telemetry.traces.headers).toEqual({ authorization: "***" });
    expect(c.telemetry.traces.endpoint).toBe("http://collector:4318");
    expect(c.pools.web.timeouts.connect).toBe(5000);
    expect(c.pools.web.health.expect_body).toBe("/up/");
  });

  test("admin paths are not served on the proxy listener: they go to the backend like any path", async () => {
    const b = backend("b1");
    const f = await fulcrum(pool([b]));
    expect(new URL(f.adminUrl!).port).not.toBe(new URL(f.url).port);
    for (const path of ["/metrics", "/backends", "/health", "/ready", "/config"]) {
      const r = await fetch(`${f.url}${path}`);
      expect(r.headers.get("x-backend")).toBe("b1");
      expect(await r.text()).toBe("hello from b1\n");
    }
    expect(b.requests.map((r) => r.path)).toEqual(["/metrics", "/backends", "/health", "/ready", "/config"]);
    expect((await post(f, "/backends/web/b1/drain")).status).toBe(200); // ...and do work on the admin one
  });

  test("unknown admin paths get 404 with the list of endpoints", async () => {
    const f = await fulcrum(pool([backend("b1")]));
    const r = await get(f, "/nope");
    expect(r.status).toBe(404);
    expect(((await r.json()) as { endpoints: string[] }).endpoints).toContain("GET /backends");
  });
});

describe("the bearer token", () => {
  for (const source of ["config", "env"] as const) {
    test(`from the ${source}: required everywhere except /health and /ready`, async () => {
      const base = pool([backend("b1")]);
      const f = source === "config"
        ? await fulcrum(`${base}admin: { token: "t0ken" }\n`)
        : await fulcrum(base, { FULCRUM_ADMIN_TOKEN: "t0ken" });
      for (const path of ["/backends", "/metrics", "/config"]) {
        const none = await get(f, path);
        expect(none.status).toBe(401);
        expect(none.headers.get("www-authenticate")).toBe('Bearer realm="fulcrum-admin"');
        expect((await get(f, path, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
        expect((await get(f, path, { headers: { authorization: "Bearer t0ken" } })).status).toBe(200);
      }
      expect((await post(f, "/backends/web/b1/drain")).status).toBe(401);
      expect((await get(f, "/health")).status).toBe(200);
      expect((await get(f, "/ready")).status).toBe(200);
    });
  }
});

import { describe, expect, test } from "bun:test";
import { testScope } from "../helpers/scope.ts";
import { closedPort } from "../helpers/backends.ts";
import { stickyValue } from "../../core/pool/sticky.ts";

const scope = testScope();

async function backendOf(url: string, headers: Record<string, string> = {}): Promise<string | null> {
  const r = await fetch(url, { headers });
  await r.arrayBuffer();
  expect(r.status).toBe(200);
  return r.headers.get("x-backend");
}

describe("weight 0 (a soft drain from the config)", () => {
  test("takes no new requests but stays health-checked, and keeps its sticky clients", async () => {
    const bs = scope.backends(3);
    const f = await scope.fulcrum(`pools:
  web:
    strategy: weighted-round-robin
    sticky: true
    health: { path: /healthz, interval: 50ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 1 }
    backends:
      - ${bs[0]!.url}
      - { url: ${bs[1]!.url}, weight: 0 }
      - ${bs[2]!.url}
`);
    const seen = new Set<string | null>();
    for (let i = 0; i < 40; i++) seen.add(await backendOf(f.url));
    expect(seen).toEqual(new Set(["b1", "b3"]));
    // Still probed: a drain, not a removal.
    const deadline = Date.now() + 5000;
    while (!bs[1]!.requests.some((r) => r.path === "/healthz") && Date.now() < deadline) await Bun.sleep(10);
    expect(bs[1]!.requests.every((r) => r.path === "/healthz")).toBe(true);
    expect(bs[1]!.requests.length).toBeGreaterThan(0);
    // A client already stuck to it stays (as HAProxy's drain keeps persistent sessions).
    const cookie = `fulcrum_be=${stickyValue("", "web", `127.0.0.1:${bs[1]!.port}`)}`;
    for (let i = 0; i < 5; i++) expect(await backendOf(f.url, { cookie })).toBe("b2");
  });

  test("is refused below 0 with file:line:col", async () => {
    const { parseConfig } = await import("../../core/config/load.ts");
    expect(() =>
      parseConfig("pools:\n  web:\n    backends:\n      - { url: http://127.0.0.1:1, weight: -1 }\n", {
        file: "f.yaml",
        env: () => undefined,
        strategyNames: ["round-robin"],
      })
    ).toThrow(/f\.yaml:4:\d+: pools\.web\.backends\[0\]\.weight must be a whole number >= 0 \(0 drains the backend\), got -1/);
  });
});

describe.each(["ring", "maglev"])("retries with consistent-hash (%s)", (algorithm) => {
  test("a dead backend's keys spread over the ring's next points, not onto one backend", async () => {
    const live = scope.backends(4);
    const dead = `http://127.0.0.1:${closedPort()}`;
    const f = await scope.fulcrum(`pools:
  web:
    strategy: { name: consistent-hash, options: { key: "header:x-user", algorithm: ${algorithm} } }
    retry: { attempts: 2, backoff: { base: 0ms, max: 0ms }, budget: 100% }
    backends: [${live[0]!.url}, ${live[1]!.url}, ${dead}, ${live[2]!.url}, ${live[3]!.url}]
log: { access_log: true }
`);
    const firstTry = new Map<string, string | null>();
    for (let i = 0; i < 800; i++) firstTry.set(`u${i}`, await backendOf(f.url, { "x-user": `u${i}` }));
    // The requests that hit the dead backend first were retried (attempts 2): where did they go?
    const retried = f.access().filter((a) => a.attempts === 2);
    expect(retried.length).toBeGreaterThan(80); // ~1/5 of 800
    const spread = new Map<string, number>();
    for (const a of retried) spread.set(String(a.backend), (spread.get(String(a.backend)) ?? 0) + 1);
    expect(spread.size).toBe(4);
    // About a quarter each (measured 15-35% over 20,000 keys); all on one neighbour would be 100%.
    for (const n of spread.values()) expect(n / retried.length).toBeLessThan(0.6);
    // And each key keeps its retry backend: a second round lands where the first did.
    for (let i = 0; i < 800; i += 13) expect(await backendOf(f.url, { "x-user": `u${i}` })).toBe(firstTry.get(`u${i}`)!);
  });
});

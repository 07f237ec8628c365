import { afterEach, describe, expect, test } from "bun:test";
import { getLogger } from "@logtape/logtape";
import { parseConfig } from "../../core/config/load.ts";
import { Backend, Pool } from "../../core/pool/pool.ts";
import { closedPort, startBackend, type TestBackend } from "../helpers/backends.ts";
import { ManualClock } from "../helpers/clock.ts";
import roundRobin from "../../strategies/round-robin.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** A backend whose /healthz answers with the next status from `script` (200 once it runs out). */
function scripted(script: number[]): TestBackend & { probes: number; maxConcurrent: number } {
  let concurrent = 0;
  const b = startBackend("h", async (req) => {
    const self = b as TestBackend & { probes: number; maxConcurrent: number };
    self.probes++;
    concurrent++;
    self.maxConcurrent = Math.max(self.maxConcurrent, concurrent);
    await Promise.resolve();
    concurrent--;
    const status = script.shift() ?? 200;
    return new Response(status === 200 ? "ok" : "bad", { status, headers: { "x-host-seen": req.headers.get("host") ?? "" } });
  }) as TestBackend & { probes: number; maxConcurrent: number };
  b.probes = 0;
  b.maxConcurrent = 0;
  cleanups.push(() => b.stop());
  return b;
}

function makePool(urls: string[], health: string, clock = new ManualClock()) {
  const config = parseConfig(
    `pools:\n  web:\n    backends: [${urls.map((u) => `"${u}"`).join(", ")}]\n    health: ${health}\n`,
    { file: "t.yaml", env: () => undefined },
  );
  const pc = config.pools.web!;
  const pool = new Pool("web", pc, pc.backends.map((b) => new Backend(b, pc)), roundRobin.create(), "round-robin", {
    clock,
    logger: getLogger(["test"]),
  });
  cleanups.push(() => pool.close());
  return { pool, clock, checker: pool.health!, b: pool.backends[0]! };
}

const statuses = (b: Backend) => b.health.probes.map((p) => p.ok);

describe("active health checks: thresholds (rise/fall)", () => {
  test("failing 2 of 3 probes with fall=3 stays up; 3 in a row takes it down; rise=2 brings it back", async () => {
    const backend = scripted([500, 500, 200, 500, 500, 500, 200, 200]);
    const { pool, checker, b } = makePool([backend.url], "{ path: /healthz, unhealthy_threshold: 3, healthy_threshold: 2 }");
    const seen: boolean[] = [];
    for (let i = 0; i < 8; i++) {
      await checker.runOnce(b);
      seen.push(b.activeHealthy);
    }
    expect(statuses(b)).toEqual([false, false, true, false, false, false, true, true]);
    expect(seen).toEqual([true, true, true, true, true, false, false, true]);
    expect(pool.available.length).toBe(1);
  });

  test("an unhealthy backend leaves the available set, and comes back", async () => {
    const backend = scripted([503]);
    const { pool, checker, b } = makePool([backend.url], "{ path: /healthz, unhealthy_threshold: 1, healthy_threshold: 1 }");
    await checker.runOnce(b);
    expect(pool.available).toEqual([]);
    await checker.runOnce(b);
    expect(pool.available).toEqual([b]);
  });

  test("initial: unknown keeps a backend out until its first probe passes", async () => {
    const backend = scripted([]);
    const { pool, checker, b } = makePool([backend.url], "{ path: /healthz, initial: unknown }");
    expect(pool.available).toEqual([]);
    await checker.runOnce(b);
    expect(pool.available).toEqual([b]);
  });
});

describe("active health checks: what counts as healthy", () => {
  test("expect_status ranges and the reason recorded", async () => {
    const backend = scripted([204, 302, 404]);
    const { checker, b } = makePool([backend.url], '{ path: /healthz, expect_status: "200-299,404" }');
    expect((await checker.runOnce(b)).reason).toBe("status 204");
    const r = await checker.runOnce(b);
    expect(r).toMatchObject({ ok: false, status: 302, reason: "status 302 not in 200-299,404" });
    expect((await checker.runOnce(b)).ok).toBe(true);
  });

  test("expect_body as substring and as /regex/", async () => {
    const backend = scripted([]);
    const sub = makePool([backend.url], "{ path: /healthz, expect_body: ok }");
    expect((await sub.checker.runOnce(sub.b)).ok).toBe(true);
    const re = makePool([backend.url], '{ path: /healthz, expect_body: "/^o.$/" }');
    expect((await re.checker.runOnce(re.b)).ok).toBe(true);
    const miss = makePool([backend.url], "{ path: /healthz, expect_body: ready }");
    expect(await miss.checker.runOnce(miss.b)).toMatchObject({ ok: false, reason: "status 200, body did not match ready" });
  });

  test("the Host header is configurable", async () => {
    let host = "";
    const backend = startBackend("h", (req) => ((host = req.headers.get("host") ?? ""), new Response("ok")));
    cleanups.push(() => backend.stop());
    const { checker, b } = makePool([backend.url], "{ path: /healthz, host: health.internal }");
    await checker.runOnce(b);
    expect(host).toBe("health.internal");
  });

  test("a refused connection and a timeout are failures with their reason", async () => {
    const dead = makePool([`http://127.0.0.1:${closedPort()}`], "{ path: /healthz }");
    expect((await dead.checker.runOnce(dead.b)).reason).toBe("connect: ECONNREFUSED");
    const hang = startBackend("hang", () => new Promise<Response>(() => {}));
    cleanups.push(() => hang.stop());
    const slow = makePool([hang.url], "{ path: /healthz, timeout: 100ms }");
    expect(await slow.checker.runOnce(slow.b)).toMatchObject({ ok: false, reason: "timeout after 100ms" });
  });

  test("keeps the last 10 probe results with reasons", async () => {
    const backend = scripted([]);
    const { checker, b } = makePool([backend.url], "{ path: /healthz }");
    for (let i = 0; i < 12; i++) await checker.runOnce(b);
    expect(b.status().probes.length).toBe(10);
    expect(b.status().probes[0]).toMatchObject({ ok: true, status: 200, reason: "status 200" });
  });
});

describe("active health checks: scheduling under fake time", () => {
  test("probes all backends on their interval, with jitter, never two at once per backend", async () => {
    const backends = [scripted([]), scripted([]), scripted([])];
    const { pool, clock, checker } = makePool(backends.map((b) => b.url), "{ path: /healthz, interval: 1s, jitter: 100ms }");
    pool.start();
    for (let t = 0; t < 10; t++) {
      clock.advance(1_100);
      await checker.settled();
    }
    for (const b of backends) {
      // 11 s with a 1.0-1.1 s period and a first probe within the first second.
      expect(b.probes).toBeGreaterThanOrEqual(9);
      expect(b.probes).toBeLessThanOrEqual(11);
      expect(b.maxConcurrent).toBe(1);
    }
  });

  /** Probe a backend that is up for 1 s and down for 1 s, every 250 ms for 20 s; returns flip times. */
  async function flapping(threshold: number): Promise<{ flips: number[]; b: Backend }> {
    const clock = new ManualClock();
    const backend = startBackend("flap", () => {
      const up = Math.floor(clock.now() / 1000) % 2 === 0;
      return new Response(up ? "ok" : "down", { status: up ? 200 : 503 });
    });
    cleanups.push(() => backend.stop());
    const health = `{ path: /healthz, interval: 250ms, jitter: 0ms, healthy_threshold: ${threshold}, unhealthy_threshold: ${threshold} }`;
    const { pool, checker, b } = makePool([backend.url], health, clock);
    const flips: number[] = [];
    let last = b.activeHealthy;
    pool.start();
    for (let step = 0; step < 80; step++) {
      clock.advance(250);
      await checker.settled();
      if (b.activeHealthy !== last) {
        flips.push(clock.now());
        last = b.activeHealthy;
      }
    }
    return { flips, b };
  }

  test("a flapping backend (up 1 s, down 1 s) flips no faster than the thresholds allow", async () => {
    const { flips, b } = await flapping(5);
    // Each half-period gives at most 4 equal probes in a row, never the 5 a flip needs.
    expect(flips).toEqual([]);
    expect(statuses(b).includes(false)).toBe(true);
  });

  test("with fall=rise=3 the flapping backend flips, but never sooner than 3 probes after the last flip", async () => {
    const { flips } = await flapping(3);
    expect(flips.length).toBeGreaterThan(4);
    for (let i = 1; i < flips.length; i++) expect(flips[i]! - flips[i - 1]!).toBeGreaterThanOrEqual(3 * 250);
  });
});

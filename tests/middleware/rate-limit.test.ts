import { afterEach, describe, expect, test } from "bun:test";
import { Hono } from "hono";
import { clientAddress, parseCidr } from "../../core/middleware/client-ip.ts";
import rateLimit, { createRateLimit, parseRate, type RateLimitOptions } from "../../core/middleware/rate-limit.ts";
import { isTransform } from "../../core/plugins/registry.ts";
import { TokenBuckets } from "../../core/middleware/token-buckets.ts";
import type { PluginApi } from "../../core/plugins/api.ts";
import { startBackends } from "../helpers/backends.ts";
import { startFromFile, tempDir } from "../helpers/plugins.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const api: PluginApi = {
  strategy: () => {
    throw new Error("unused");
  },
  key: (name) => {
    if (name !== "tenant") throw new Error(`unknown key ${name}`);
    return (req) => req.headers.get("x-tenant") ?? undefined;
  },
  log: { debug() {}, info() {}, warn() {}, error() {} },
};

/** A route with the rate limiter in front of a 200, on a fake clock. */
function limited(options: RateLimitOptions) {
  const clock = { now: 0 };
  const app = new Hono<{ Bindings: { ex: { clientIp: string } } }>();
  app.use("*", createRateLimit(options, api, () => clock.now) as never);
  app.all("*", (c) => c.text("ok"));
  const send = (ip = "192.0.2.1", headers: Record<string, string> = {}) => app.request("http://x/", { headers }, { ex: { clientIp: ip } });
  const burst = async (n: number, ip?: string, headers?: Record<string, string>) => {
    let allowed = 0;
    for (let i = 0; i < n; i++) if ((await send(ip, headers)).status === 200) allowed++;
    return { allowed, denied: n - allowed };
  };
  return { clock, send, burst };
}

describe("rate-limit: token bucket under fake time", () => {
  test("rate 10/s, burst 5: exactly 5 of 8 at once, one more after 100ms, the burst back after a second", async () => {
    const l = limited({ rate: "10/s", burst: 5 });
    expect(await l.burst(8)).toEqual({ allowed: 5, denied: 3 });
    l.clock.now = 100;
    expect(await l.burst(2)).toEqual({ allowed: 1, denied: 1 });
    l.clock.now = 99_000;
    expect(await l.burst(6)).toEqual({ allowed: 5, denied: 1 });
  });

  test("a steady 20 req/s against 10/s allows the burst plus exactly the rate: 104 of 200 in 10s", async () => {
    const l = limited({ rate: "10/s", burst: 5 });
    let allowed = 0;
    for (let i = 0; i < 200; i++) {
      l.clock.now = i * 50;
      if ((await l.send()).status === 200) allowed++;
    }
    // 5 (burst) + 10/s × 9.95s = 104.5 tokens by the last request.
    expect(allowed).toBe(104);
  });

  test("6000/m is 100/s; the default burst is the rate's count", async () => {
    expect(parseRate("6000/m")).toEqual({ perSecond: 100, count: 6000 });
    expect(parseRate("10/30s")!.perSecond).toBeCloseTo(1 / 3);
    const l = limited({ rate: "3/h" });
    expect(await l.burst(5)).toEqual({ allowed: 3, denied: 2 });
    l.clock.now = 20 * 60_000; // one token per 20 minutes
    expect(await l.burst(2)).toEqual({ allowed: 1, denied: 1 });
  });

  test("each client IP has its own bucket", async () => {
    const l = limited({ rate: "1/m", burst: 2 });
    expect(await l.burst(3, "192.0.2.1")).toEqual({ allowed: 2, denied: 1 });
    expect(await l.burst(3, "192.0.2.2")).toEqual({ allowed: 2, denied: 1 });
  });
});

describe("rate-limit: headers", () => {
  test("429 carries Retry-After, RateLimit-Policy and RateLimit; allowed responses carry the last two", async () => {
    const l = limited({ rate: "1/m", burst: 2 });
    const first = await l.send();
    expect(first.status).toBe(200);
    expect(first.headers.get("ratelimit-policy")).toBe('"default";q=2;w=120');
    expect(first.headers.get("ratelimit")).toBe('"default";r=1;t=60');
    await l.send();
    l.clock.now = 15_000;
    const denied = await l.send();
    expect(denied.status).toBe(429);
    expect(denied.headers.get("retry-after")).toBe("45");
    expect(denied.headers.get("ratelimit")).toBe('"default";r=0;t=105');
    expect(denied.headers.get("ratelimit-policy")).toBe('"default";q=2;w=120');
  });

  test("headers: false leaves allowed responses alone; policy names the policy", async () => {
    const l = limited({ rate: "1/s", burst: 1, headers: false, policy: "api" });
    expect((await l.send()).headers.get("ratelimit")).toBeNull();
    expect((await l.send()).headers.get("ratelimit-policy")).toBe('"api";q=1;w=1');
  });
});

describe("rate-limit: keys", () => {
  test("X-Forwarded-For is believed only from trusted proxies, read from the right", async () => {
    const l = limited({ rate: "1/m", burst: 1, trusted_proxies: ["10.0.0.0/8", "fd00::/8"] });
    const xff = (v: string) => ({ "x-forwarded-for": v });
    expect((await l.send("10.0.0.1", xff("198.51.100.7, 10.1.1.1"))).status).toBe(200);
    // Same client behind another trusted proxy hop, and a forged left-most entry: same bucket.
    expect((await l.send("fd00::5", xff("6.6.6.6, 198.51.100.7, 10.2.2.2"))).status).toBe(429);
    expect((await l.send("10.0.0.1", xff("198.51.100.8"))).status).toBe(200);
    // An untrusted peer's header is ignored: keyed by the peer.
    expect((await l.send("203.0.113.9", xff("198.51.100.99"))).status).toBe(200);
    expect((await l.send("203.0.113.9", xff("198.51.100.100"))).status).toBe(429);
  });

  test("client addresses: CIDR parsing and matching for IPv4, IPv6 and mapped IPv4", () => {
    const addr = clientAddress(["127.0.0.1", "192.168.0.0/16", "2001:db8::/32"]);
    expect(addr("::ffff:127.0.0.1", "1.2.3.4")).toBe("1.2.3.4");
    expect(addr("192.168.7.7", "1.2.3.4, 192.168.1.1")).toBe("1.2.3.4");
    expect(addr("2001:db8:1::1", "2001:db8::2, 2001:db9::1")).toBe("2001:db9::1");
    expect(addr("192.169.0.1", "1.2.3.4")).toBe("192.169.0.1");
    expect(() => parseCidr("10.0.0.0/33")).toThrow(RangeError);
    expect(() => parseCidr("nope")).toThrow(
      'trusted_proxies: each entry must be an IP address or CIDR such as 10.0.0.0/8 or fd00::/8, got "nope"',
    );
  });

  test("header:NAME keys by the header, falling back to the client IP", async () => {
    const l = limited({ rate: "1/m", burst: 1, key: "header:x-api-key" });
    expect((await l.send("192.0.2.1", { "x-api-key": "a" })).status).toBe(200);
    expect((await l.send("192.0.2.2", { "x-api-key": "a" })).status).toBe(429);
    expect((await l.send("192.0.2.2", { "x-api-key": "b" })).status).toBe(200);
    expect((await l.send("192.0.2.2")).status).toBe(200);
    expect((await l.send("192.0.2.2")).status).toBe(429);
  });

  test("bad options are rejected in create(), naming the option and the value", () => {
    const make = (o: unknown) => () => createRateLimit(o as RateLimitOptions, api);
    expect(make({ rate: "100 per second" })).toThrow('rate must be like 100/s, 6000/m or 10/30s, got "100 per second"');
    expect(make({ rate: "1/s", burst: 0 })).toThrow("burst must be a positive integer, got 0");
    expect(make({ rate: "1/s", brust: 3 })).toThrow('unknown option "brust"');
    expect(make({ rate: "1/s", key: "cookie:x" })).toThrow('key must be client-ip, header:NAME or { plugin: ./key.ts }, got "cookie:x"');
    expect(make({ rate: "1/s", trusted_proxies: ["10.0.0.0/8", "x"] })).toThrow("trusted_proxies");
  });
});

describe("rate-limit: bounded memory", () => {
  test("idle buckets that have refilled are forgotten as new keys arrive", () => {
    const clock = { now: 0 };
    const b = new TokenBuckets({ ratePerSecond: 10, burst: 10, maxKeys: 1000, now: () => clock.now });
    for (let i = 0; i < 500; i++) b.take(`old-${i}`);
    expect(b.size).toBe(500);
    clock.now = 1000; // a full refill: the old buckets are as good as new
    for (let i = 0; i < 300; i++) b.take(`new-${i}`);
    expect(b.size).toBe(300); // each new key drops up to two idle ones: all 500 are gone
    expect(b.evictions).toBe(0);
  });

  test("the cap holds: the least recently used bucket is evicted, not the active ones", () => {
    const clock = { now: 0 };
    const b = new TokenBuckets({ ratePerSecond: 1, burst: 1, maxKeys: 3, now: () => clock.now });
    b.take("a");
    b.take("b");
    b.take("c");
    expect(b.take("a").allowed).toBe(false); // a is now the most recent
    b.take("d"); // evicts b, the least recently used
    expect(b.size).toBe(3);
    expect(b.evictions).toBe(1);
    expect(b.take("a").allowed).toBe(false);
    expect(b.take("c").allowed).toBe(false);
    expect(b.take("b").allowed).toBe(true); // forgotten, so a fresh bucket
  });

  test("1,000,000 distinct keys with the default cap (100,000) keep the heap growth under 32 MB", () => {
    const clock = { now: 0 };
    Bun.gc(true);
    const before = process.memoryUsage().heapUsed;
    const b = new TokenBuckets({ ratePerSecond: 100, burst: 200, maxKeys: 100_000, now: () => clock.now });
    for (let i = 0; i < 1_000_000; i++) {
      clock.now = i / 1000; // a million clients within one second: no bucket has time to expire
      const a = (i >>> 16) & 255, c = (i >>> 8) & 255, d = i & 255;
      b.take(`10.${a}.${c}.${d}`);
    }
    Bun.gc(true);
    const grown = process.memoryUsage().heapUsed - before;
    expect(b.size).toBe(100_000);
    expect(b.evictions).toBe(900_000);
    expect(grown).toBeLessThan(32 * 1024 * 1024);
  });
});

test("end to end: rate-limit with a key plugin in front of a real backend", async () => {
  const [a] = startBackends(1);
  cleanups.push(() => a!.stop());
  const t = tempDir();
  t.write(
    "tenant.ts",
    `import type { KeyPlugin } from "fulcrum";\nexport default { kind: "key", name: "tenant", create: () => (req) => req.headers.get("x-tenant") ?? undefined } satisfies KeyPlugin;\n`,
  );
  const f = await startFromFile(t.write(
    "f.yaml",
    `pools:\n  web: { backends: ["${a!.url}"] }\nroutes:\n  - pool: web\n    middleware:\n` +
      `      - rate-limit: { rate: 1/m, burst: 2, key: { plugin: ./tenant.ts } }\n`,
  ));
  cleanups.push(() => f.stop());
  const send = (tenant: string) => fetch(f.url, { headers: { "x-tenant": tenant } });
  expect([(await send("a")).status, (await send("a")).status, (await send("b")).status]).toEqual([200, 200, 200]);
  const denied = await send("a");
  expect(denied.status).toBe(429);
  expect(denied.headers.get("retry-after")).toBe("60");
  expect(await denied.text()).toBe("too many requests\n");
  expect(a!.requests.length).toBe(3);
  const access = f.records.filter((r) => r.category.join(".") === "fulcrum.access").map((r) => r.properties.status);
  expect(access).toEqual([200, 200, 200, 429]);
});

test("keyed by address or header it is a transform: the route stays on the direct path, with the same answers and headers", async () => {
  expect(isTransform(rateLimit.create({ rate: "10/s" }, api))).toBe(true);
  expect(isTransform(rateLimit.create({ rate: "10/s", key: "header:x-user" }, api))).toBe(true);
  expect(typeof rateLimit.create({ rate: "10/s", key: { name: "tenant" } }, { ...api, key: () => () => "k" })).toBe("function");
  expect(() => rateLimit.create({ rate: "10/s", key: "cookie:a" }, api)).toThrow(/key must be client-ip, header:NAME/);
  const [a] = startBackends(1);
  cleanups.push(() => a!.stop());
  const t = tempDir();
  const f = await startFromFile(t.write(
    "f.yaml",
    `pools:\n  web: { backends: ["${a!.url}"] }\nroutes:\n  - pool: web\n    middleware:\n` +
      `      - rate-limit: { rate: 1/m, burst: 2, key: "header:x-user" }\n`,
  ));
  cleanups.push(() => f.stop());
  const send = (user: string) => fetch(f.url, { headers: { "x-user": user } });
  const first = await send("a");
  await first.text();
  expect(first.status).toBe(200);
  expect(first.headers.get("ratelimit-policy")).toBe(`"default";q=2;w=120`);
  expect(first.headers.get("ratelimit")).toBe(`"default";r=1;t=60`);
  expect(first.headers.get("x-backend")).toBe("b1");
  expect([(await send("a")).status, (await send("b")).status]).toEqual([200, 200]);
  const denied = await send("a");
  expect(denied.status).toBe(429);
  expect(denied.headers.get("retry-after")).toBe("60");
  expect(denied.headers.get("ratelimit")).toBe(`"default";r=0;t=120`);
  expect(await denied.text()).toBe("too many requests\n");
  expect(a!.requests.length).toBe(3);
  const access = f.records.filter((r) => r.category.join(".") === "fulcrum.access").map((r) => r.properties.status);
  expect(access).toEqual([200, 200, 200, 429]);
});

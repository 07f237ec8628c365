import { describe, expect, test } from "bun:test";
import type { BackendView, PluginApi, RequestInfo, Strategy, StrategyPlugin } from "../../core/plugins/api.ts";
import roundRobin from "../../strategies/round-robin.ts";
import weightedRoundRobin from "../../strategies/weighted-round-robin.ts";
import leastConnections from "../../strategies/least-connections.ts";
import consistentHash from "../../strategies/consistent-hash.ts";
import p2cEwma from "../../strategies/p2c-ewma.ts";
import { bunRuntime } from "../../core/runtime/bun.ts";
import { isPlugin } from "../../core/plugins/registry.ts";

/** Load an example plugin the way Fulcrum does (bundled, "fulcrum" served by the host). */
async function loadExample(file: string): Promise<StrategyPlugin<never>> {
  const { module } = await bunRuntime.importPlugin(new URL(`../../plugins/${file}`, import.meta.url).pathname, { fresh: false });
  if (!isPlugin(module.default) || module.default.kind !== "strategy") throw new Error(`${file} is not a strategy plugin`);
  return module.default as StrategyPlugin<never>;
}
const headerCanary = await loadExample("header-canary.ts");
const latencyP2c = await loadExample("latency-p2c.ts");

type Mutable = { -readonly [K in keyof BackendView]: BackendView[K] };

function backend(id: string, weight = 1, inflight = 0, labels: Record<string, string> = {}, latencyEwma = 0): Mutable {
  return { id, url: `http://${id}`, weight, labels, healthy: true, inflight, latencyEwma, recentErrors: 0 };
}

const req: RequestInfo = { method: "GET", path: "/", host: "h", clientIp: "127.0.0.1", headers: new Headers() };
const api: PluginApi = {
  strategy: () => {
    throw new Error("not used");
  },
  key: () => {
    throw new Error("not used");
  },
  log: { debug() {}, info() {}, warn() {}, error() {} },
};

function make(plugin: StrategyPlugin<never>, backends: readonly BackendView[], options: object = {}): Strategy {
  const s = plugin.create(options as never, api);
  s.update?.(backends);
  return s;
}

/** Requests from 64 different clients in turn, so key-hashing strategies see many keys. */
const clients: RequestInfo[] = Array.from({ length: 64 }, (_, i) => ({ ...req, clientIp: `10.0.${i >> 4}.${i}` }));

function sequence(s: Strategy, backends: readonly BackendView[], n: number, vary = false): string[] {
  return Array.from({ length: n }, (_, i) => s.pick(backends, vary ? clients[i % 64]! : req)!.id);
}

type Case = readonly [string, StrategyPlugin<never>, object];
const all: Case[] = [
  ["round-robin", roundRobin as StrategyPlugin<never>, {}],
  ["weighted-round-robin", weightedRoundRobin as StrategyPlugin<never>, {}],
  ["least-connections", leastConnections as StrategyPlugin<never>, {}],
  ["consistent-hash (ring)", consistentHash as StrategyPlugin<never>, { algorithm: "ring" }],
  ["consistent-hash (maglev)", consistentHash as StrategyPlugin<never>, { algorithm: "maglev" }],
  ["consistent-hash (ring, bounded load)", consistentHash as StrategyPlugin<never>, { bounded_load: 1.25 }],
  ["p2c-ewma", p2cEwma as StrategyPlugin<never>, {}],
  ["header-canary", headerCanary, {}],
  ["latency-p2c", latencyP2c, {}],
];
/** Strategies that honour request.tried (header-canary relies on the pool's re-asking). */
const honoursTried = new Set(["round-robin", "weighted-round-robin", "least-connections", "p2c-ewma", "latency-p2c"].concat(
  all.filter(([n]) => n.startsWith("consistent-hash")).map(([n]) => n),
));

// One conformance suite that every strategy (built-in, or example plugin loaded from its file) must pass.
describe.each(all)("conformance: %s", (name, plugin, options) => {
  const make2 = (bs: readonly BackendView[]) => make(plugin, bs, options);
  test("declares itself a strategy with a name", () => {
    expect(plugin.kind).toBe("strategy");
    expect(plugin.name).toMatch(/^[a-z0-9-]+$/);
  });

  test("picks only from the backends it is given", () => {
    const bs = [backend("a"), backend("b"), backend("c")];
    const s = make2(bs);
    for (let i = 0; i < 100; i++) expect(bs).toContain(s.pick(bs, req) as Mutable);
  });

  test("with one backend, always picks it", () => {
    const bs = [backend("only")];
    const s = make2(bs);
    expect(new Set(sequence(s, bs, 10))).toEqual(new Set(["only"]));
  });

  test("never picks a backend removed from the available set", () => {
    const bs = [backend("a"), backend("b"), backend("c")];
    const s = make2(bs);
    sequence(s, bs, 5);
    const without = [bs[0]!, bs[2]!];
    s.update?.(without);
    expect(sequence(s, without, 30)).not.toContain("b");
    expect(sequence(s, without, 64, true)).not.toContain("b");
  });

  test("reaches every backend with equal weights and no load", () => {
    const bs = [backend("a"), backend("b"), backend("c")];
    const s = make2(bs);
    expect(new Set(sequence(s, bs, 60, true))).toEqual(new Set(["a", "b", "c"]));
  });

  test("copes with pick() on a new array without update()", () => {
    const s = make2([backend("a")]);
    const bs = [backend("x"), backend("y")];
    expect(["x", "y"]).toContain(s.pick(bs, req)!.id);
  });

  test.if(honoursTried.has(name))("never picks a backend in request.tried while an untried one is left", () => {
    const bs = [backend("a"), backend("b"), backend("c"), backend("d")];
    const s = make2(bs);
    for (let i = 0; i < 200; i++) {
      const tried = [bs[i % 4]!, bs[(i + 1) % 4]!];
      const picked = s.pick(bs, { ...clients[i % 64]!, tried });
      expect(bs).toContain(picked as Mutable);
      expect(tried).not.toContain(picked as Mutable);
    }
    // Everything tried: still an answer (the pool decides whether to retry a tried backend).
    expect(bs).toContain(s.pick(bs, { ...req, tried: bs }) as Mutable);
  });
});

describe("roundRobin()", () => {
  test("rotates in order", () => {
    const bs = [backend("a"), backend("b"), backend("c")];
    expect(sequence(make(roundRobin, bs), bs, 7)).toEqual(["a", "b", "c", "a", "b", "c", "a"]);
  });

  test("skips an unavailable backend", () => {
    const bs = [backend("a"), backend("b"), backend("c")];
    const s = make(roundRobin, bs);
    const avail = [bs[0]!, bs[2]!];
    s.update?.(avail);
    expect(sequence(s, avail, 4)).toEqual(["a", "c", "a", "c"]);
  });
});

describe("weightedRoundRobin()", () => {
  test("is smooth: weights 5,1,1 give a a b a c a a", () => {
    const bs = [backend("a", 5), backend("b", 1), backend("c", 1)];
    expect(sequence(make(weightedRoundRobin, bs), bs, 7)).toEqual(["a", "a", "b", "a", "c", "a", "a"]);
  });

  test("weights 3:1 give exactly 75/25 over 400 picks", () => {
    const bs = [backend("a", 3), backend("b", 1)];
    const seq = sequence(make(weightedRoundRobin, bs), bs, 400);
    expect(seq.filter((x) => x === "a").length).toBe(300);
    expect(seq.slice(0, 4)).toEqual(["a", "a", "b", "a"]);
  });

  test("skips an unavailable backend and keeps the others' proportion", () => {
    const bs = [backend("a", 2), backend("b", 5), backend("c", 1)];
    const s = make(weightedRoundRobin, bs);
    const avail = [bs[0]!, bs[2]!];
    s.update?.(avail);
    expect(sequence(s, avail, 6)).toEqual(["a", "c", "a", "a", "c", "a"]);
  });
});

describe("leastConnections()", () => {
  test("picks the backend with the fewest in-flight requests", () => {
    const bs = [backend("a", 1, 5), backend("b", 1, 1), backend("c", 1, 3)];
    expect(make(leastConnections, bs).pick(bs, req)!.id).toBe("b");
  });

  test("weighs in-flight by weight: 4 in flight at weight 4 beats 2 at weight 1", () => {
    const bs = [backend("a", 1, 2), backend("b", 4, 4)];
    expect(make(leastConnections, bs).pick(bs, req)!.id).toBe("b");
  });

  test("rotates among ties instead of favouring the first", () => {
    const bs = [backend("a"), backend("b"), backend("c")];
    expect(sequence(make(leastConnections, bs), bs, 6)).toEqual(["a", "b", "c", "a", "b", "c"]);
  });

  test("skips an unavailable backend even when it is the least loaded", () => {
    const bs = [backend("a", 1, 3), backend("b", 1, 0), backend("c", 1, 2)];
    const s = make(leastConnections, bs);
    const avail = [bs[0]!, bs[2]!];
    s.update?.(avail);
    expect(s.pick(avail, req)!.id).toBe("c");
  });
});

describe("header-canary (plugins/header-canary.ts)", () => {
  const bs = [backend("s1"), backend("c1", 1, 0, { canary: "true" }), backend("s2"), backend("c2", 1, 0, { canary: "yes" })];
  const canaryReq: RequestInfo = { ...req, headers: new Headers({ "x-canary": "1" }) };

  test("x-canary: 1 goes to the canary backends in turn, everything else to the others", () => {
    const s = make(headerCanary, bs);
    expect(Array.from({ length: 4 }, () => s.pick(bs, canaryReq)!.id)).toEqual(["c1", "c2", "c1", "c2"]);
    expect(sequence(s, bs, 4)).toEqual(["s1", "s2", "s1", "s2"]);
  });

  test("with no canary available, canary requests use the others rather than fail", () => {
    const stable = [bs[0]!, bs[2]!];
    const s = make(headerCanary, stable);
    expect(s.pick(stable, canaryReq)!.id).toBe("s1");
  });

  test("options: another header, value and label; bad options are rejected", () => {
    const s = headerCanary.create({ header: "x-env", value: "beta", label: "tier" } as never, api);
    const mixed = [backend("a"), backend("b", 1, 0, { tier: "beta" })];
    s.update?.(mixed);
    expect(s.pick(mixed, { ...req, headers: new Headers({ "x-env": "beta" }) })!.id).toBe("b");
    expect(() => headerCanary.create({ header: "bad header" } as never, api)).toThrow("header must be a header name");
  });
});

describe("latency-p2c (plugins/latency-p2c.ts)", () => {
  test("of two random choices, takes the lower latency × (in-flight + 1)", () => {
    const fast = backend("fast", 1, 0, {}, 5);
    const slow = backend("slow", 1, 0, {}, 50);
    const bs = [fast, slow];
    const s = make(latencyP2c, bs);
    expect(new Set(sequence(s, bs, 50))).toEqual(new Set(["fast"]));
    fast.inflight = 20; // 5 × 21 > 50 × 1
    expect(s.pick(bs, req)!.id).toBe("slow");
  });

  test("spreads load over many equal backends, and is reproducible with a seed", () => {
    const bs = Array.from({ length: 10 }, (_, i) => backend(`b${i}`, 1, 0, {}, 10));
    const a = latencyP2c.create({ seed: 7 } as never, api);
    const b = latencyP2c.create({ seed: 7 } as never, api);
    const seqA = sequence(a, bs, 1000);
    expect(sequence(b, bs, 1000)).toEqual(seqA);
    const counts = new Map<string, number>();
    for (const id of seqA) counts.set(id, (counts.get(id) ?? 0) + 1);
    expect(counts.size).toBe(10);
    for (const n of counts.values()) expect(n).toBeGreaterThan(50);
  });
});

describe("p2c-ewma (built in)", () => {
  const observe = (s: Strategy, b: BackendView, latencyMs: number, status = 200) => s.observe!(b, { status, latencyMs });

  test("of two random choices, takes the lower peak-EWMA latency × (in-flight + 1)", () => {
    const fast = backend("fast");
    const slow = backend("slow");
    const bs = [fast, slow];
    const s = make(p2cEwma, bs, { seed: 3 });
    observe(s, fast, 5);
    observe(s, slow, 50);
    expect(new Set(sequence(s, bs, 50))).toEqual(new Set(["fast"]));
    fast.inflight = 20; // 5 × 21 > 50 × 1
    expect(s.pick(bs, req)!.id).toBe("slow");
  });

  test("jumps to a slow response at once (the peak) and decays back towards fast ones", () => {
    const a = backend("a");
    const b = backend("b");
    const bs = [a, b];
    const s = make(p2cEwma, bs, { seed: 5, decay: "1ms" });
    observe(s, a, 10);
    observe(s, b, 20);
    observe(s, a, 500); // one slow response: a is now the worse one
    expect(s.pick(bs, req)!.id).toBe("b");
    // Fast answers again, with the decay time long past: a's estimate falls back below b's.
    const until = performance.now() + 5;
    while (performance.now() < until) { /* let the 1ms decay elapse */ }
    observe(s, a, 10);
    expect(s.pick(bs, req)!.id).toBe("a");
  });

  test("a failing backend does not attract traffic by failing fast", () => {
    const a = backend("a");
    const b = backend("b");
    const bs = [a, b];
    const s = make(p2cEwma, bs, { seed: 9 });
    observe(s, a, 20);
    observe(s, b, 20);
    observe(s, b, 1, 502);
    expect(new Set(sequence(s, bs, 20))).toEqual(new Set(["a"]));
  });

  test("a new backend costs nothing while idle, a penalty once it has requests but no latency", () => {
    const known = backend("known");
    const fresh = backend("fresh");
    const bs = [known, fresh];
    const s = make(p2cEwma, bs, { seed: 1 });
    observe(s, known, 30);
    expect(s.pick(bs, req)!.id).toBe("fresh");
    fresh.inflight = 1;
    expect(s.pick(bs, req)!.id).toBe("known");
  });

  test("bad options are refused, naming the option", () => {
    expect(() => (p2cEwma as StrategyPlugin<never>).create({ decay: "soon" } as never, api)).toThrow(
      'decay must be a duration like 10s or 500ms, got "soon"',
    );
    expect(() => (p2cEwma as StrategyPlugin<never>).create({ seed: 1.5 } as never, api)).toThrow("seed must be an integer, got 1.5");
  });
});

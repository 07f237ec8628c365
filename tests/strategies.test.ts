import { describe, expect, test } from "bun:test";
import type { BackendView, PluginApi, RequestInfo, Strategy, StrategyPlugin } from "../core/plugin-api.ts";
import roundRobin from "../strategies/round-robin.ts";
import weightedRoundRobin from "../strategies/weighted-round-robin.ts";
import leastConnections from "../strategies/least-connections.ts";

type Mutable = { -readonly [K in keyof BackendView]: BackendView[K] };

function backend(id: string, weight = 1, inflight = 0): Mutable {
  return { id, url: `http://${id}`, weight, labels: {}, healthy: true, inflight, latencyEwma: 0, recentErrors: 0 };
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

function make(plugin: StrategyPlugin<never>, backends: readonly BackendView[]): Strategy {
  const s = plugin.create({} as never, api);
  s.update?.(backends);
  return s;
}

function sequence(s: Strategy, backends: readonly BackendView[], n: number): string[] {
  return Array.from({ length: n }, () => s.pick(backends, req)!.id);
}

const all = [roundRobin, weightedRoundRobin, leastConnections] as StrategyPlugin<never>[];

// One conformance suite that every strategy (built-in or plugin) must pass.
describe.each(all.map((p) => [p.name, p] as const))("conformance: %s", (_name, plugin) => {
  test("declares itself a strategy with a name", () => {
    expect(plugin.kind).toBe("strategy");
    expect(plugin.name).toMatch(/^[a-z0-9-]+$/);
  });

  test("picks only from the backends it is given", () => {
    const bs = [backend("a"), backend("b"), backend("c")];
    const s = make(plugin, bs);
    for (let i = 0; i < 100; i++) expect(bs).toContain(s.pick(bs, req) as Mutable);
  });

  test("with one backend, always picks it", () => {
    const bs = [backend("only")];
    const s = make(plugin, bs);
    expect(new Set(sequence(s, bs, 10))).toEqual(new Set(["only"]));
  });

  test("never picks a backend removed from the available set", () => {
    const bs = [backend("a"), backend("b"), backend("c")];
    const s = make(plugin, bs);
    sequence(s, bs, 5);
    const without = [bs[0]!, bs[2]!];
    s.update?.(without);
    expect(sequence(s, without, 30)).not.toContain("b");
  });

  test("reaches every backend with equal weights and no load", () => {
    const bs = [backend("a"), backend("b"), backend("c")];
    const s = make(plugin, bs);
    expect(new Set(sequence(s, bs, 30))).toEqual(new Set(["a", "b", "c"]));
  });

  test("copes with pick() on a new array without update()", () => {
    const s = make(plugin, [backend("a")]);
    const bs = [backend("x"), backend("y")];
    expect(["x", "y"]).toContain(s.pick(bs, req)!.id);
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

import { describe, expect, test } from "bun:test";
import type { BackendView, PluginApi, RequestInfo, Strategy, StrategyPlugin } from "../../core/plugins/api.ts";
import consistentHash, { hash32 } from "../../strategies/consistent-hash.ts";
import { hash32 as coreHash32 } from "../../core/lib/hash.ts";

type Mutable = { -readonly [K in keyof BackendView]: BackendView[K] };

function backend(id: string, weight = 1): Mutable {
  return { id, url: `http://${id}`, weight, labels: {}, healthy: true, inflight: 0, latencyEwma: 0, recentErrors: 0 };
}

const api = { log: { debug() {}, info() {}, warn() {}, error() {} } } as unknown as PluginApi;
const base: RequestInfo = { method: "GET", path: "/", host: "h", clientIp: "127.0.0.1", headers: new Headers(), query: "" };
const userReq = (u: string): RequestInfo => ({ ...base, headers: new Headers({ "x-user": u }) });

function make(backends: readonly BackendView[], options: object): Strategy {
  const s = (consistentHash as StrategyPlugin<never>).create(options as never, api);
  s.update?.(backends);
  return s;
}

const five = () => ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80", "10.0.0.5:80"].map((id) => backend(id));
const KEYS = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

function assign(s: Strategy, bs: readonly BackendView[]): string[] {
  return KEYS.map((k) => s.pick(bs, userReq(k))!.id);
}

describe("consistent-hash: the hash", () => {
  test("is FNV-1a 32 with a fmix32 finish: fixed values, the same in core/lib/hash.ts (no per-process seed)", () => {
    // Golden values (checked against an independent implementation): every process computes these.
    expect(hash32("")).toBe(coreHash32(""));
    expect(hash32("user-1")).toBe(coreHash32("user-1"));
    expect(hash32("10.0.0.1:80#0")).toBe(coreHash32("10.0.0.1:80#0"));
    expect([hash32(""), hash32("a"), hash32("user-1")]).toEqual([2872998923, 444641715, 2005895916]);
    // A slice hashes like the string cut out.
    expect(hash32("xx-user-1;", 0, 3, 9)).toBe(hash32("user-1"));
  });
});

describe.each(["ring", "maglev"] as const)("consistent-hash (%s)", (algorithm) => {
  test("the same key always reaches the same backend, from a fresh instance too", () => {
    const bs = five();
    const a = assign(make(bs, { key: "header:x-user", algorithm }), bs);
    const b = assign(make(five(), { key: "header:x-user", algorithm }), five());
    expect(b).toEqual(a);
  });

  test("10,000 keys over 5 backends, one removed: at most 25% move, all of the removed backend's", () => {
    const bs = five();
    const s = make(bs, { key: "header:x-user", algorithm });
    const before = assign(s, bs);
    const without = bs.filter((b) => b.id !== "10.0.0.3:80");
    s.update?.(without);
    const after = assign(s, without);
    let moved = 0;
    let movedOthers = 0;
    for (let i = 0; i < KEYS.length; i++) {
      if (before[i] !== after[i]) {
        moved++;
        if (before[i] !== "10.0.0.3:80") movedOthers++;
      }
      if (before[i] === "10.0.0.3:80") expect(after[i]).not.toBe("10.0.0.3:80");
    }
    expect(moved / KEYS.length).toBeLessThanOrEqual(0.25);
    expect(moved / KEYS.length).toBeGreaterThan(0.1);
    // Ring: exactly the removed backend's keys. Maglev refills its table and moves a few more.
    if (algorithm === "ring") expect(movedOthers).toBe(0);
    else expect(movedOthers / KEYS.length).toBeLessThan(0.03);
  });

  test("keys spread evenly, and in proportion to weight", () => {
    const bs = five();
    const counts = new Map<string, number>();
    for (const id of assign(make(bs, { key: "header:x-user", algorithm }), bs)) counts.set(id, (counts.get(id) ?? 0) + 1);
    for (const n of counts.values()) expect(Math.abs(n - 2000)).toBeLessThan(algorithm === "ring" ? 500 : 150);
    const weighted = [backend("a", 3), backend("b", 1)];
    const s = make(weighted, { key: "header:x-user", algorithm });
    const toA = assign(s, weighted).filter((id) => id === "a").length / KEYS.length;
    expect(toA).toBeGreaterThan(0.7);
    expect(toA).toBeLessThan(0.8);
  });

  test("a retry walks on past the tried backend: its keys spread over the others, not onto one", () => {
    const bs = five();
    const s = make(bs, { key: "header:x-user", algorithm });
    const dead = bs[1]!;
    const next = new Map<string, number>();
    let deadKeys = 0;
    for (const k of KEYS) {
      if (s.pick(bs, userReq(k)) !== dead) continue;
      deadKeys++;
      const b = s.pick(bs, { ...userReq(k), tried: [dead] })!;
      expect(b).not.toBe(dead);
      next.set(b.id, (next.get(b.id) ?? 0) + 1);
      // The same key retries onto the same backend every time: still consistent.
      expect(s.pick(bs, { ...userReq(k), tried: [dead] })).toBe(b);
    }
    expect(next.size).toBe(4);
    // Each of the other four takes 10-40% of the dead backend's keys (ideal 25%).
    for (const n of next.values()) {
      expect(n / deadKeys).toBeGreaterThan(0.1);
      expect(n / deadKeys).toBeLessThan(0.4);
    }
  });

  test("bounded_load 1.25: with hot keys, no backend holds more than 1.25 × the average in flight", () => {
    const run = (options: object) => {
      const bs = five();
      const s = make(bs, { key: "header:x-user", algorithm, ...options });
      let over = 0;
      // 2,000 requests held in flight; 80% of them carry one of 5 hot keys.
      for (let i = 0; i < 2000; i++) {
        const k = i % 5 !== 0 ? `hot-${i % 5}` : `user-${i}`;
        const b = s.pick(bs, userReq(k)) as Mutable;
        b.inflight++;
        // The bound, when the request is placed: ceil(1.25 × the average in flight, this one counted).
        const total = bs.reduce((t, x) => t + x.inflight, 0);
        if (b.inflight > Math.ceil((1.25 * total) / bs.length)) over++;
        // Some finish: the load moves while keys keep arriving.
        if (i % 3 === 0) {
          const done = bs[i % 5]!;
          if (done.inflight > 0) done.inflight--;
        }
      }
      return { over, load: bs.map((b) => b.inflight) };
    };
    const bounded = run({ bounded_load: 1.25 });
    expect(bounded.over).toBe(0);
    const avg = bounded.load.reduce((a, b) => a + b, 0) / 5;
    for (const n of bounded.load) expect(n).toBeLessThanOrEqual(Math.ceil(1.25 * avg) + 1);
    // Without the bound the hot keys pile onto their backends.
    const unbounded = run({});
    expect(unbounded.over).toBeGreaterThan(100);
    const uAvg = unbounded.load.reduce((a, b) => a + b, 0) / 5;
    expect(Math.max(...unbounded.load)).toBeGreaterThan(1.25 * uAvg);
  });

  test("bounded_load is weight-aware: a weight-3 backend may hold three times a weight-1 one's share", () => {
    const bs = [backend("big", 3), backend("small", 1)];
    const s = make(bs, { key: "header:x-user", algorithm, bounded_load: 1.25 });
    for (let i = 0; i < 400; i++) (s.pick(bs, userReq("same-key")) as Mutable).inflight++;
    expect(bs[0]!.inflight + bs[1]!.inflight).toBe(400);
    expect(bs[0]!.inflight).toBeLessThanOrEqual(Math.ceil(1.25 * 400 * 0.75) + 1);
    expect(bs[1]!.inflight).toBeLessThanOrEqual(Math.ceil(1.25 * 400 * 0.25) + 1);
  });
});

describe("consistent-hash keys", () => {
  const bs = five();
  const stickTo = (key: string, reqs: RequestInfo[]) => {
    const s = make(bs, { key });
    const ids = new Set(reqs.map((r) => s.pick(bs, r)!.id));
    return ids.size;
  };

  test("cookie:session hashes that cookie's value wherever it sits in the Cookie header", () => {
    const s = make(bs, { key: "cookie:session" });
    const at = (cookie: string) => s.pick(bs, { ...base, clientIp: `10.1.1.${cookie.length}`, headers: new Headers({ cookie }) })!.id;
    const b = at("session=abc123");
    expect(at("a=1; session=abc123")).toBe(b);
    expect(at("a=1; session=abc123; z=9")).toBe(b);
    expect(at("session=abc123, other=2")).toBe(b);
    // Different sessions land on different backends.
    const ids = new Set(Array.from({ length: 50 }, (_, i) => at(`session=s${i}`)));
    expect(ids.size).toBeGreaterThan(1);
  });

  test("query:id, path and client-ip each keep a key on one backend", () => {
    const q = (query: string, i: number) => ({ ...base, query, path: `/p${i}`, clientIp: `10.2.0.${i}` });
    expect(stickTo("query:id", Array.from({ length: 20 }, (_, i) => q(`x=${i}&id=42&y=${i}`, i)))).toBe(1);
    expect(stickTo("path", Array.from({ length: 20 }, (_, i) => ({ ...base, path: "/cart", clientIp: `10.3.0.${i}` })))).toBe(1);
    expect(stickTo("client-ip", Array.from({ length: 20 }, (_, i) => ({ ...base, path: `/p${i}` })))).toBe(1);
    expect(stickTo("header:x-user", Array.from({ length: 20 }, (_, i) => ({ ...userReq("u1"), path: `/p${i}` })))).toBe(1);
    // `id=` is not `xid=`.
    const s = make(bs, { key: "query:id" });
    const viaId = s.pick(bs, q("id=7", 0))!.id;
    const hits = new Set(Array.from({ length: 40 }, (_, i) => s.pick(bs, q(`xid=7&id=${i}`, i))!.id));
    expect(hits.size).toBeGreaterThan(1);
    expect(typeof viaId).toBe("string");
  });

  test("a request without the key falls back to round robin over all backends", () => {
    const s = make(bs, { key: "header:x-user" });
    const ids = Array.from({ length: 200 }, () => s.pick(bs, base)!.id);
    expect(new Set(ids).size).toBe(5);
  });

  test("bad options are refused at creation, naming the option and the value", () => {
    expect(() => make(bs, { key: "header:" })).toThrow(
      'key must be client-ip, path, header:NAME, cookie:NAME or query:NAME, got "header:"',
    );
    expect(() => make(bs, { key: "ip" })).toThrow("key must be");
    expect(() => make(bs, { algorithm: "rendezvous" })).toThrow('algorithm must be ring or maglev, got "rendezvous"');
    expect(() => make(bs, { bounded_load: 0.5 })).toThrow("bounded_load must be a number above 1 (e.g. 1.25), got 0.5");
  });
});

describe("consistent-hash reads headers through request.header() when the host offers it", () => {
  test("no Headers object is needed: header:NAME and cookie:NAME use header()", () => {
    const bs = five();
    const asked: string[] = [];
    const lean = (values: Record<string, string>): RequestInfo => ({
      ...base,
      get headers(): Headers {
        throw new Error("headers was built");
      },
      header(name: string) {
        asked.push(name);
        return values[name] ?? null;
      },
    });
    const byHeader = make(bs, { key: "header:X-User" });
    expect(byHeader.pick(bs, lean({ "x-user": "u1" }))).toBe(byHeader.pick(bs, userReq("u1"))!);
    const byCookie = make(bs, { key: "cookie:sid" });
    const viaHeaders = byCookie.pick(bs, { ...base, headers: new Headers({ cookie: "a=1; sid=zz" }) });
    expect(byCookie.pick(bs, lean({ cookie: "a=1; sid=zz" }))).toBe(viaHeaders!);
    expect(asked).toEqual(["x-user", "cookie"]);
  });
});

describe("consistent-hash sizes", () => {
  test("large weights cap the ring and keep proportions; with every backend tried, the key keeps its own", () => {
    const bs = [backend("a", 900), backend("b", 300), backend("c", 300)];
    const s = make(bs, { key: "header:x-user" });
    const toA = assign(s, bs).filter((id) => id === "a").length / KEYS.length;
    expect(toA).toBeGreaterThan(0.55);
    expect(toA).toBeLessThan(0.65);
    // Every backend tried: the key's own backend again (the walk stops after 64 points a backend).
    for (let i = 0; i < 200; i++) expect(s.pick(bs, { ...userReq(`k${i}`), tried: bs })).toBe(s.pick(bs, userReq(`k${i}`))!);
  });
});

import { afterEach, describe, expect, test } from "bun:test";
import { getLogger } from "@logtape/logtape";
import { parseConfig } from "../../core/config/load.ts";
import { Backend, Pool } from "../../core/pool/pool.ts";
import type { BackendView, RequestInfo, Strategy } from "../../core/plugins/api.ts";
import { ManualClock } from "../helpers/clock.ts";
import roundRobin from "../../strategies/round-robin.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function makePool(backends: string, strategy: Strategy = roundRobin.create(), extra = "") {
  const config = parseConfig(`pools:\n  web:\n    backends: ${backends}\n${extra}`, { file: "t.yaml", env: () => undefined });
  const pc = config.pools.web!;
  const pool = new Pool("web", pc, pc.backends.map((b) => new Backend(b, pc)), strategy, "test", {
    clock: new ManualClock(),
    logger: getLogger(["test"]),
  });
  cleanups.push(() => pool.close());
  return pool;
}

const info = (tried?: Backend[]): RequestInfo => ({
  method: "GET",
  path: "/",
  host: "h",
  clientIp: "1.2.3.4",
  headers: new Headers(),
  tried,
});
const urls = (n: number) => `[${Array.from({ length: n }, (_, i) => `"http://127.0.0.1:${9001 + i}"`).join(", ")}]`;

describe("Pool.pick() and request.tried", () => {
  test("the strategy sees the backends already tried", () => {
    const seen: (readonly BackendView[] | undefined)[] = [];
    const spy: Strategy = {
      pick(backends, request) {
        seen.push(request.tried);
        return backends[1];
      },
    };
    const pool = makePool(urls(3), spy);
    const tried = [pool.backends[0]!];
    expect(pool.pick(info(tried))).toBe(pool.backends[1]!);
    expect(seen).toEqual([tried]);
  });

  test("a strategy that ignores tried: retries still spread instead of all landing on one neighbour", () => {
    // Always offers the first backend, as a strategy unaware of retries might.
    const first: Strategy = { pick: (backends) => backends[0] };
    const pool = makePool(urls(5), first);
    const dead = pool.backends[0]!;
    const counts = new Map<string, number>();
    for (let i = 0; i < 400; i++) {
      const b = pool.pick(info([dead]))!;
      expect(b).not.toBe(dead);
      counts.set(b.id, (counts.get(b.id) ?? 0) + 1);
    }
    expect(counts.size).toBe(4);
    for (const n of counts.values()) expect(n).toBe(100);
  });

  test("every backend tried: a tried one is retried rather than none", () => {
    const pool = makePool(urls(2));
    expect(pool.backends).toContain(pool.pick(info([...pool.backends]))!);
  });
});

describe("weight 0", () => {
  test("is never offered to the strategy, and an admin weight above 0 brings it back", () => {
    const pool = makePool(`[http://127.0.0.1:9001, { url: http://127.0.0.1:9002, weight: 0 }, http://127.0.0.1:9003]`);
    expect(pool.available.map((b) => b.id)).toEqual(["127.0.0.1:9001", "127.0.0.1:9003"]);
    // What the admin API and fulcrum_backend_available report: not offered, though healthy.
    expect(pool.backends[1]!.status()).toMatchObject({ available: false, healthy: true, weight: 0 });
    pool.backends[1]!.weight = 2;
    pool.refresh(true);
    expect(pool.available.map((b) => b.id)).toEqual(["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]);
  });

  test("all weights 0: nothing is offered, not even in panic mode", () => {
    const pool = makePool(`[{ url: http://127.0.0.1:9001, weight: 0 }]`, undefined, "    panic: true\n");
    expect(pool.available).toEqual([]);
    expect(pool.pick(info())).toBeUndefined();
  });
});

// A Redis store that goes away or goes slow: `on_error` decides, no request waits longer than the
// store's `timeout`, failures are counted in /metrics and logged once, and the limit is enforced
// again within seconds of Redis coming back. A real redis-server, killed (SIGKILL) and paused
// (SIGSTOP) under load.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { testScope } from "../helpers/scope.ts";
import { startRedis, type TestRedis } from "../helpers/redis.ts";
import type { InProcess } from "../helpers/fulcrum.ts";

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

const scope = testScope();
const TIMEOUT_MS = 50;

async function fleetOfOne(onError: "allow" | "deny", timeoutMs = TIMEOUT_MS): Promise<InProcess> {
  const b = scope.backend("b1");
  return await scope.fulcrum(`
log: { level: info, access_log: false }
stores:
  shared: { redis: "${redis.url}", prefix: "o${Date.now()}:", timeout: ${timeoutMs}ms, on_error: ${onError} }
pools:
  web: { backends: [{ url: ${b.url} }] }
routes:
  - match: { path: /api }
    pool: web
    middleware:
      - rate-limit: { rate: 20/s, burst: 20, store: shared }
`);
}

/** `n` requests at once; statuses and the slowest one's time. */
async function wave(url: string, n = 10): Promise<{ statuses: number[]; slowestMs: number; times: number[] }> {
  let slowest = 0;
  const times: number[] = [];
  const statuses = await Promise.all(
    Array.from({ length: n }, async () => {
      const t = performance.now();
      const r = await fetch(`${url}/api/x`);
      await r.arrayBuffer();
      const ms = performance.now() - t;
      times.push(ms);
      slowest = Math.max(slowest, ms);
      return r.status;
    }),
  );
  return { statuses, slowestMs: slowest, times };
}

/** Waves every 20 ms until `done` says stop (bounded by `maxMs`): all statuses, the slowest request. */
async function loadUntil(url: string, done: (statuses: number[]) => boolean, maxMs: number) {
  const all: number[] = [];
  const times: number[] = [];
  let slowestMs = 0;
  const end = performance.now() + maxMs;
  while (performance.now() < end) {
    const w = await wave(url);
    all.push(...w.statuses);
    times.push(...w.times);
    slowestMs = Math.max(slowestMs, w.slowestMs);
    if (done(w.statuses)) return { statuses: all, slowestMs, times, done: true };
    await Bun.sleep(20);
  }
  return { statuses: all, slowestMs, times, done: false };
}

async function storeErrors(f: InProcess): Promise<Record<string, number>> {
  const text = await (await fetch(`${f.adminUrl}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^fulcrum_store_errors_total\{store="shared",reason="(\w+)"\} (\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

const count = (xs: number[], status: number) => xs.filter((s) => s === status).length;
const storeWarnings = (f: InProcess) => f.records.filter((r) => r.category.includes("stores") && r.level === "warning");

describe("rate-limit store outage", () => {
  test("on_error allow: Redis killed under load → every request 200 without waiting; back → 429s again within seconds", async () => {
    const f = await fleetOfOne("allow");
    // Enforced while Redis is up: 20 burst, then 429s.
    const up = await loadUntil(f.url, (s) => s.includes(429), 3000);
    expect(up.done).toBe(true);

    await redis.kill();
    try {
      const down = await loadUntil(f.url, () => false, 1500);
      expect(down.statuses.length).toBeGreaterThan(100);
      // None fails; the only 429s come first, inside the wait Redis announced before it went away
      // (20/s: the next token was due within 50 ms, two waves at most).
      expect(down.statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
      const firstOk = down.statuses.indexOf(200);
      expect(firstOk).toBeLessThanOrEqual(20);
      expect(down.statuses.slice(firstOk).every((s) => s === 200)).toBe(true);
      expect(down.slowestMs).toBeLessThan(TIMEOUT_MS + 200);
      const errors = await storeErrors(f);
      expect((errors.unavailable ?? 0) + (errors.error ?? 0) + (errors.timeout ?? 0)).toBeGreaterThan(0);
      // Logged once for the whole outage (at most once a minute), not per request or per reconnect attempt.
      expect(storeWarnings(f).length).toBe(1);
    } finally {
      if (!(await redis.cli("PING").catch(() => "")).includes("PONG")) await redis.start();
    }

    const back = performance.now();
    const again = await loadUntil(f.url, (s) => s.includes(429), 8000);
    expect(again.done).toBe(true);
    const seconds = (performance.now() - back) / 1000;
    console.info(`limit enforced again ${seconds.toFixed(2)} s after Redis came back`);
    expect(seconds).toBeLessThan(5);
  }, 30_000);

  test("on_error allow: Redis stalled (SIGSTOP) → requests wait at most the timeout, counted as timeouts", async () => {
    const f = await fleetOfOne("allow");
    expect((await wave(f.url, 5)).statuses).toEqual([200, 200, 200, 200, 200]);
    redis.pause();
    try {
      const stalled = await loadUntil(f.url, () => false, 1500);
      expect(stalled.statuses.every((s) => s === 200)).toBe(true);
      // Typically each waited the timeout; none waited for the 1.5 s stall to end (the slowest
      // bound leaves room for a busy machine's scheduling; the first requests of a stall that held them would take 1.5 s).
      const median = [...stalled.times].sort((a, b) => a - b)[stalled.times.length >> 1]!;
      expect(median).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
      expect(median).toBeLessThan(TIMEOUT_MS + 150);
      expect(stalled.slowestMs).toBeLessThan(1000);
      expect((await storeErrors(f)).timeout).toBeGreaterThan(0);
    } finally {
      redis.resume();
    }
  }, 30_000);

  test("on_error deny: 503 (not 429) while Redis is down, 200 again once it is back", async () => {
    // A longer timeout: only an outage may answer 503 here, not a slow answer on a busy machine.
    const f = await fleetOfOne("deny", 1000);
    expect((await wave(f.url, 5)).statuses).toEqual([200, 200, 200, 200, 200]);
    await redis.kill();
    try {
      const down = await wave(f.url, 10);
      // A token reserved before the outage (at most 5% of the burst: 1) may still be used.
      expect(down.statuses.filter((s) => s !== 503).length).toBeLessThanOrEqual(1);
      expect(down.statuses.filter((s) => s === 503).length).toBeGreaterThanOrEqual(9);
      // Refused connections answer at once: nobody waits for the 1 s timeout.
      expect(down.slowestMs).toBeLessThan(200);
    } finally {
      await redis.start();
    }
    const back = await loadUntil(f.url, (s) => s.includes(200), 8000);
    expect(back.done).toBe(true);
    expect(count(back.statuses, 429)).toBe(0);
  }, 30_000);
});

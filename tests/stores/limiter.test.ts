// The shared limiter piece by piece: the GCRA script on a real redis-server (atomic batches,
// keys that expire by themselves), coalescing of concurrent decisions for one key, the local
// memory of a denial, and the timeout that bounds every wait.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { backoffMs, connectRedis, type RedisConnection } from "../../core/stores/redis.ts";
import { type LimiterStore, SharedLimiter } from "../../core/stores/limiter.ts";
import type { BatchResult } from "../../core/stores/gcra.ts";
import { parseRedisUrl } from "../../core/config/stores.ts";
import { startRedis, type TestRedis } from "../helpers/redis.ts";

let redis: TestRedis;
let conn: RedisConnection;
beforeAll(async () => {
  redis = await startRedis();
  conn = connectRedis({ kind: "single", url: redis.url }, () => {});
  const deadline = Date.now() + 5000;
  while (!conn.ready() && Date.now() < deadline) await Bun.sleep(10);
});
afterAll(async () => {
  await conn?.close();
  await redis?.stop();
});

let n = 0;
const fresh = () => `test:${Date.now()}:${n++}`;

/** A store over the real connection that counts round trips. */
function counting(opts: { batch?: boolean; timeoutMs?: number } = {}) {
  const calls: number[] = [];
  const failures: string[] = [];
  const store: LimiterStore = {
    timeoutMs: opts.timeoutMs ?? 1000,
    batch: opts.batch ?? true,
    ready: () => conn.ready(),
    gcra(key, interval, burst, count) {
      calls.push(count);
      return conn.gcra(key, interval, burst, count);
    },
    failed: (reason, count) => void failures.push(`${reason}x${count}`),
  };
  return { store, calls, failures };
}

describe("GCRA in Redis", () => {
  test("a batch of 5 against burst 3: 3 granted, retry after one interval; the key carries a TTL", async () => {
    const key = fresh();
    const r = await conn.gcra(key, 100, 3, 5);
    expect(r.granted).toBe(3);
    expect(r.remaining).toBe(0);
    expect(r.retryAfterMs).toBeGreaterThan(80);
    expect(r.retryAfterMs).toBeLessThanOrEqual(100);
    expect(r.resetMs).toBeGreaterThan(280);
    expect(r.resetMs).toBeLessThanOrEqual(300);
    const ttl = Number(await redis.cli("PTTL", key));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(300);
    // Nothing left: a second batch gets nothing.
    expect((await conn.gcra(key, 100, 3, 2)).granted).toBe(0);
  });

  test("keys expire by themselves once the bucket would be full again", async () => {
    const key = fresh();
    await conn.gcra(key, 300, 2, 1); // full again after 300 ms
    expect(await redis.cli("EXISTS", key)).toBe("1");
    const deadline = Date.now() + 2000;
    while ((await redis.cli("EXISTS", key)) !== "0" && Date.now() < deadline) await Bun.sleep(5);
    expect(await redis.cli("EXISTS", key)).toBe("0");
  });

  test("200 concurrent single decisions from two connections grant exactly the burst: no read-modify-write race", async () => {
    const other = connectRedis({ kind: "single", url: redis.url }, () => {});
    try {
      const deadline = Date.now() + 5000;
      while (!other.ready() && Date.now() < deadline) await Bun.sleep(10);
      const key = fresh();
      // 1 token a minute: no refill during the test.
      const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? conn : other).gcra(key, 60_000, 50, 1)));
      expect(rs.reduce((s, r) => s + r.granted, 0)).toBe(50);
    } finally {
      await other.close();
    }
  });
});

describe("SharedLimiter", () => {
  test("40 concurrent requests for one key take 2 round trips (1, then the 39 that queued), granting exactly the burst", async () => {
    const { store, calls } = counting();
    const limiter = new SharedLimiter(store, { prefix: fresh(), ratePerSecond: 1, burst: 10, maxKeys: 100 });
    const ds = await Promise.all(Array.from({ length: 40 }, () => limiter.take("k")));
    expect(calls).toEqual([1, 39]);
    expect(ds.filter((d) => d.outcome === "allowed").length).toBe(10);
    expect(ds.filter((d) => d.outcome === "denied").length).toBe(30);
    // The denial is remembered: the next request is answered without a round trip.
    const next = limiter.take("k");
    expect(next).not.toBeInstanceOf(Promise);
    expect((next as { outcome: string }).outcome).toBe("denied");
    expect(calls.length).toBe(2);
  });

  test("a reserve (5% of the burst) serves a hot key without waiting; refilled in the background; all tokens from Redis", async () => {
    const { store, calls } = counting();
    // burst 200: a reserve of at most 10 tokens.
    const limiter = new SharedLimiter(store, { prefix: fresh(), ratePerSecond: 0.001, burst: 200, maxKeys: 100 });
    const first = await Promise.all(Array.from({ length: 8 }, () => limiter.take("k")));
    expect(first.every((d) => d.outcome === "allowed")).toBe(true);
    // The first call asked for 1 + a reserve of 2 (twice the demand); the 7 that queued behind it
    // took those 2, and the second call asked for the other 5 plus a reserve of 10 (the cap).
    expect(calls).toEqual([3, 15]);
    // Reserved tokens are taken synchronously: no promise, no round trip.
    const sync = Array.from({ length: 5 }, () => limiter.take("k"));
    expect(sync.some((d) => d instanceof Promise)).toBe(false);
    expect(sync.every((d) => (d as { outcome: string }).outcome === "allowed")).toBe(true);
    // Using half the reserve (5 of 10) sent a refill in the background.
    expect(calls.length).toBe(3);
    // Over 400 requests, exactly the burst is allowed: the reserve never adds tokens.
    let allowed = 8 + 5;
    for (let i = 0; i < 400; i++) {
      const t = limiter.take("k");
      const d = t instanceof Promise ? await t : t;
      if (d.outcome === "allowed") allowed++;
    }
    expect(allowed).toBe(200);
  });

  test("an unused reserve expires: its tokens are lost, not carried over", async () => {
    const { store, calls } = counting();
    let now = 0;
    const limiter = new SharedLimiter(
      store,
      { prefix: fresh(), ratePerSecond: 0.001, burst: 100, maxKeys: 100, reserveMs: 250 },
      () => now,
    );
    expect((await Promise.all([limiter.take("k"), limiter.take("k"), limiter.take("k")])).map((d) => d.outcome)).toEqual([
      "allowed",
      "allowed",
      "allowed",
    ]);
    const asked = calls.length;
    now = 300; // the reserve has expired: the next request asks Redis
    const d = limiter.take("k");
    expect(d).toBeInstanceOf(Promise);
    expect((await d).outcome).toBe("allowed");
    expect(calls.length).toBe(asked + 1);
  });

  test("without batching, one round trip per request", async () => {
    const { store, calls } = counting({ batch: false });
    const limiter = new SharedLimiter(store, { prefix: fresh(), ratePerSecond: 1, burst: 10, maxKeys: 100 });
    const ds = await Promise.all(Array.from({ length: 20 }, () => limiter.take("k")));
    expect(calls.length).toBe(20);
    expect(ds.filter((d) => d.outcome === "allowed").length).toBe(10);
  });

  test("different keys are decided separately", async () => {
    const { store } = counting();
    const limiter = new SharedLimiter(store, { prefix: fresh(), ratePerSecond: 1, burst: 2, maxKeys: 100 });
    const a = await Promise.all([limiter.take("a"), limiter.take("a"), limiter.take("a")]);
    const b = await Promise.all([limiter.take("b"), limiter.take("b")]);
    expect(a.map((d) => d.outcome)).toEqual(["allowed", "allowed", "denied"]);
    expect(b.map((d) => d.outcome)).toEqual(["allowed", "allowed"]);
  });

  test("an answer later than the timeout: the batch is an error after ~timeout, counted; a store not ready: error at once", async () => {
    const failures: string[] = [];
    let ready = true;
    const store: LimiterStore = {
      timeoutMs: 30,
      batch: true,
      ready: () => ready,
      gcra: () => new Promise<BatchResult>(() => {}),
      failed: (reason, count) => void failures.push(`${reason}x${count}`),
    };
    const limiter = new SharedLimiter(store, { prefix: "p:", ratePerSecond: 10, burst: 10, maxKeys: 100 });
    const t = performance.now();
    const ds = await Promise.all([limiter.take("k"), limiter.take("k"), limiter.take("k")]);
    const waited = performance.now() - t;
    expect(ds.map((d) => d.outcome)).toEqual(["error", "error", "error"]);
    expect(waited).toBeGreaterThanOrEqual(25);
    expect(waited).toBeLessThan(200);
    // The first went alone; the two that queued behind it had used their whole wait.
    expect(failures).toEqual(["timeoutx1", "timeoutx2"]);
    ready = false;
    const d = limiter.take("k");
    expect(d).not.toBeInstanceOf(Promise);
    expect((d as { outcome: string }).outcome).toBe("error");
    expect(failures.at(-1)).toBe("unavailablex1");
  });
});

describe("store URLs and reconnection", () => {
  test("redis://, rediss://, redis+sentinel:// and redis+cluster:// parse; malformed ones say why", () => {
    expect(parseRedisUrl("redis://127.0.0.1:6379/0")).toEqual({ kind: "single", url: "redis://127.0.0.1:6379/0" });
    expect(parseRedisUrl("rediss://u:p@cache.example.com:6380")).toEqual({ kind: "single", url: "rediss://u:p@cache.example.com:6380" });
    expect(parseRedisUrl("redis+sentinel://:secret@10.0.0.1:26379,10.0.0.2/mymaster/2")).toEqual({
      kind: "sentinel",
      sentinels: [{ host: "10.0.0.1", port: 26379 }, { host: "10.0.0.2", port: 26379 }],
      name: "mymaster",
      db: 2,
      password: "secret",
      tls: false,
    });
    expect(parseRedisUrl("rediss+cluster://a:7000,b:7001,[::1]:7002")).toEqual({
      kind: "cluster",
      nodes: [{ host: "a", port: 7000 }, { host: "b", port: 7001 }, { host: "::1", port: 7002 }],
      tls: true,
    });
    expect(parseRedisUrl("http://127.0.0.1:6379")).toContain("must be a redis://");
    expect(parseRedisUrl("redis://127.0.0.1:6379/db")).toContain("database number");
    expect(parseRedisUrl("redis+sentinel://h1:26379")).toContain("must name the master");
    expect(parseRedisUrl("redis+cluster://h1:7000/1")).toContain("takes no database");
  });

  test("reconnection backs off exponentially from 50 ms to at most 2 s, with jitter below the step", () => {
    expect(backoffMs(0, () => 1)).toBe(50);
    expect(backoffMs(1, () => 1)).toBe(100);
    expect(backoffMs(3, () => 1)).toBe(400);
    expect(backoffMs(20, () => 1)).toBe(2000);
    expect(backoffMs(20, () => 0)).toBe(1500);
  });
});

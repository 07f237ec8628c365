// A reload applies `stores`: a store added is opened and used, a store whose settings changed is
// reopened (the old connection closed once the old gateway's requests are done), an unchanged one
// keeps its connection, one removed is closed, and one opened for a reload that fails is closed
// again. Counted on a real redis-server by its own CLIENT LIST.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { testScope } from "../helpers/scope.ts";
import { startRedis, type TestRedis } from "../helpers/redis.ts";

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

const scope = testScope();

/** The ids of the clients connected to Redis, without redis-cli itself. */
async function clients(): Promise<string[]> {
  const list = await redis.cli("CLIENT", "LIST");
  return list.split("\n").filter((l) => l && !l.includes("cmd=client|list")).map((l) => l.match(/id=(\d+)/)![1]!);
}

/** Polls `check` every 20 ms until it holds; fails after `ms`. */
async function until(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// Each request moves its key's expiry a second on (1/s): the keys outlive the checks below.
const keys = async (prefix: string) => (await redis.cli("KEYS", `${prefix}*`)).split("\n").filter(Boolean);

describe("reloading stores", () => {
  test("added, changed, unchanged, removed, and opened for a failed reload", async () => {
    const b = scope.backend("b1");
    const route = (store: string, extra = "") => `
routes:
  - match: { path: /api }
    pool: web
    middleware:
      - rate-limit: { rate: 1/s, burst: 1000${store ? `, store: ${store}` : ""} }${extra}
`;
    const base = `log: { level: info, access_log: false }\npools:\n  web: { backends: ["${b.url}"] }\n`;
    const store = (prefix: string) => `stores:\n  shared: { redis: "${redis.url}", prefix: "${prefix}", timeout: 500ms }\n`;
    let next = base + route("");
    const f = await scope.fulcrum(next, { reload: () => next });
    const get = async () => (await fetch(`${f.url}/api/x`)).status;
    expect(await get()).toBe(200);
    expect(await clients()).toEqual([]);

    // Added: the reload opens it and the route's buckets are in Redis.
    next = base + store("r1:") + route("shared");
    const added = await f.server.reload();
    expect(added).toMatchObject({ ok: true, restartRequired: [] });
    expect(await get()).toBe(200);
    expect((await keys("r1:")).length).toBeGreaterThan(0);
    const first = await clients();
    expect(first).toHaveLength(1);

    // Unchanged store, another route setting: the same connection.
    next = base + store("r1:") + route("shared").replace("burst: 1000", "burst: 900");
    expect((await f.server.reload()).ok).toBe(true);
    expect(await get()).toBe(200);
    expect(await clients()).toEqual(first);

    // Changed (another prefix): a new connection, the old one closed.
    next = base + store("r2:") + route("shared");
    expect((await f.server.reload()).ok).toBe(true);
    expect(await get()).toBe(200);
    expect((await keys("r2:")).length).toBeGreaterThan(0);
    await until(async () => (await clients()).length === 1, 5000, "the old connection closed");
    const second = await clients();
    expect(second).not.toEqual(first);

    // A reload that fails after opening a store (an unknown middleware): that connection is closed, the running one stays.
    next = base + store("r2:") + `  other: { redis: "${redis.url}", prefix: "o:" }\n` + route("other", "\n      - no-such-middleware: {}");
    const failed = await f.server.reload();
    expect(failed.ok).toBe(false);
    expect(await get()).toBe(200);
    await until(async () => (await clients()).length === 1, 5000, "the failed reload's connection closed");
    expect(await clients()).toEqual(second);

    // Removed: closed; the route is back on local buckets.
    next = base + route("");
    expect((await f.server.reload()).ok).toBe(true);
    expect(await get()).toBe(200);
    await until(async () => (await clients()).length === 0, 5000, "the removed store's connection closed");
    expect(f.records.some((r) => r.level === "error" && r.message.includes("store"))).toBe(false);
  }, 30_000);
});

// A store's failures: counted per request, logged at most once a minute (fake time), its return
// logged once.
import { expect, test } from "bun:test";
import { StoreSet } from "../../core/stores/set.ts";
import type { RedisConnection } from "../../core/stores/redis.ts";

test("errors are counted per request and logged at most once a minute per store, with how many were suppressed", async () => {
  let now = 0;
  let up = false;
  let onError: (e: Error) => void = () => {};
  const connection: RedisConnection = {
    ready: () => up,
    gcra: () => Promise.reject(new Error("unused")),
    ping: async () => {},
    close: async () => {},
  };
  const logs: { level: string; message: string; props?: Record<string, unknown> }[] = [];
  const set = new StoreSet(
    { shared: { redis: "redis://127.0.0.1:1/0", prefix: "p:", timeout: 50, on_error: "allow", batch: true } },
    (_c, e) => {
      onError = e;
      return connection;
    },
    {
      warning: (message, props) => logs.push({ level: "warning", message, props }),
      info: (message, props) => logs.push({ level: "info", message, props }),
    },
    () => now,
  );
  const counts: Record<string, number> = {};
  set.useMetrics({
    child: (store, reason) => ({ inc: (n = 1) => void (counts[`${store}/${reason}`] = (counts[`${store}/${reason}`] ?? 0) + n) }),
  });
  const limiter = set.get("shared")!.limiter("id", { ratePerSecond: 10, burst: 10, maxKeys: 10 });

  // Down: each reconnection attempt reports an error; each request is decided at once and counted.
  for (let i = 0; i < 5; i++) onError(new Error("connect ECONNREFUSED"));
  for (let i = 0; i < 3; i++) expect((limiter.take("k") as { outcome: string }).outcome).toBe("error");
  expect(counts["shared/unavailable"]).toBe(3);
  expect(logs.filter((l) => l.level === "warning").length).toBe(1);

  now = 59_000;
  onError(new Error("connect ECONNREFUSED"));
  expect(logs.filter((l) => l.level === "warning").length).toBe(1);

  now = 60_001;
  onError(new Error("connect ECONNREFUSED"));
  const warnings = logs.filter((l) => l.level === "warning");
  expect(warnings.length).toBe(2);
  expect(warnings[1]!.props?.suppressed_since_last).toBe(5);

  // Back: logged once.
  up = true;
  set.get("shared");
  expect((await set.waitReady(10)).length).toBe(0);
  limiter.take("k");
  limiter.take("k");
  expect(logs.filter((l) => l.level === "info" && l.message.includes("reachable again")).length).toBe(1);
  await set.close();
});

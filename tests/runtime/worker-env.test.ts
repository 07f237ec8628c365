// The environment a worker process starts with (core/runtime/bun-processes.ts): the collector's
// defaults unless the operator's environment sets them; the primary's own variables on top.
import { expect, test } from "bun:test";
import { WORKER_GC_ENV, workerEnv } from "../../core/runtime/bun-processes.ts";

test("a worker gets the collector defaults, the parent's environment and the primary's own variables", () => {
  const env = workerEnv({ PATH: "/bin", HOME: "/root" }, { FULCRUM_WORKER: "1" });
  expect(env).toEqual({
    BUN_JSC_largeHeapSize: "33554432",
    BUN_JSC_collectionTimerMaxPercentCPU: "0.002",
    PATH: "/bin",
    HOME: "/root",
    FULCRUM_WORKER: "1",
  });
  expect(Object.keys(WORKER_GC_ENV).every((k) => k.startsWith("BUN_JSC_"))).toBe(true);
});

test("an operator's own value for a collector setting wins over the default", () => {
  const env = workerEnv({ BUN_JSC_largeHeapSize: "8388608" }, {});
  expect(env.BUN_JSC_largeHeapSize).toBe("8388608");
  expect(env.BUN_JSC_collectionTimerMaxPercentCPU).toBe("0.002");
});

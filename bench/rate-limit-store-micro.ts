// The rate-limit middleware alone, in-process: what a decision costs with local buckets, with a
// Redis store (batching on, the default) and without batching, per request, through a Hono app
// as a route runs it. No proxying, so a busy machine moves these numbers much less than the
// end-to-end req/s of bench/rate-limit-store.ts. Starts its own redis-server on a free port.
//
//   bun bench/rate-limit-store-micro.ts [--requests 100000] [--rounds 3] [--concurrency 64]
import { Hono } from "hono";
import { createRateLimit } from "../core/middleware/rate-limit.ts";
import type { PluginApi } from "../core/plugins/api.ts";
import { openStores } from "../core/stores/open.ts";
import { portOpen, spawn, stopAll, waitFor } from "./lib/proc.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg("--requests", 100_000);
const ROUNDS = arg("--rounds", 3);
const CONCURRENCY = arg("--concurrency", 64);

const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
const port = s.port;
s.stop(true);
spawn("redis-server", ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
await waitFor(async () => (await portOpen(port)) || undefined, 5000);
const url = `redis://127.0.0.1:${port}/0`;
const common = { prefix: "micro:", timeout: 50, on_error: "allow" as const };
const stores = await openStores({ batch: { redis: url, ...common, batch: true }, nobatch: { redis: url, ...common, batch: false } }, {
  warning: (m) => console.error(m),
  info: () => {},
});
await stores.waitReady(5000);
const api = {
  strategy: () => {
    throw new Error("unused");
  },
  key: () => () => undefined,
  log: { debug() {}, info() {}, warn() {}, error() {} },
  store: (n: string) => stores.get(n),
} as PluginApi;

function app(store?: string): Hono {
  const a = new Hono();
  // A limit that never denies: every request is a full decision.
  a.use("*", createRateLimit({ rate: "10000000/s", burst: 10_000_000, ...(store ? { store } : {}) }, api) as never);
  a.all("*", (c) => c.text("ok"));
  return a;
}
const variants: Record<string, Hono> = { local: app(), "redis-batch": app("batch"), "redis-nobatch": app("nobatch") };
const results: Record<string, number[]> = {};
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, a] of Object.entries(variants)) {
      let n = 0;
      const c0 = process.cpuUsage();
      await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
        while (n < N) {
          n++;
          await a.request("http://x/", {}, { ex: { clientIp: "192.0.2.1" } });
        }
      }));
      const cpu = process.cpuUsage(c0);
      (results[name] ??= []).push((cpu.user + cpu.system) / N);
    }
  }
} finally {
  await stores.close();
  await stopAll();
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const local = median(results.local!);
console.log(`${N} requests × ${ROUNDS} rounds, ${CONCURRENCY} concurrent, one client key; Fulcrum's CPU µs per request (median)`);
for (const [name, xs] of Object.entries(results)) {
  console.log(
    `${name.padEnd(14)} ${median(xs).toFixed(2).padStart(6)} µs   ${name === "local" ? "" : `+${(median(xs) - local).toFixed(2)} µs`}`,
  );
}

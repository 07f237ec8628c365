// What a Redis-backed rate limit costs against the same limit in local buckets: one Fulcrum
// (workers: 1) per variant, the same route and load, a limit high enough never to deny (every
// request is decided, none refused), req/s and Fulcrum's own CPU µs per request, as ratios to
// the local variant in the same round. Variants: local buckets; Redis with coalescing (the
// default, `batch: true`); Redis with one round trip per request (`batch: false`).
//
//   bun bench/rate-limit-store.ts [--runs 1] [--duration 5] [--warmup 2] [--connections 64] [--save]
//
// Every wrk connection comes from 127.0.0.1, so every request has the same client key: the case
// coalescing helps most. Many distinct keys each pay their own round trip (see docs/fleets.md).
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startBackends } from "./lib/backends.ts";
import { pickTool, runLoad } from "./lib/loadgen.ts";
import { assertFree, cpuSeconds, log, portOpen, spawn, stop, stopAll, waitFor, workDir } from "./lib/proc.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const runs = arg("--runs", 1);
const duration = arg("--duration", 5);
const warmup = arg("--warmup", 2);
const connections = arg("--connections", 64);
const ROOT = new URL("..", import.meta.url).pathname;
// Free ports picked now, so that this runs next to other benchmarks.
const freePort = () => {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
};
const REDIS_PORT = freePort();
const PORT = freePort();
const BACKEND_PORT = freePort();

const VARIANTS = {
  local: "",
  "redis-batch": ", store: shared",
  "redis-nobatch": ", store: nobatch",
} as const;
type Variant = keyof typeof VARIANTS;

await assertFree([REDIS_PORT, PORT, BACKEND_PORT]);
const dir = workDir("fulcrum-rate-limit-store-");
const tool = pickTool();
const backends = await startBackends({ count: 1, basePort: BACKEND_PORT, dir: join(dir, "backends") });
const redis = spawn("redis-server", [
  "redis-server",
  "--port",
  String(REDIS_PORT),
  "--bind",
  "127.0.0.1",
  "--save",
  "",
  "--appendonly",
  "no",
]);
await waitFor(async () => (await portOpen(REDIS_PORT)) || undefined, 5000);

function config(v: Variant): string {
  return `listen: 127.0.0.1:${PORT}
workers: 1
admin: false
log: { level: warning, access_log: false }
stores:
  shared: { redis: "redis://127.0.0.1:${REDIS_PORT}/0", prefix: "bench:" }
  nobatch: { redis: "redis://127.0.0.1:${REDIS_PORT}/0", prefix: "bench-nb:", batch: false }
pools:
  web: { backends: [{ url: ${backends.urls[0]} }] }
routes:
  - match: { path: / }
    pool: web
    middleware:
      - rate-limit: { rate: 10000000/s, burst: 10000000${VARIANTS[v]} }
`;
}

const results = new Map<Variant, { rps: number; cpuUs: number; redisCpuUs: number }[]>();
const roundLines: string[] = [];
const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const redisCpu = () => cpuSeconds(redis.pid);
try {
  for (let round = 0; round < runs; round++) {
    for (const v of Object.keys(VARIANTS) as Variant[]) {
      const file = join(dir, `${v}.yaml`);
      writeFileSync(file, config(v));
      await assertFree([PORT]);
      const proc = spawn(`fulcrum-${v}`, [process.execPath, "main.ts", "run", "--config", file], {
        cwd: ROOT,
        stderr: join(dir, `${v}.err`),
      });
      await waitFor(async () => (await portOpen(PORT)) || undefined, 15_000);
      const url = `http://127.0.0.1:${PORT}/100b`;
      await runLoad(tool, { url, connections, durationSec: warmup }, dir);
      const cpu0 = cpuSeconds(proc.pid);
      const r0 = redisCpu();
      const res = await runLoad(tool, { url, connections, durationSec: duration }, dir);
      const cpuUs = ((cpuSeconds(proc.pid) - cpu0) * 1e6) / res.requests;
      const redisCpuUs = ((redisCpu() - r0) * 1e6) / res.requests;
      if (!results.has(v)) results.set(v, []);
      results.get(v)!.push({ rps: res.rps, cpuUs, redisCpuUs });
      const line = `round ${round + 1} ${v}: ${Math.round(res.rps)} req/s, ${cpuUs.toFixed(1)} µs CPU/request (+ Redis ${
        redisCpuUs.toFixed(1)
      }), errors ${res.errors}, load average ${loadavg()}`;
      roundLines.push(line);
      log(line);
      await stop(proc);
      await waitFor(async () => (await portOpen(PORT)) ? undefined : true, 5000);
    }
  }
} finally {
  await stopAll();
  await backends.stop();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const base = results.get("local")!;
const lines = [
  `${tool}, ${connections} connections, GET 100 B, one client key, ${runs} round(s) × ${duration} s after ${warmup} s warm-up, workers: 1; medians (ratios: per round, then the median)`,
  "variant          req/s   CPU µs/req   Redis CPU µs/req   req/s vs local   CPU/req vs local",
];
for (const [v, rs] of results) {
  const ratio = median(rs.map((r, i) => r.rps / base[i]!.rps));
  const cpuRatio = median(rs.map((r, i) => r.cpuUs / base[i]!.cpuUs));
  lines.push(
    `${v.padEnd(14)} ${String(Math.round(median(rs.map((r) => r.rps)))).padStart(7)} ${
      median(rs.map((r) => r.cpuUs)).toFixed(1).padStart(12)
    } ${median(rs.map((r) => r.redisCpuUs)).toFixed(1).padStart(18)}   ${ratio.toFixed(2).padStart(14)}   ${
      cpuRatio.toFixed(2).padStart(16)
    }`,
  );
}
console.log(`\n${lines.join("\n")}`);
if (process.argv.includes("--save")) {
  const stamp = new Date().toISOString().slice(0, 16).replace(":", "");
  writeFileSync(join(ROOT, "bench", "results", `rate-limit-store-${stamp}.txt`), `${[...lines, "", ...roundLines].join("\n")}\n`);
}

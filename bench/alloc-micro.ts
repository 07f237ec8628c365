// `BUN_JSC_largeHeapSize=2000000000 BUN_JSC_collectionTimerMaxPercentCPU=0.00001 bun bench/alloc-micro.ts [--root DIR] [--requests 5000]`:
// what the proxy path allocates per request, by JSC cell type: bench/wire-micro.ts's setup (own
// listener, direct route, raw upstream client over object sockets, GET /100b answered with nginx's
// bytes) plus the defaults' access log (into a writer that writes nowhere) and metrics. After a
// warm-up (the JIT sinks some allocations once it optimizes), cells are counted before and after
// N requests with an eden too large to be collected in between (the env above; the script checks
// no collection ran), so the difference is everything those requests allocated.
import { Buffer } from "node:buffer";
import { resolve } from "node:path";
import { heapStats } from "bun:jsc";
import { BENCH_YAML, objectProxy } from "./lib/object-proxy.ts";

const arg = (name: string, dflt: string) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1]! : dflt);
const root = resolve(arg("--root", `${import.meta.dir}/..`));
const N = Number(arg("--requests", "5000"));
const conns = 16;
const reqBytes = Buffer.from("GET /100b HTTP/1.1\r\nHost: 127.0.0.1:18098\r\n\r\n", "latin1");
const resBytes = Buffer.from(
  "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 06:20:08 GMT\r\nContent-Type: text/plain\r\n" +
    "Content-Length: 100\r\nLast-Modified: Sun, 06 Dec 2026 06:20:03 GMT\r\nConnection: keep-alive\r\n" +
    'ETag: "6b14fe93-64"\r\nx-backend: b1\r\nAccept-Ranges: bytes\r\n\r\n' + "a".repeat(100),
  "latin1",
);
let sink = 0;
const run = await objectProxy(root, {
  request: reqBytes,
  response: resBytes,
  size: 100,
  conns,
  async gateway({ parseConfig, buildGateway, builtinRegistry }) {
    const { BatchingWriter } = await import(`${root}/core/runtime/batching-writer.ts`);
    const { accessLog } = await import(`${root}/core/telemetry/log.ts`);
    const { createMetrics } = await import(`${root}/core/telemetry/metrics.ts`);
    const { createObserver } = await import(`${root}/core/telemetry/observer.ts`);
    const { NOOP_TELEMETRY } = await import(`${root}/core/telemetry/tracing.ts`);
    const { getLogger } = await import("@logtape/logtape");
    const registry = builtinRegistry();
    const config = parseConfig(BENCH_YAML(), { file: "micro.yaml", env: () => undefined, strategyNames: registry.strategyNames() });
    const writer = new BatchingWriter({ write: (b: Uint8Array) => void (sink += b.length), flush() {}, close: async () => {} });
    return buildGateway(config, {
      registry,
      observer: process.argv.includes("--no-metrics") ? undefined : createObserver(NOOP_TELEMETRY, createMetrics()),
      logging: {
        logger: getLogger(["fulcrum"]),
        access: process.argv.includes("--no-log") ? undefined : accessLog(writer, undefined, Date.now),
        close: async () => {},
      },
    });
  },
});

for (let i = 0; i < 20; i++) await run(2000);
Bun.gc(true);
const before = heapStats();
await run(Math.ceil(N / conns));
const after = heapStats();
const total = Math.ceil(N / conns) * conns;
const rows = Object.entries(after.objectTypeCounts)
  .map(([k, v]) => [k, (v - (before.objectTypeCounts[k] ?? 0)) / total] as const)
  .filter(([, v]) => v >= 0.05)
  .sort((a, b) => b[1] - a[1]);
console.log(
  `${root}: ${total} requests; heap ${(before.heapSize / 2 ** 20).toFixed(1)} → ${(after.heapSize / 2 ** 20).toFixed(1)} MiB, ` +
    `heap capacity +${
      ((after.heapCapacity - before.heapCapacity) / total).toFixed(0)
    } B a request (this driver's own: 2 Buffers and an Immediate)`,
);
if (after.heapSize < before.heapSize) console.log("a collection ran in between: counts are not allocations (set the env in the header)");
for (const [k, v] of rows) console.log(`  ${v.toFixed(2).padStart(6)}  ${k}`);
process.exit(sink < 0 ? 1 : 0);

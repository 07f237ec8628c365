// `bun bench/access-metrics-micro.ts [ROUNDS=5] [ONLY=line,metrics]`: ns a request of the access
// line (the default JSON line into a batching writer that writes nowhere) and of the metrics'
// request hooks (attemptEnd + requestEnd, tracing off), in process, no network. The request
// record is shaped like the proxy's (core/proxy/exchange.ts), three backends in turn as round
// robin picks them, a clock that moves a millisecond every ~20 requests as at 20k req/s.
import type { Backend, Pool } from "../core/pool/pool.ts";
import { BatchingWriter } from "../core/runtime/batching-writer.ts";
import { accessLog } from "../core/telemetry/log.ts";
import { createMetrics } from "../core/telemetry/metrics.ts";
import { createObserver, type ObservedExchange } from "../core/telemetry/observer.ts";
import { NOOP_TELEMETRY } from "../core/telemetry/tracing.ts";

const rounds = Number(process.env.ROUNDS ?? 5);
const only = process.env.ONLY?.split(",");
const N = 400_000;
let sink = 0;

class Record implements ObservedExchange {
  route = "web → /";
  pool = "web";
  backend = "";
  status = 200;
  bytes = 100;
  attempts = 1;
  retryReason: string | undefined = undefined;
  error: string | undefined = undefined;
  scheme: string | undefined = undefined;
  protocol: string | undefined = undefined;
  tunnel = undefined;
  upstreamPath: string | undefined = undefined;
  requestId: string | undefined = undefined;
  span = undefined;
  constructor(readonly method: string, readonly path: string, readonly clientIp: string) {}
}
const backendIds = ["127.0.0.1:19001", "127.0.0.1:19002", "127.0.0.1:19003"];
const backends = backendIds.map((id) => ({ id }) as unknown as Backend);
const pool = { name: "web" } as unknown as Pool;

let t = 1_796_000_000_000;
const clock = () => (t += 0.05) | 0;
const writer = new BatchingWriter({ write: (b) => void (sink += b.length), flush() {}, close: async () => {} });
const log = accessLog(writer, undefined, clock);
const observer = createObserver(NOOP_TELEMETRY, createMetrics())!;

function line(i: number): void {
  const ex = new Record("GET", "/100b", "127.0.0.1");
  ex.backend = backendIds[i % 3]!;
  log.write(ex as never, 1.234 + (i & 7) * 0.1, undefined);
}
function metrics(i: number): void {
  const ex = new Record("GET", "/100b", "127.0.0.1");
  const b = backends[i % 3]!;
  ex.backend = b.id;
  observer.attemptEnd(ex, undefined, pool, b, 200, 0.9);
  observer.requestEnd(ex, 1.2 + (i & 7) * 0.1);
}
function alloc(i: number): void {
  const ex = new Record("GET", "/100b", "127.0.0.1");
  ex.backend = backendIds[i % 3]!;
  sink += ex.status;
}

const cases: [string, (i: number) => void][] = [["alloc", alloc], ["line", line], ["metrics", metrics]];
const results = new Map<string, number[]>();
for (let r = 0; r < rounds; r++) {
  for (const [name, fn] of cases) {
    if (only && name !== "alloc" && !only.includes(name)) continue;
    for (let i = 0; i < N / 4; i++) fn(i);
    const s = performance.now();
    for (let i = 0; i < N; i++) fn(i);
    const ns = ((performance.now() - s) * 1e6) / N;
    results.set(name, [...(results.get(name) ?? []), ns]);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const base = median(results.get("alloc")!);
for (const [name, xs] of results) {
  const m = median(xs);
  console.log(`${name.padEnd(8)} ${m.toFixed(0).padStart(5)} ns${name === "alloc" ? "" : `  (${(m - base).toFixed(0)} ns above alloc)`}`);
}
if (sink < 0) console.log(sink);

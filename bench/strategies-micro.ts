// `bun bench/strategies-micro.ts`: each built-in strategy's pick() alone, in ns per pick (first
// attempt, and a retry with one backend in request.tried), over 10 backends of mixed weights, with a different key per request (the
// RequestInfo objects are built before timing, as the proxy builds one per request anyway). The
// key's bytes are read from a plain object here, so the figures are pick() itself, not the cost of
// building a Headers object from the raw request (which a header- or cookie-keyed pool pays on
// the direct path). pick() allocates nothing (typed arrays built in update(), no closures per
// call); Bun offers no per-call allocation counter precise enough to show it here. Writes bench/results/strategies-<date>.json with --save.
import type { BackendView, PluginApi, RequestInfo, Strategy, StrategyPlugin } from "../core/plugins/api.ts";
import roundRobin from "../strategies/round-robin.ts";
import weightedRoundRobin from "../strategies/weighted-round-robin.ts";
import leastConnections from "../strategies/least-connections.ts";
import consistentHash from "../strategies/consistent-hash.ts";
import p2cEwma from "../strategies/p2c-ewma.ts";

const N = 1_000_000;
const backends: BackendView[] = Array.from({ length: 10 }, (_, i) => ({
  id: `10.0.0.${i}:80`,
  url: `http://10.0.0.${i}:80`,
  weight: 1 + (i % 3),
  labels: {},
  healthy: true,
  inflight: i % 4,
  latencyEwma: 5 + i,
  recentErrors: 0,
}));
/** A Headers look-alike: get() returns a string that already exists, as a raw header value does. */
const fakeHeaders = (user: string) => ({ get: (n: string) => (n === "x-user" ? user : null) }) as unknown as Headers;
const requests: RequestInfo[] = Array.from({ length: 4096 }, (_, i) => ({
  method: "GET",
  path: `/item/${i}`,
  host: "h",
  clientIp: `10.1.${i >> 8}.${i & 255}`,
  headers: fakeHeaders(`user-${i}`),
  query: `id=${i}`,
}));
const retries: RequestInfo[] = requests.map((r) => ({ ...r, tried: [backends[3]!] }));
const api = { log: { debug() {}, info() {}, warn() {}, error() {} } } as unknown as PluginApi;

const cases: [string, StrategyPlugin<never>, object][] = [
  ["round-robin", roundRobin as StrategyPlugin<never>, {}],
  ["weighted-round-robin", weightedRoundRobin as StrategyPlugin<never>, {}],
  ["least-connections", leastConnections as StrategyPlugin<never>, {}],
  ["p2c-ewma", p2cEwma as StrategyPlugin<never>, { seed: 1 }],
  ["consistent-hash ring client-ip", consistentHash as StrategyPlugin<never>, { key: "client-ip" }],
  ["consistent-hash ring header", consistentHash as StrategyPlugin<never>, { key: "header:x-user" }],
  ["consistent-hash ring query", consistentHash as StrategyPlugin<never>, { key: "query:id" }],
  ["consistent-hash maglev header", consistentHash as StrategyPlugin<never>, { key: "header:x-user", algorithm: "maglev" }],
  ["consistent-hash ring bounded 1.25", consistentHash as StrategyPlugin<never>, { key: "header:x-user", bounded_load: 1.25 }],
];

function run(s: Strategy, reqs: RequestInfo[]): number {
  for (let i = 0; i < N / 10; i++) s.pick(backends, reqs[i & 4095]!);
  const t = performance.now();
  for (let i = 0; i < N; i++) s.pick(backends, reqs[i & 4095]!);
  return ((performance.now() - t) * 1e6) / N;
}

const rows: Record<string, unknown>[] = [];
console.log(`${"strategy".padEnd(36)} ${"ns/pick".padStart(8)} ${"retry ns".padStart(9)}`);
for (const [name, plugin, options] of cases) {
  const s = plugin.create(options as never, api);
  s.update?.(backends);
  const first = run(s, requests);
  const retry = run(s, retries);
  rows.push({ strategy: name, ns_per_pick: +first.toFixed(1), retry_ns_per_pick: +retry.toFixed(1) });
  console.log(`${name.padEnd(36)} ${first.toFixed(1).padStart(8)} ${retry.toFixed(1).padStart(9)}`);
}
if (process.argv.includes("--save")) {
  const file = new URL(`./results/strategies-${new Date().toISOString().slice(0, 10)}.json`, import.meta.url).pathname;
  await Bun.write(file, JSON.stringify({ bun: Bun.version, backends: backends.length, picks: N, rows }, null, 2) + "\n");
  console.log(`wrote ${file}`);
}

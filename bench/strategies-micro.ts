// `bun bench/strategies-micro.ts`: each built-in strategy's pick() alone, in ns of CPU time per
// pick (first attempt, and a retry with one backend in request.tried), over 10 backends of mixed weights, with a different key per request (the
// RequestInfo objects are built before timing, as the proxy builds one per request anyway). The
// key's bytes are read from a plain object here, so the figures are pick() itself, not the cost of
// building a Headers object from the raw request (which a header- or cookie-keyed pool pays on
// the direct path). pick() allocates nothing (typed arrays built in update(), no closures per
// call); Bun offers no per-call allocation counter precise enough to show it here. Writes bench/results/strategies-<date>.json with --save.
import { Buffer } from "node:buffer";
import { configure, getLogger } from "@logtape/logtape";
import type { BackendView, PluginApi, RequestInfo, Strategy, StrategyPlugin } from "../core/plugins/api.ts";
import { useUpstreamClient, type UpstreamAgent } from "../core/upstream/client.ts";
import { parseConfig } from "../core/config/load.ts";
import { buildGateway } from "../core/proxy/gateway.ts";
import { parseHead } from "../core/http1/response.ts";
import { builtinRegistry } from "../main.ts";
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

/** CPU time of this process in ms: on a shared machine, time spent descheduled does not count. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function run(s: Strategy, reqs: RequestInfo[]): number {
  for (let i = 0; i < N / 10; i++) s.pick(backends, reqs[i & 4095]!);
  const t = cpuMs();
  for (let i = 0; i < N; i++) s.pick(backends, reqs[i & 4095]!);
  return ((cpuMs() - t) * 1e6) / N;
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
// The same strategies behind the whole request path (the own listener's, a route without
// middleware, a canned upstream answer as bench/hotpath-micro.ts does): what a request costs in
// all with each, including reading the key and, for sticky, the cookie lookup.
const HEAD = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\nx-backend: b1\r\n\r\n";
const wire = Buffer.from(HEAD + "a".repeat(100));
const head = parseHead(wire, 0)!;
const body = new Uint8Array(100).fill(97);
useUpstreamClient(() =>
  ({
    send(req) {
      req.onBodyEnd(body.length);
      return Promise.resolve({ status: 200, statusText: "OK", rawHeaders: head.rawHeaders, body });
    },
    destroy() {},
  }) as UpstreamAgent
);
await configure({ reset: true, sinks: {}, loggers: [{ category: ["logtape", "meta"], sinks: [], lowestLevel: "error" }] });
const registry = builtinRegistry();
const noSignal = { aborted: false, addEventListener() {}, removeEventListener() {} };
let sink = 0;
const exchange = (i: number, cookie: string | undefined) => {
  const raw = ["host", "127.0.0.1:8080", "user-agent", "wrk", "x-user", `user-${i & 4095}`];
  if (cookie !== undefined) raw.push("cookie", cookie);
  return {
    method: "GET",
    target: `/item?id=${i & 4095}`,
    host: "127.0.0.1:8080",
    rawHeaders: raw,
    header: (name: string) => {
      for (let k = 0; k < raw.length; k += 2) if (raw[k] === name) return raw[k + 1]!;
      return null;
    },
    clientIp: `10.1.${(i >> 8) & 15}.${i & 255}`,
    bodyLength: 0,
    body: null,
    signal: noSignal,
    bodyFault: () => 0,
    respond(_s: number, _t: string, h: readonly string[]) {
      sink += h.length;
    },
    respondWith(r: Response) {
      sink += r.status;
    },
    toRequest: () => new Request("http://127.0.0.1:8080/"),
  };
};
const gatewayCases: [string, string, string][] = [
  ["round-robin", "round-robin", ""],
  ["weighted-round-robin", "weighted-round-robin", ""],
  ["least-connections", "least-connections", ""],
  ["p2c-ewma", "p2c-ewma", ""],
  ["consistent-hash ring header", '{ name: consistent-hash, options: { key: "header:x-user" } }', ""],
  ["consistent-hash maglev header", '{ name: consistent-hash, options: { key: "header:x-user", algorithm: maglev } }', ""],
  ["consistent-hash ring query", '{ name: consistent-hash, options: { key: "query:id" } }', ""],
  ["round-robin + sticky (cookie sent)", "round-robin", "sticky: true"],
];
const list = backends.map((b, i) => `{ url: "http://127.0.0.${i + 1}:80", weight: ${b.weight} }`).join(", ");
const gateways = gatewayCases.map(([name, strategy, extra]) => {
  const yaml = `pools:\n  web:\n    strategy: ${strategy}\n    ${extra}\n    backends: [${list}]\nlog: { access_log: false }\n`;
  const config = parseConfig(yaml, { file: "bench.yaml", env: () => undefined, strategyNames: registry.strategyNames() });
  const gw = buildGateway(config, { registry, logging: { logger: getLogger(["fulcrum"]), access: undefined, close: async () => {} } });
  const sticky = gw.pools.get("web")!.sticky;
  const cookie = sticky === undefined ? undefined : `a=1; fulcrum_be=${sticky.valueOf(gw.pools.get("web")!.backends[2]!)}`;
  return { name, gw, cookie };
});
// Rounds alternate over the variants so drift hits all alike; the median of 5 is shown.
const perRequest: number[][] = gateways.map(() => []);
for (let round = 0; round < 5; round++) {
  for (let v = 0; v < gateways.length; v++) {
    const { gw, cookie } = gateways[v]!;
    for (let i = 0; i < 5_000; i++) await gw.handle(exchange(i, cookie) as never);
    const t = cpuMs();
    for (let i = 0; i < 50_000; i++) await gw.handle(exchange(i, cookie) as never);
    perRequest[v]!.push(((cpuMs() - t) * 1e6) / 50_000);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
console.log(`\n${"whole request (gateway.handle)".padEnd(36)} ${"ns/req".padStart(8)}`);
for (let v = 0; v < gateways.length; v++) {
  const ns = median(perRequest[v]!);
  rows.push({ strategy: gateways[v]!.name, gateway_ns_per_request: +ns.toFixed(0) });
  console.log(`${gateways[v]!.name.padEnd(36)} ${ns.toFixed(0).padStart(8)}`);
  gateways[v]!.gw.close();
}

if (process.argv.includes("--save")) {
  const file = new URL(`./results/strategies-${new Date().toISOString().slice(0, 10)}.json`, import.meta.url).pathname;
  await Bun.write(file, JSON.stringify({ bun: Bun.version, backends: backends.length, picks: N, rows }, null, 2) + "\n");
  console.log(`wrote ${file}`);
}
process.exit(0);

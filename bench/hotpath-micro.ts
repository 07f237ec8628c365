// `bun bench/hotpath-micro.ts`: CPU cost of Fulcrum's JS layers per request, without network
// (a canned upstream), so it is stable on a noisy machine where wrk runs swing ±30%. Prints
// ns per request for the whole gateway (access log off/on) and for the hot pieces alone.
import { Buffer } from "node:buffer";
import { configure, getJsonLinesFormatter, getLogger } from "@logtape/logtape";
import { useUpstreamClient, type UpstreamAgent } from "../core/upstream/client.ts";
import { parseConfig } from "../core/config/load.ts";
import { buildGateway } from "../core/proxy/gateway.ts";
import { downstreamRaw, upstreamHeaders, upstreamHeadersRaw } from "../core/http1/headers.ts";
import { parseHead } from "../core/http1/response.ts";
import { builtinRegistry } from "../main.ts";
import { accessLog } from "../core/telemetry/log.ts";
import { BatchingWriter } from "../core/runtime/batching-writer.ts";

const HEAD = "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 21:45:18 GMT\r\nContent-Type: text/plain\r\n" +
  'Content-Length: 100\r\nLast-Modified: Thu, 26 Nov 2026 21:32:42 GMT\r\nConnection: keep-alive\r\nETag: "6b08a57a-64"\r\n' +
  "x-backend: b1\r\nAccept-Ranges: bytes\r\n\r\n";
const wire = Buffer.from(HEAD + "a".repeat(100));
const head = parseHead(wire, 0)!;
const body = new Uint8Array(100).fill(97);

async function time(name: string, n: number, fn: () => unknown): Promise<void> {
  for (let i = 0; i < n / 5; i++) await fn();
  const t = performance.now();
  for (let i = 0; i < n; i++) await fn();
  console.log(`${name.padEnd(36)} ${(((performance.now() - t) * 1e6) / n).toFixed(0).padStart(6)} ns`);
}

useUpstreamClient(() =>
  ({
    send(req) {
      req.onBodyEnd(body.length);
      return Promise.resolve({ status: 200, statusText: "OK", rawHeaders: head.rawHeaders, body });
    },
    destroy() {},
  }) as UpstreamAgent
);
const format = getJsonLinesFormatter({ properties: "flatten", message: "rendered" });
let sink = 0;
await configure({
  reset: true,
  // The formatter core/telemetry/log.ts uses for operational records (access lines use accessLog, below).
  sinks: { mem: (r) => void (sink += format(r).length) },
  loggers: [
    { category: ["fulcrum"], sinks: ["mem"], lowestLevel: "info" },
    { category: ["logtape", "meta"], sinks: [], lowestLevel: "error" },
  ],
});
const registry = builtinRegistry();
const nullWriter = new BatchingWriter({ write: (b) => void (sink += b.length), flush() {}, close: async () => {} });
/** A parsed request as the own listener hands it over, answered into the void. */
const rawHeadersIn = ["host", "127.0.0.1:8080", "user-agent", "wrk"];
const noSignal = { aborted: false, addEventListener() {}, removeEventListener() {} };
const rawExchange = () => ({
  method: "GET",
  target: "/100b",
  host: "127.0.0.1:8080",
  rawHeaders: rawHeadersIn,
  header: (name: string) => (rawHeadersIn.indexOf(name) >= 0 ? rawHeadersIn[rawHeadersIn.indexOf(name) + 1]! : null),
  clientIp: "127.0.0.1",
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
  toRequest: () => request(),
});
const request = () => new Request("http://127.0.0.1:8080/100b", { headers: { host: "127.0.0.1:8080", "user-agent": "wrk" } });
await time("new Request (baseline, subtract)", 100_000, request);
for (const log of [false, true]) {
  const yaml = `pools:\n  web:\n    backends: ["http://127.0.0.1:1"]\nlog: { access_log: ${log} }\n`;
  const config = parseConfig(yaml, { file: "micro.yaml", env: () => undefined, strategyNames: registry.strategyNames() });
  const gw = buildGateway(config, {
    registry,
    // The access log as a server has it (lines encoded into a batching writer's buffer), written nowhere.
    logging: { logger: getLogger(["fulcrum"]), access: log ? accessLog(nullWriter) : undefined, close: async () => {} },
  });
  await time(`gateway.fetch, access_log ${log ? "on" : "off"}`, 100_000, () => gw.fetch(request(), "127.0.0.1"));
  // The own listener's path (a route without middleware): no Request/Response at all.
  await time(`gateway.handle (raw), access_log ${log ? "on" : "off"}`, 300_000, () => gw.handle(rawExchange()));
  gw.close();
}
// A user strategy plugin (bench/plugins/rr-plugin.ts, round robin as the built-in does it, behind
// the isolation wrapper every user plugin gets) against the built-in: alternating rounds, since
// the difference is far below one run's drift. Three backends, so both strategies really pick.
{
  const rr = (await import("./plugins/rr-plugin.ts")).default;
  registry.register(rr as never, "bench/plugins/rr-plugin.ts");
  const gw = (strategy: string) => {
    const yaml =
      `pools:\n  web:\n    strategy: ${strategy}\n    backends: ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"]\nlog: { access_log: false }\n`;
    const config = parseConfig(yaml, { file: "micro.yaml", env: () => undefined, strategyNames: registry.strategyNames() });
    return buildGateway(config, { registry, logging: { logger: getLogger(["fulcrum"]), access: undefined, close: async () => {} } });
  };
  const variants = [["built-in round-robin", gw("round-robin")], ["user plugin round robin", gw(rr.name)]] as const;
  const ns: number[][] = [[], []];
  for (let round = 0; round < 10; round++) {
    for (let v = 0; v < 2; v++) {
      const g = variants[(v + round) % 2]![1];
      for (let i = 0; i < 20_000; i++) await g.handle(rawExchange() as never);
      const t = performance.now();
      for (let i = 0; i < 100_000; i++) await g.handle(rawExchange() as never);
      ns[(v + round) % 2]!.push(((performance.now() - t) * 1e6) / 100_000);
    }
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  for (let v = 0; v < 2; v++)
    console.log(
      `gateway.handle, ${variants[v]![0]}`.padEnd(40) + ` ${med(ns[v]!).toFixed(0).padStart(6)} ns (median of 10 alternating rounds)`,
    );
  const diffs = ns[1]!.map((x, i) => x - ns[0]![i]!);
  console.log(
    `  plugin − built-in, same round: median ${med(diffs).toFixed(0)} ns, range ${Math.min(...diffs).toFixed(0)} … ${
      Math.max(...diffs).toFixed(0)
    } ns`,
  );
  for (const [, g] of variants) g.close();
}

const req = request();
await time("parseHead (nginx head, 9 headers)", 200_000, () => parseHead(wire, 0));
await time(
  "upstreamHeaders (Headers)",
  200_000,
  () => upstreamHeaders(req.headers, { clientIp: "127.0.0.1", proto: "http", hostOverride: undefined }),
);
const rawReq: string[] = [];
req.headers.forEach((v, k) => rawReq.push(k, v));
await time(
  "upstreamHeadersRaw (raw listener path)",
  200_000,
  () => upstreamHeadersRaw(rawReq, { clientIp: "127.0.0.1", proto: "http", hostOverride: undefined }),
);
await time("downstreamRaw (raw listener path)", 200_000, () => downstreamRaw(head.rawHeaders));
process.exit(0);

// Per-request cost of the tracing API: what the proxy calls for one request with one upstream
// attempt (server span, client span, inject, end both, ids for the access log).
//   bun bench/telemetry-micro.ts [requests-per-round]     (BATCH=n sets max_export_batch_size,
//                                                          RATE=n requests/s, default 20000)
//   bun bench/telemetry-micro.ts --gateway [--raw] [requests-per-round]   (ONLY=off,1.0,0.01,0: those variants)
//     the whole request path instead (gateway, route, proxy, observer with metrics, access log to
//     memory) against a canned upstream, 100 requests in flight, RATE default 10000: what the
//     tracing calls cost where they run, with the caches and the garbage of a real request; --raw
//     hands requests over as the own listener does (gateway.handle) instead of as web Requests
// Requests run in chunks of 200, paced at RATE (about what one Fulcrum process serves here) with
// the event loop free in between, as a server would, so the batch processor exports while we
// measure and keeps up (unpaced, spans outran the exporter and were dropped, which hides their
// cost). Reported per request:
//   api   - time inside the tracing calls (the synchronous hot-path cost)
//   cpu   - CPU time of this process per request, all threads (export, JIT, GC helpers): the
//           whole cost, and the steadiest number on a machine shared with other work
// The collector is a separate process that only drains bodies.
import { createTelemetry, type ClientSpanAttrs, type Telemetry } from "../core/telemetry/tracing.ts";

const GATEWAY = process.argv.includes("--gateway");
const N = Number(process.argv.slice(2).find((a) => !a.startsWith("--")) ?? (GATEWAY ? 30_000 : 50_000));
const RATE = Number(process.env.RATE ?? (GATEWAY ? 10_000 : 20_000));
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const CHUNK = 200;

const request = new Request("http://example.com:8080/api/users/42?x=1", {
  headers: { host: "example.com:8080", "user-agent": "bench/1.0", accept: "*/*" },
});
const upstreamHeaders = new Headers({ "x-forwarded-for": "10.0.0.9" });
// One attrs object per backend, as the proxy is expected to keep it.
const attrs: ClientSpanAttrs = {
  pool: "web",
  backend: "b1",
  strategy: "round-robin",
  attempt: 1,
  url: "http://10.0.0.11:8000/api/users/42",
  host: "10.0.0.11",
  port: 8000,
};

function oneRequest(tel: Telemetry): unknown {
  const server = tel.startServerSpan(request, "api", "10.0.0.9");
  const client = server && tel.startClientSpan(server, attrs);
  tel.inject(client, upstreamHeaders);
  tel.endClient(client, 200);
  const ids = tel.ids(server);
  tel.endServer(server, 200);
  return ids;
}

const tick = () => new Promise<void>((r) => setImmediate(r));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

type Round = { api: number; cpu: number };

async function round(tel: Telemetry, n: number, gateway?: Gateway): Promise<Round> {
  let api = 0;
  let sink: unknown;
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  const chunk = gateway ? 100 : CHUNK;
  for (let done = 0; done < n; done += chunk) {
    const t0 = performance.now();
    if (gateway) {
      const inFlight: Promise<unknown>[] = [];
      for (let i = 0; i < chunk; i++) {
        inFlight.push(
          RAW ? gateway.handle(rawExchange() as never) : gateway.fetch(gatewayRequest(), "10.0.0.9").then((r) => r.arrayBuffer()),
        );
      }
      await Promise.all(inFlight);
    } else for (let i = 0; i < chunk; i++) sink = oneRequest(tel);
    api += performance.now() - t0;
    const ahead = start + ((done + chunk) * 1000) / RATE - performance.now();
    await (ahead >= 1 ? sleep(ahead) : tick());
  }
  void sink;
  const cpu = process.cpuUsage(cpu0);
  return { api: (api * 1000) / n, cpu: (cpu.user + cpu.system) / n };
}

type Variant = { label: string; tel: Telemetry; gateway?: Gateway; rounds: Round[] };

async function prepare(label: string, config: Parameters<typeof createTelemetry>[0]): Promise<Variant> {
  const tel = await createTelemetry(config, { serviceVersion: "bench", env: {} });
  const gateway = GATEWAY ? await buildBenchGateway(tel) : undefined;
  await round(tel, N, gateway); // warm up the JIT (the exporter's code gets hot only after a few batches)
  return { label, tel, gateway, rounds: [] };
}

/** Rounds interleaved over the variants, so that drift in the machine's load hits all alike. */
async function measure(variants: Variant[]) {
  for (let r = 0; r < ROUNDS; r++) for (const v of variants) v.rounds.push(await round(v.tel, N, v.gateway));
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const base = variants[0]!;
  for (const v of variants) {
    await v.tel.shutdown(30_000);
    v.gateway?.close();
    // CPU over the first variant's, per round (same moment), then the median.
    const delta = med(v.rounds.map((x, i) => x.cpu - base.rounds[i]!.cpu));
    console.log(
      `${v.label.padEnd(22)} ${GATEWAY ? "" : `api ${med(v.rounds.map((x) => x.api)).toFixed(2).padStart(6)} µs/req   `}cpu ${
        med(v.rounds.map((x) => x.cpu)).toFixed(2).padStart(6)
      } µs/req` +
        (v === base ? "" : `   ${delta >= 0 ? "+" : ""}${delta.toFixed(2)} µs vs ${base.label}`) +
        (v.tel.enabled ? `   dropped spans ${v.tel.droppedSpans()}` : ""),
    );
  }
}

// --gateway: the request path of core/proxy/gateway.ts with a canned 100-byte upstream response.
type Gateway = { fetch(request: Request, clientIp: string): Promise<Response>; handle(raw: never): Promise<void>; close(): void };
const gatewayRequest = () => new Request("http://127.0.0.1:8080/100b", { headers: { host: "127.0.0.1:8080", "user-agent": "wrk/4.2" } });
/** --raw: the request as Fulcrum's own listener hands it over (parsed header list, no Request), answered into the void. */
const RAW = process.argv.includes("--raw");
const rawHeaders = ["host", "127.0.0.1:8080", "user-agent", "wrk/4.2"];
const noSignal = { aborted: false, addEventListener() {}, removeEventListener() {} };
let answered = 0;
const rawExchange = () => ({
  method: "GET",
  target: "/100b",
  minor: 1,
  host: "127.0.0.1:8080",
  rawHeaders,
  header: (name: string) => (rawHeaders.indexOf(name) >= 0 ? rawHeaders[rawHeaders.indexOf(name) + 1]! : null),
  clientIp: "10.0.0.9",
  bodyLength: 0,
  body: null,
  signal: noSignal,
  bodyFault: () => 0,
  respond(status: number) {
    answered += status;
  },
  respondWith(r: Response) {
    answered += r.status;
  },
  toRequest: gatewayRequest,
});
async function buildBenchGateway(tel: Telemetry): Promise<Gateway> {
  const { Buffer } = await import("node:buffer");
  const { configure, getLogger } = await import("@logtape/logtape");
  const { useUpstreamClient } = await import("../core/upstream/client.ts");
  const { parseConfig } = await import("../core/config/load.ts");
  const { buildGateway } = await import("../core/proxy/gateway.ts");
  const { parseHead } = await import("../core/http1/response.ts");
  const { builtinRegistry } = await import("../main.ts");
  const { accessLog } = await import("../core/telemetry/log.ts");
  const { BatchingWriter } = await import("../core/runtime/batching-writer.ts");
  const { createObserver } = await import("../core/telemetry/observer.ts");
  const { createMetrics } = await import("../core/telemetry/metrics.ts");
  const head = parseHead(
    Buffer.from("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n"),
    0,
  )!;
  const body = new Uint8Array(100).fill(97);
  useUpstreamClient(() =>
    ({
      send(req: { onBodyEnd(n: number): void }) {
        req.onBodyEnd(body.length);
        return Promise.resolve({ status: 200, statusText: "OK", rawHeaders: head.rawHeaders, body });
      },
      destroy() {},
    }) as never
  );
  let logged = 0;
  await configure({
    reset: true,
    sinks: { none: () => {} },
    loggers: [
      { category: ["fulcrum"], sinks: ["none"], lowestLevel: "info" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "error" },
    ],
  });
  const registry = builtinRegistry();
  const yaml = `pools:\n  web:\n    backends: ["http://127.0.0.1:1"]\nlog: { access_log: true }\n`;
  const config = parseConfig(yaml, { file: "micro.yaml", env: () => undefined, strategyNames: registry.strategyNames() });
  return buildGateway(config, {
    registry,
    observer: createObserver(tel, createMetrics()),
    // Access lines as core/telemetry/log.ts writes them (encoded into a batching writer's buffer), counted instead of written.
    logging: {
      logger: getLogger(["fulcrum"]),
      access: accessLog(new BatchingWriter({ write: (b) => void (logged += b.length), flush() {}, close: async () => {} })),
      close: async () => {},
    },
  });
}

const collector = Bun.spawn([
  process.execPath,
  "-e",
  `
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, async fetch(req) {
    await req.arrayBuffer();
    return new Response(new Uint8Array(0), { headers: { "content-type": "application/x-protobuf" } });
  } });
  console.log(s.port);
`,
], { stdout: "pipe" });
const firstLine = await collector.stdout.getReader().read();
const endpoint = `http://127.0.0.1:${new TextDecoder().decode(firstLine.value).trim()}/v1/traces`;

// Production-like batching: the defaults, except a queue sized for this load.
const traces = (sample_ratio: number) => ({
  traces: { endpoint, sample_ratio, max_queue_size: 16_384, max_export_batch_size: Number(process.env.BATCH ?? 512) },
});

console.log(
  `bun ${Bun.version}, ${
    GATEWAY ? "whole gateway path, " : ""
  }${N} requests x ${ROUNDS} rounds at ${RATE}/s (interleaved, median shown), 2 spans per sampled request`,
);
try {
  // ONLY=off|1.0|0.01|0 (comma-separated) runs those variants only; 0 is tracing on with nothing
  // sampled (the unsampled path alone, no recorded spans).
  const only = process.env.ONLY?.split(",");
  const variants: Variant[] = [];
  if (!only || only.includes("off")) variants.push(await prepare("tracing off", undefined));
  if (!only || only.includes("1.0")) variants.push(await prepare("on, sample_ratio 1.0", traces(1)));
  if (!only || only.includes("0.01")) variants.push(await prepare("on, sample_ratio 0.01", traces(0.01)));
  if (only?.includes("0")) variants.push(await prepare("on, sample_ratio 0", traces(0)));
  await measure(variants);
} finally {
  collector.kill();
}

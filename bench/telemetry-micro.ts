// Per-request cost of the tracing API: what the proxy calls for one request with one upstream
// attempt (server span, client span, inject, end both, ids for the access log).
//   bun bench/telemetry-micro.ts [requests-per-round]     (BATCH=n sets max_export_batch_size,
//                                                          RATE=n requests/s, default 20000)
// Requests run in chunks of 200, paced at RATE (about what one Fulcrum process serves here) with
// the event loop free in between, as a server would, so the batch processor exports while we
// measure and keeps up (unpaced, spans outran the exporter and were dropped, which hides their
// cost). Reported per request:
//   api   - time inside the tracing calls (the synchronous hot-path cost)
//   cpu   - CPU time of this process per request, all threads (export, JIT, GC helpers): the
//           whole cost, and the steadiest number on a machine shared with other work
// The collector is a separate process that only drains bodies.
import { createTelemetry, type ClientSpanAttrs, type Telemetry } from "../core/telemetry.ts";

const N = Number(process.argv[2] ?? 50_000);
const RATE = Number(process.env.RATE ?? 20_000);
const ROUNDS = 5;
const CHUNK = 200;

const request = new Request("http://example.com:8080/api/users/42?x=1", {
  headers: { host: "example.com:8080", "user-agent": "bench/1.0", accept: "*/*" },
});
const upstreamHeaders = new Headers({ "x-forwarded-for": "10.0.0.9" });
// One attrs object per backend, as the proxy is expected to keep it.
const attrs: ClientSpanAttrs = {
  pool: "web", backend: "b1", strategy: "round-robin", attempt: 1,
  url: "http://10.0.0.11:8000/api/users/42", host: "10.0.0.11", port: 8000,
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

async function round(tel: Telemetry, n: number): Promise<Round> {
  let api = 0;
  let sink: unknown;
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  for (let done = 0; done < n; done += CHUNK) {
    const t0 = performance.now();
    for (let i = 0; i < CHUNK; i++) sink = oneRequest(tel);
    api += performance.now() - t0;
    const ahead = start + ((done + CHUNK) * 1000) / RATE - performance.now();
    await (ahead >= 1 ? sleep(ahead) : tick());
  }
  void sink;
  const cpu = process.cpuUsage(cpu0);
  return { api: (api * 1000) / n, cpu: (cpu.user + cpu.system) / n };
}

async function measure(label: string, config: Parameters<typeof createTelemetry>[0]) {
  const tel = await createTelemetry(config, { serviceVersion: "bench", env: {} });
  await round(tel, N); // warm up the JIT (the exporter's code gets hot only after a few batches)
  const rounds: Round[] = [];
  for (let r = 0; r < ROUNDS; r++) rounds.push(await round(tel, N));
  await tel.shutdown(30_000);
  const med = (k: keyof Round) => rounds.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(ROUNDS / 2)]!;
  console.log(
    `${label.padEnd(22)} api ${med("api").toFixed(2).padStart(6)} µs/req   cpu ${med("cpu").toFixed(2).padStart(6)} µs/req` +
      (tel.enabled ? `   dropped spans ${tel.droppedSpans()}` : ""),
  );
}

const collector = Bun.spawn([process.execPath, "-e", `
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, async fetch(req) {
    await req.arrayBuffer();
    return new Response(new Uint8Array(0), { headers: { "content-type": "application/x-protobuf" } });
  } });
  console.log(s.port);
`], { stdout: "pipe" });
const firstLine = await collector.stdout.getReader().read();
const endpoint = `http://127.0.0.1:${new TextDecoder().decode(firstLine.value).trim()}/v1/traces`;

// Production-like batching: the defaults, except a queue sized for this load.
const traces = (sample_ratio: number) => ({ traces: { endpoint, sample_ratio, max_queue_size: 16_384, max_export_batch_size: Number(process.env.BATCH ?? 512) } });

console.log(`bun ${Bun.version}, ${N} requests x ${ROUNDS} rounds at ${RATE}/s (median shown), 2 spans per sampled request`);
try {
  await measure("tracing off", undefined);
  await measure("on, sample_ratio 1.0", traces(1));
  await measure("on, sample_ratio 0.01", traces(0.01));
} finally {
  collector.kill();
}

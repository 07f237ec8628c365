// Per-request cost of the tracing API: what the proxy calls for one request with one upstream
// attempt (server span, client span, inject, end both, ids for the access log).
//   bun bench/telemetry-micro.ts [requests-per-round]     (BATCH=n sets max_export_batch_size)
// Requests run in chunks with a yield to the event loop between them, as a server would, so the
// batch processor exports while we measure. Reported per request:
//   api   - time inside the tracing calls (the synchronous hot-path cost)
//   total - wall time per request including the export work that ran on this thread
//   cpu   - CPU time of this process per request, all threads (JIT, GC helpers, export I/O):
//           the steadiest of the three on a machine shared with other work
// The collector is a separate process that only drains bodies.
import { createTelemetry, type ClientSpanAttrs, type Telemetry } from "../core/telemetry.ts";

const N = Number(process.argv[2] ?? 100_000);
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

type Round = { api: number; total: number; cpu: number };

async function round(tel: Telemetry, n: number): Promise<Round> {
  let api = 0;
  let sink: unknown;
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  for (let done = 0; done < n; done += CHUNK) {
    const t0 = performance.now();
    for (let i = 0; i < CHUNK; i++) sink = oneRequest(tel);
    api += performance.now() - t0;
    await tick();
  }
  void sink;
  const cpu = process.cpuUsage(cpu0);
  return { api: (api * 1000) / n, total: ((performance.now() - start) * 1000) / n, cpu: (cpu.user + cpu.system) / n };
}

async function measure(label: string, config: Parameters<typeof createTelemetry>[0]) {
  const tel = await createTelemetry(config, { serviceVersion: "bench", env: {} });
  await round(tel, 100_000); // warm up the JIT (the exporter's code gets hot only after a few batches)
  const rounds: Round[] = [];
  for (let r = 0; r < ROUNDS; r++) rounds.push(await round(tel, N));
  await tel.shutdown(30_000);
  const med = (k: keyof Round) => rounds.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(ROUNDS / 2)]!;
  console.log(
    `${label.padEnd(22)} api ${med("api").toFixed(2).padStart(6)} µs/req   total ${med("total").toFixed(2).padStart(6)} µs/req   cpu ${med("cpu").toFixed(2).padStart(6)} µs/req` +
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

console.log(`bun ${Bun.version}, ${N} requests x ${ROUNDS} rounds (median shown), 2 spans per sampled request`);
try {
  await measure("tracing off", undefined);
  await measure("on, sample_ratio 1.0", traces(1));
  await measure("on, sample_ratio 0.01", traces(0.01));
} finally {
  collector.kill();
}

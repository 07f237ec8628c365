// HTTP/2 side by side with nginx: h2load, 100 B responses, 32 connections × 10 streams, both
// proxying over HTTP/1.1 keep-alive to the same backends (nginx serving fixed files), access logs
// off on both. Rows (issue 20, "HTTP/2 and WebSocket"):
//   h2-tls-100b-c32m10  HTTP/2 over TLS, negotiated by ALPN (the issue's row): the same ECDSA P-256
//                     certificate, TLS 1.2 and 1.3 offered, the same cipher list on both
//   h2c-100b-c32m10   cleartext HTTP/2 with prior knowledge (Fulcrum `h2c: true`, nginx `listen … http2`)
//   h1-100b-c32       the same servers over HTTP/1.1 (h2load --h1, 32 connections): the baseline
//                     (Fulcrum serves both on its port; nginx's cleartext `http2` port speaks only
//                     HTTP/2, so its HTTP/1.1 is on the next port, same server otherwise)
// Proxies alternate every round; the table shows medians and the ratio Fulcrum / nginx.
//
//   bun bench/h2.ts [--duration S] [--runs N] [--workers N] [--warmup S] [--scenarios a,b]
import { join } from "node:path";
import { startBackends } from "./lib/backends.ts";
import { selfSigned } from "./lib/certs.ts";
import { assertFree, cpuSeconds, log, stop, stopAll, which, workDir } from "./lib/proc.ts";
import { alternatingRounds, comparisonTable, loadAverage, median } from "./lib/rounds.ts";
import { fulcrumConfig, nginxConfig, nginxVersion, type Server, startServer } from "./lib/vs-nginx.ts";
import { DEFAULT_CIPHERS } from "../core/tls/manager.ts";

const args = process.argv.slice(2);
const opt = (k: string, d: string) => {
  const i = args.indexOf(`--${k}`);
  return i >= 0 ? args[i + 1]! : d;
};
if (args.includes("--help")) {
  console.log("usage: bun bench/h2.ts [--duration S] [--runs N] [--workers N] [--warmup S] [--scenarios h2c-100b-c32m10,h1-100b-c32]");
  process.exit(0);
}
const duration = Number(opt("duration", "8"));
const runs = Number(opt("runs", "3"));
const workers = Number(opt("workers", "1"));
const warmup = Number(opt("warmup", "5"));
const scenarios = opt("scenarios", "h2-tls-100b-c32m10,h2c-100b-c32m10,h1-100b-c32").split(",");
if (!which("nginx") || !which("h2load") || !which("openssl")) {
  throw new Error("bench/h2.ts needs nginx, h2load and openssl (apt-get install nginx nghttp2-client openssl)");
}

// Ports: Fulcrum h2c+HTTP/1.1 and TLS; nginx h2c, HTTP/1.1 (its cleartext http2 port speaks only h2) and TLS.
const PORTS = { fulcrum: 18461, fulcrumTls: 18462, nginx: 18471, nginxTls: 18473, backends: 19021 };
const dir = workDir("fulcrum-bench-h2-");
await assertFree([
  PORTS.fulcrum,
  PORTS.fulcrumTls,
  PORTS.nginx,
  PORTS.nginx + 1,
  PORTS.nginxTls,
  PORTS.backends,
  PORTS.backends + 1,
  PORTS.backends + 2,
]);
selfSigned(dir, "site", "localhost", "DNS:localhost,IP:127.0.0.1");
const backends = await startBackends({ count: 3, basePort: PORTS.backends, dir: join(dir, "backends"), kind: "nginx" });

const upstream = `upstream bench { ${
  backends.urls.map((u) => `server ${new URL(u).host};`).join(" ")
} keepalive 320; keepalive_requests 1000000; keepalive_timeout 60s; }`;
const proxyPass = `location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection ""; }`;

function config(name: string, port: number): string {
  if (name === "fulcrum") {
    return fulcrumConfig(
      dir,
      port,
      workers,
      `listen:\n  - { address: 127.0.0.1:${port}, h2c: true }\n  - address: 127.0.0.1:${PORTS.fulcrumTls}\n    tls: { certificates: [{ cert: ${dir}/site.pem, key: ${dir}/site.key }] }\n`,
      `pools:\n  web:\n    backends: [${backends.urls.join(", ")}]\n    keepalive: { max_idle: 320 }\n`,
    );
  }
  return nginxConfig(
    dir,
    port,
    workers,
    `  keepalive_timeout 60s; keepalive_requests 1000000; http2_max_requests 1000000;
  http2_max_concurrent_streams 128;
  ${upstream}
  server {
    listen 127.0.0.1:${port} http2 backlog=4096;
    ${proxyPass}
  }
  server {
    listen 127.0.0.1:${port + 1} backlog=4096;
    ${proxyPass}
  }
  server {
    listen 127.0.0.1:${PORTS.nginxTls} ssl http2 backlog=4096;
    ssl_certificate ${dir}/site.pem; ssl_certificate_key ${dir}/site.key;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_ciphers ${DEFAULT_CIPHERS}; ssl_prefer_server_ciphers on;
    ${proxyPass}
  }
`,
  );
}

function start(name: string, port: number): Promise<Server> {
  const url = `http://127.0.0.1:${port}/100b`;
  const ready = async () =>
    Bun.spawnSync(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", url]).stdout.toString() === "200";
  return startServer(name, port, dir, config(name, port), ready, "answer HTTP/2");
}

interface Result {
  rps: number;
  /** CPU time (user + system, the server's processes) per request answered, µs: steadier than req/s on a shared machine. */
  cpuUs: number;
  ok: number;
  failed: number;
  meanMs: number;
  maxMs: number;
}

/** h2load's summary: req/s, 2xx, failed, and the mean and max time for request. */
async function h2load(scenario: string, server: Server, seconds: number): Promise<Result> {
  const h1 = scenario === "h1-100b-c32";
  const tlsPort = server.name === "nginx" ? PORTS.nginxTls : PORTS.fulcrumTls;
  const url = scenario === "h2-tls-100b-c32m10"
    ? `https://127.0.0.1:${tlsPort}/100b`
    : `http://127.0.0.1:${server.port + (h1 && server.name === "nginx" ? 1 : 0)}/100b`;
  const cmd = h1
    ? ["h2load", "--h1", "-c", "32", "-D", String(seconds), url]
    : ["h2load", "-c", "32", "-m", "10", "-D", String(seconds), url];
  const cpu0 = cpuSeconds(server.proc.pid);
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  const cpu = cpuSeconds(server.proc.pid) - cpu0;
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const ok = Number(/status codes: (\d+) 2xx/.exec(out)?.[1] ?? 0);
  const failed = Number(/(\d+) failed/.exec(out)?.[1] ?? 0);
  const t = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)/.exec(out);
  const ms = (
    v: string | undefined,
  ) => (v === undefined
    ? NaN
    : v.endsWith("us")
    ? Number(v.slice(0, -2)) / 1000
    : v.endsWith("ms")
    ? Number(v.slice(0, -2))
    : Number(v.slice(0, -1)) * 1000);
  if (Number.isNaN(rps)) throw new Error(`could not parse h2load output:\n${out}`);
  return { rps, cpuUs: ok > 0 ? (cpu * 1e6) / ok : NaN, ok, failed, meanMs: ms(t?.[3]), maxMs: ms(t?.[2]) };
}

const servers = [await start("fulcrum", PORTS.fulcrum), await start("nginx", PORTS.nginx)];
log(`warm-up: ${warmup}s per server`);
for (const s of servers) await h2load("h2c-100b-c32m10", s, warmup);
log(`load average before the runs: ${await loadAverage()}`);
const cells = await alternatingRounds(runs, scenarios, () => servers, async (scenario, s, round) => {
  const r = await h2load(scenario, s, duration);
  log(
    `round ${round} ${scenario} ${s.name}: ${Math.round(r.rps)} req/s, ${r.cpuUs.toFixed(1)} µs CPU/request, mean ${
      r.meanMs.toFixed(2)
    } ms, max ${r.maxMs.toFixed(1)} ms, failed ${r.failed}`,
  );
  return r;
});
const loadAfter = await loadAverage();
for (const s of servers) await stop(s.proc);
await backends.stop();

const versions = `bun ${Bun.version}, ${nginxVersion()}, ${
  Bun.spawnSync(["h2load", "--version"]).stdout.toString().trim().split("\n")[0]
}, ${navigator.hardwareConcurrency} cores`;
const lines = [
  `HTTP/2 bench ${
    new Date().toISOString()
  } (${versions}; workers ${workers} each; ${runs} rounds × ${duration}s; medians; load average after: ${loadAfter})`,
  ...comparisonTable(cells, scenarios.map((sc) => [sc, "fulcrum", "nginx"]), {
    unit: "req/s",
    latency: "mean",
    errors: "failed",
    rateOf: (r) => r.rps,
    latencyOf: (r) => r.meanMs,
    latencyText: (ms) => `${ms.toFixed(2)} ms`,
    errorsOf: (r) => r.failed,
  }),
  "CPU per request (user + system of the server's processes, medians; lower is better):",
  ...scenarios.map((sc) => {
    const f = median((cells.get(`${sc} fulcrum`) ?? []).map((r) => r.cpuUs));
    const n = median((cells.get(`${sc} nginx`) ?? []).map((r) => r.cpuUs));
    return `  ${sc}: Fulcrum ${f.toFixed(1)} µs, nginx ${n.toFixed(1)} µs, nginx / Fulcrum ${(n / f).toFixed(2)}`;
  }),
];
console.log(lines.join("\n"));
await stopAll();

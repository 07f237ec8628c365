// HTTP/2 side by side with nginx: h2load, 100 B responses, 32 connections × 10 streams, both
// proxying over HTTP/1.1 keep-alive to the same backends (nginx serving fixed files), access logs
// off on both. Rows (issue 20, "HTTP/2 and WebSocket"):
//   h2-tls-100b-c32m10  HTTP/2 over TLS, negotiated by ALPN (the row): the same ECDSA P-256
//                     certificate, TLS 1.2 and 1.3 offered, the same cipher list on both
//   h2c-100b-c32m10   cleartext HTTP/2 with prior knowledge (Fulcrum `h2c: true`, nginx `listen … http2`)
//   h1-100b-c32       the same servers over HTTP/1.1 (h2load --h1, 32 connections): the baseline
//                     (Fulcrum serves both on its port; nginx's cleartext `http2` port speaks only
//                     HTTP/2, so its HTTP/1.1 is on the next port, same server otherwise)
// Proxies alternate every round; the table shows medians and the ratio Fulcrum / nginx.
//
//   bun bench/h2.ts [--duration S] [--runs N] [--workers N] [--warmup S] [--scenarios a,b]
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { startBackends } from "./lib/backends.ts";
import { assertFree, hardNofile, log, sleep, spawn, stop, stopAll, waitFor, which, workDir } from "./lib/proc.ts";
import { repoRoot } from "./lib/proxies.ts";
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
const openssl = (a: string[]) => {
  const r = Bun.spawnSync(["openssl", ...a], { cwd: dir, stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${a.join(" ")}: ${r.stderr}`);
};
openssl([
  "req",
  "-x509",
  "-newkey",
  "ec",
  "-pkeyopt",
  "ec_paramgen_curve:P-256",
  "-nodes",
  "-keyout",
  "site.key",
  "-out",
  "site.pem",
  "-days",
  "3",
  "-subj",
  "/CN=localhost",
  "-addext",
  "subjectAltName=DNS:localhost,IP:127.0.0.1",
]);
const backends = await startBackends({ count: 3, basePort: PORTS.backends, dir: join(dir, "backends"), kind: "nginx" });

function fulcrumConfig(port: number): string {
  const file = join(dir, `fulcrum-${port}.yaml`);
  writeFileSync(
    file,
    `listen:\n  - { address: 127.0.0.1:${port}, h2c: true }\n  - address: 127.0.0.1:${PORTS.fulcrumTls}\n    tls: { certificates: [{ cert: ${dir}/site.pem, key: ${dir}/site.key }] }\n` +
      `workers: ${workers}\nadmin: false\nlog: { level: warning, access_log: false }\n` +
      `pools:\n  web:\n    backends: [${backends.urls.join(", ")}]\n    keepalive: { max_idle: 320 }\n`,
  );
  return file;
}

function nginxConfig(port: number): string {
  const file = join(dir, `nginx-${port}.conf`);
  const servers = backends.urls.map((u) => `server ${new URL(u).host};`).join(" ");
  writeFileSync(
    file,
    `daemon off;
worker_processes ${workers};
${process.getuid?.() === 0 ? "user root;" : ""}
pid ${dir}/nginx-${port}.pid;
error_log ${dir}/nginx-${port}-error.log warn;
worker_rlimit_nofile ${hardNofile()};
events { worker_connections ${Math.min(20000, hardNofile() - 100)}; }
http {
  access_log off;
  keepalive_timeout 60s; keepalive_requests 1000000; http2_max_requests 1000000;
  http2_max_concurrent_streams 128;
  client_body_temp_path ${dir}/nbt; proxy_temp_path ${dir}/npt; fastcgi_temp_path ${dir}/nft;
  uwsgi_temp_path ${dir}/nut; scgi_temp_path ${dir}/nst;
  upstream bench { ${servers} keepalive 320; keepalive_requests 1000000; keepalive_timeout 60s; }
  server {
    listen 127.0.0.1:${port} http2 backlog=4096;
    location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:${port + 1} backlog=4096;
    location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:${PORTS.nginxTls} ssl http2 backlog=4096;
    ssl_certificate ${dir}/site.pem; ssl_certificate_key ${dir}/site.key;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_ciphers ${DEFAULT_CIPHERS}; ssl_prefer_server_ciphers on;
    location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`,
  );
  return file;
}

interface Server {
  name: string;
  port: number;
  proc: Subprocess;
}

async function start(name: string, port: number): Promise<Server> {
  const cmd = name === "fulcrum"
    ? [process.execPath, join(repoRoot(), "main.ts"), "run", "--config", fulcrumConfig(port)]
    : [which("nginx")!, "-c", nginxConfig(port), "-e", `${dir}/nginx-${port}-error.log`];
  const proc = spawn(name, cmd, { cwd: repoRoot(), stderr: join(dir, `${name}.stderr`), raiseNofile: true });
  const up = await waitFor(
    async () => {
      const r = Bun.spawnSync([
        "curl",
        "-s",
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        `http://127.0.0.1:${port}/100b`,
      ]);
      return r.stdout.toString() === "200" || undefined;
    },
    15_000,
    50,
  );
  if (!up) throw new Error(`${name} did not answer HTTP/2 on ${port} (see ${dir})`);
  return { name, port, proc };
}

interface Result {
  rps: number;
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
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  await p.exited;
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
  return { rps, ok, failed, meanMs: ms(t?.[3]), maxMs: ms(t?.[2]) };
}

const servers = [await start("fulcrum", PORTS.fulcrum), await start("nginx", PORTS.nginx)];
log(`warm-up: ${warmup}s per server`);
for (const s of servers) await h2load("h2c-100b-c32m10", s, warmup);
log(`load average before the runs: ${(await Bun.file("/proc/loadavg").text()).trim()}`);
const cells = new Map<string, Result[]>();
for (let round = 0; round < runs; round++) {
  for (const scenario of scenarios) {
    const order = round % 2 === 0 ? servers : [...servers].reverse();
    for (const s of order) {
      const r = await h2load(scenario, s, duration);
      const key = `${scenario} ${s.name}`;
      cells.set(key, [...(cells.get(key) ?? []), r]);
      log(
        `round ${round + 1} ${scenario} ${s.name}: ${Math.round(r.rps)} req/s, mean ${r.meanMs.toFixed(2)} ms, max ${
          r.maxMs.toFixed(1)
        } ms, failed ${r.failed}`,
      );
      await sleep(500);
    }
  }
}
const loadAfter = (await Bun.file("/proc/loadavg").text()).trim();
for (const s of servers) await stop(s.proc);
await backends.stop();

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const versions = `bun ${Bun.version}, ${Bun.spawnSync(["nginx", "-v"]).stderr.toString().trim()}, ${
  Bun.spawnSync(["h2load", "--version"]).stdout.toString().trim().split("\n")[0]
}, ${navigator.hardwareConcurrency} cores`;
const lines = [
  `HTTP/2 bench ${
    new Date().toISOString()
  } (${versions}; workers ${workers} each; ${runs} rounds × ${duration}s; medians; load average after: ${loadAfter})`,
  "| scenario | Fulcrum req/s | nginx req/s | ratio | Fulcrum mean | nginx mean | failed F/n |",
  "|---|---:|---:|---:|---:|---:|---:|",
];
for (const scenario of scenarios) {
  const f = cells.get(`${scenario} fulcrum`)!;
  const n = cells.get(`${scenario} nginx`)!;
  const fr = median(f.map((r) => r.rps));
  const nr = median(n.map((r) => r.rps));
  lines.push(
    `| ${scenario} | ${Math.round(fr)} | ${Math.round(nr)} | ${(fr / nr).toFixed(2)} | ${median(f.map((r) => r.meanMs)).toFixed(2)} ms | ${
      median(n.map((r) => r.meanMs)).toFixed(2)
    } ms | ${f.reduce((a, r) => a + r.failed, 0)}/${n.reduce((a, r) => a + r.failed, 0)} |`,
  );
}
console.log(lines.join("\n"));
await stopAll();

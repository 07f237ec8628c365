// HTTPS side by side with nginx: the same ECDSA P-256 certificates, the same TLS 1.2 cipher list,
// TLS 1.2 and 1.3 offered, both proxying to the same backends (nginx serving fixed files), access
// logs off on both. Rows (issue 19, "TLS at the edge"):
//   https-100b-c64-1cert   keep-alive, 100 B, 64 connections, one certificate
//   https-100b-c64-sni     the same with three certificates, the one served chosen by SNI (wrk's
//                          SNI is the URL's host: `localhost`, the second certificate)
//   https-handshake-c64    a new TLS connection per request (wrk -H "Connection: close"; wrk makes
//                          full handshakes, no resumption)
//   idle RSS per TLS connection: N handshaken, idle connections parked on each server
// Proxies alternate every round; the table shows medians and the ratio Fulcrum / nginx.
//
//   bun bench/tls.ts [--duration S] [--runs N] [--workers N] [--idle N] [--warmup S] [--scenarios a,b]
import { join } from "node:path";
import { startBackends } from "./lib/backends.ts";
import { caSigned } from "./lib/certs.ts";
import { runLoad, type LoadResult } from "./lib/loadgen.ts";
import { assertFree, log, sleep, stop, stopAll, treeRss, which, workDir } from "./lib/proc.ts";
import { alternatingRounds, comparisonTable, loadAverage } from "./lib/rounds.ts";
import { fulcrumConfig, nginxConfig, nginxVersion, type Server, startServer } from "./lib/vs-nginx.ts";
import { DEFAULT_CIPHERS } from "../core/tls/manager.ts";

const args = process.argv.slice(2);
const opt = (k: string, d: string) => {
  const i = args.indexOf(`--${k}`);
  return i >= 0 ? args[i + 1]! : d;
};
if (args.includes("--help")) {
  console.log(
    "usage: bun bench/tls.ts [--duration S] [--runs N] [--workers N] [--idle N] [--warmup S] [--scenarios https-100b-c64-1cert,...]",
  );
  process.exit(0);
}
const duration = Number(opt("duration", "8"));
const runs = Number(opt("runs", "3"));
const workers = Number(opt("workers", "1"));
const idle = Number(opt("idle", "2000"));
const warmup = Number(opt("warmup", "5"));
const scenarios = opt("scenarios", "https-100b-c64-1cert,https-100b-c64-sni,https-handshake-c64").split(",");
if (!which("nginx") || !which("wrk") || !which("openssl")) throw new Error("bench/tls.ts needs nginx, wrk and openssl");

const PORTS = { fulcrum1: 18441, fulcrumSni: 18442, nginx1: 18451, nginxSni: 18452, backends: 19011 };
const dir = workDir("fulcrum-bench-tls-");

caSigned(dir, ["a.test", "localhost", "c.test"]);

await assertFree(Object.values(PORTS).concat([PORTS.backends + 1, PORTS.backends + 2]));
const backends = await startBackends({ count: 3, basePort: PORTS.backends, dir: join(dir, "backends"), kind: "nginx" });

// ---- the servers -------------------------------------------------------------------------

function config(name: string, port: number, names: string[]): string {
  if (name.startsWith("fulcrum")) {
    return fulcrumConfig(
      dir,
      port,
      workers,
      `listen:\n  - address: 127.0.0.1:${port}\n    tls:\n      certificates:\n` +
        names.map((n) => `        - { cert: ${n}.pem, key: ${n}.key }\n`).join(""),
      `pools:\n  web:\n    backends: [${backends.urls.join(", ")}]\n    keepalive: { max_idle: 320 }\n`,
    );
  }
  const servers = backends.urls.map((u) => `server ${new URL(u).host};`).join(" ");
  // One server block per certificate: nginx picks the block (and its certificate) by SNI; the
  // first is the default for unknown names, as Fulcrum's first certificate is.
  const blocks = names.map((n, i) => `
  server {
    listen 127.0.0.1:${port} ssl${i === 0 ? " default_server backlog=4096" : ""};
    server_name ${n};
    ssl_certificate ${dir}/${n}.pem; ssl_certificate_key ${dir}/${n}.key;
    location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }`).join("");
  return nginxConfig(
    dir,
    port,
    workers,
    `  keepalive_timeout 60s; keepalive_requests 1000000;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_ciphers ${DEFAULT_CIPHERS}; ssl_prefer_server_ciphers on;
  ssl_session_tickets on; ssl_session_cache shared:SSL:10m;
  upstream bench { ${servers} keepalive 320; keepalive_requests 1000000; keepalive_timeout 60s; }${blocks}
`,
  );
}

function start(name: string, port: number, names: string[]): Promise<Server> {
  const ready = async () =>
    Bun.spawnSync(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", `https://127.0.0.1:${port}/100b`]).stdout.toString() === "200";
  return startServer(name, port, dir, config(name, port, names), ready);
}

const one = ["a.test"];
const three = ["a.test", "localhost", "c.test"];
const servers = [
  await start("fulcrum-1cert", PORTS.fulcrum1, one),
  await start("nginx-1cert", PORTS.nginx1, one),
  await start("fulcrum-sni", PORTS.fulcrumSni, three),
  await start("nginx-sni", PORTS.nginxSni, three),
];
const byName = (n: string) => servers.find((s) => s.name === n)!;

// ---- load --------------------------------------------------------------------------------

const spec = (scenario: string, port: number) => {
  const host = scenario === "https-100b-c64-sni" ? "localhost" : "127.0.0.1";
  return { url: `https://${host}:${port}/100b`, connections: 64, durationSec: duration };
};
const pairs: Record<string, [string, string]> = {
  "https-100b-c64-1cert": ["fulcrum-1cert", "nginx-1cert"],
  "https-100b-c64-sni": ["fulcrum-sni", "nginx-sni"],
  "https-handshake-c64": ["fulcrum-1cert", "nginx-1cert"],
};

async function load(scenario: string, server: Server, seconds: number): Promise<LoadResult> {
  const s = { ...spec(scenario, server.port), durationSec: seconds };
  if (scenario === "https-handshake-c64") return runWrkClose(s.url, seconds);
  return runLoad("wrk", s, dir);
}

/** wrk with `Connection: close`: every request on a new TLS connection. */
async function runWrkClose(url: string, seconds: number): Promise<LoadResult> {
  const p = Bun.spawn(["wrk", "-t2", "-c64", `-d${seconds}s`, "--latency", "-H", "Connection: close", url], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = await new Response(p.stdout).text();
  await p.exited;
  const { parseWrk } = await import("./lib/loadgen.ts");
  return parseWrk(out, seconds);
}

log(`warm-up: ${warmup}s per server`);
for (const s of servers) await load(s.name.endsWith("sni") ? "https-100b-c64-sni" : "https-100b-c64-1cert", s, warmup);
log(`load average before the runs: ${await loadAverage()}`);
const cells = await alternatingRounds(runs, scenarios, (scenario) => pairs[scenario]!.map(byName), async (scenario, s, round) => {
  const r = await load(scenario, s, duration);
  log(`round ${round} ${scenario} ${s.name}: ${Math.round(r.rps)} req/s p99 ${r.p99Ms}ms errors ${r.errors}`);
  return r;
});

// ---- idle RSS per TLS connection ---------------------------------------------------------

/** RSS of a server before and after `n` TLS connections (handshaken, idle) are parked on it. */
async function idleRss(server: Server, n: number): Promise<{ before: number; after: number; opened: number }> {
  await sleep(1000);
  const before = treeRss(server.proc.pid);
  const sockets: { end(): void }[] = [];
  let opened = 0;
  for (let i = 0; i < n; i += 200) {
    await Promise.all(Array.from({ length: Math.min(200, n - i) }, () =>
      new Promise<void>((resolve) => {
        Bun.connect({
          hostname: "127.0.0.1",
          port: server.port,
          tls: { rejectUnauthorized: false, serverName: "a.test" },
          socket: {
            open(s) {
              opened++;
              sockets.push(s);
              resolve();
            },
            data() {},
            connectError: () => resolve(),
            close: () => resolve(),
          },
        }).catch(() => resolve());
      })));
  }
  await sleep(1500);
  const after = treeRss(server.proc.pid);
  for (const s of sockets) s.end();
  return { before, after, opened };
}

const rss: Record<string, { before: number; after: number; opened: number }> = {};
if (idle > 0) {
  for (const name of ["fulcrum-1cert", "nginx-1cert"]) rss[name] = await idleRss(byName(name), idle);
}

for (const s of servers) await stop(s.proc);
await backends.stop();

// ---- report --------------------------------------------------------------------------------

const lines: string[] = [];
const versions = `bun ${Bun.version}, ${nginxVersion()}, wrk, ${navigator.hardwareConcurrency} cores`;
lines.push(`HTTPS bench ${new Date().toISOString()} (${versions}; workers ${workers} each; ${runs} rounds × ${duration}s; medians)`);
lines.push(
  ...comparisonTable(cells, scenarios.map((sc) => [sc, ...pairs[sc]!]), {
    unit: "req/s",
    latency: "p99",
    errors: "errors",
    rateOf: (r) => r.rps,
    latencyOf: (r) => r.p99Ms,
    latencyText: (ms) => `${ms}ms`,
    errorsOf: (r) => r.errors,
  }),
);
for (const [name, r] of Object.entries(rss)) {
  const per = (r.after - r.before) / Math.max(1, r.opened);
  lines.push(
    `idle RSS ${name}: ${(r.before / 1048576).toFixed(1)} MiB → ${
      (r.after / 1048576).toFixed(1)
    } MiB with ${r.opened} idle TLS connections: ${(per / 1024).toFixed(1)} KiB per connection`,
  );
}
console.log(lines.join("\n"));
await stopAll();

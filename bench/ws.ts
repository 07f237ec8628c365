// WebSocket side by side with nginx: both tunnel to the same echo backend (Bun's native WebSocket
// server, bench/lib/ws-echo.ts); the load is bench/lib/ws-load.ts (Bun's native WebSocket client),
// each in a process of its own. Rows (issue 20, "HTTP/2 and WebSocket"):
//   ws-echo-1k-c200   200 tunnels, each sending a 1 KiB message and waiting for its echo, as fast
//                     as they can: messages echoed per second, round-trip p50/p99
//   idle RSS per tunnel: N tunnels opened through each proxy and left idle (process tree RSS
//                     before and after, divided by N)
// Proxies alternate every round; the table shows medians and the ratio Fulcrum / nginx.
//
//   bun bench/ws.ts [--duration S] [--runs N] [--workers N] [--idle N] [--warmup S]
import { join } from "node:path";
import { assertFree, log, portOpen, sleep, spawn, stop, stopAll, treeRss, waitFor, which, workDir } from "./lib/proc.ts";
import { alternatingRounds, comparisonTable, loadAverage } from "./lib/rounds.ts";
import { fulcrumConfig, nginxConfig, nginxVersion, type Server, startServer } from "./lib/vs-nginx.ts";

const args = process.argv.slice(2);
const opt = (k: string, d: string) => {
  const i = args.indexOf(`--${k}`);
  return i >= 0 ? args[i + 1]! : d;
};
if (args.includes("--help")) {
  console.log("usage: bun bench/ws.ts [--duration S] [--runs N] [--workers N] [--idle N] [--warmup S]");
  process.exit(0);
}
const duration = Number(opt("duration", "8"));
const runs = Number(opt("runs", "3"));
const workers = Number(opt("workers", "1"));
const idle = Number(opt("idle", "2000"));
const warmup = Number(opt("warmup", "3"));
if (!which("nginx")) throw new Error("bench/ws.ts needs nginx");

const PORTS = { fulcrum: 18481, nginx: 18491, backend: 19031 };
const dir = workDir("fulcrum-bench-ws-");
await assertFree(Object.values(PORTS));
const here = import.meta.dir;
const backend = spawn("ws-echo", [process.execPath, join(here, "lib/ws-echo.ts"), String(PORTS.backend)], {
  stderr: join(dir, "echo.stderr"),
  raiseNofile: true,
});
if (!(await waitFor(async () => (await portOpen(PORTS.backend)) || undefined, 10_000, 20)))
  throw new Error("the echo backend did not start");
const backendUrl = `http://127.0.0.1:${PORTS.backend}`;

function config(name: string, port: number): string {
  if (name === "fulcrum")
    return fulcrumConfig(dir, port, workers, `listen: 127.0.0.1:${port}\n`, `pools:\n  web:\n    backends: [${backendUrl}]\n`);
  return nginxConfig(
    dir,
    port,
    workers,
    `  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      proxy_pass ${backendUrl};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
    }
  }
`,
  );
}

function start(name: string, port: number): Promise<Server> {
  const ready = () => fetch(`http://127.0.0.1:${port}/`).then((r) => r.ok, () => false);
  return startServer(name, port, dir, config(name, port), ready);
}

/** bench/lib/ws-load.ts with its fd limit raised to the hard one. */
function wsLoad(args: string[], stdin?: "pipe") {
  const cmd = [
    "sh",
    "-c",
    'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"',
    "sh",
    process.execPath,
    join(here, "lib/ws-load.ts"),
    ...args,
  ];
  return Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin });
}

interface Result {
  open: number;
  messagesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

async function load(server: Server, seconds: number): Promise<Result> {
  const p = wsLoad([`ws://127.0.0.1:${server.port}/echo`, "200", String(seconds), "1024"]);
  const out = await new Response(p.stdout).text();
  await p.exited;
  try {
    return JSON.parse(out.trim().split("\n").pop()!) as Result;
  } catch {
    throw new Error(`ws-load failed: ${out}\n${await new Response(p.stderr).text()}`);
  }
}

/** RSS of a proxy (its process tree) before and after `n` tunnels are opened through it and left idle. */
async function idleRss(server: Server, n: number): Promise<{ before: number; after: number; opened: number }> {
  await sleep(1000);
  const before = treeRss(server.proc.pid);
  const p = wsLoad([`ws://127.0.0.1:${server.port}/idle`, String(n), "idle"], "pipe");
  const reader = (p.stdout as ReadableStream<Uint8Array>).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const r = await reader.read();
    if (r.done) break;
    text += new TextDecoder().decode(r.value);
  }
  const opened = (JSON.parse(text.trim()) as { open: number }).open;
  await sleep(1500);
  const after = treeRss(server.proc.pid);
  (p.stdin as { end(): void }).end();
  await p.exited;
  return { before, after, opened };
}

const servers = [await start("fulcrum", PORTS.fulcrum), await start("nginx", PORTS.nginx)];
log(`warm-up: ${warmup}s per server`);
for (const s of servers) await load(s, warmup);
log(`load average before the runs: ${await loadAverage()}`);
const SCENARIO = "ws-echo-1k-c200";
const cells = await alternatingRounds(runs, [SCENARIO], () => servers, async (_, s, round) => {
  const r = await load(s, duration);
  log(
    `round ${round} ${s.name}: ${r.messagesPerSec} messages/s, rtt p50 ${r.p50Ms} ms p99 ${r.p99Ms} ms, ${r.open} open, errors ${r.errors}`,
  );
  return r;
});
const loadAfter = await loadAverage();
const rss: Record<string, { before: number; after: number; opened: number }> = {};
if (idle > 0) { for (const s of servers) rss[s.name] = await idleRss(s, idle); }
for (const s of servers) await stop(s.proc);
await stop(backend);

const versions = `bun ${Bun.version}, ${nginxVersion()}, ${navigator.hardwareConcurrency} cores`;
const lines = [
  `WebSocket bench ${
    new Date().toISOString()
  } (${versions}; workers ${workers} each; ${runs} rounds × ${duration}s; medians; load average after: ${loadAfter})`,
  ...comparisonTable(cells, [[SCENARIO, "fulcrum", "nginx"]], {
    unit: "msg/s",
    latency: "p99",
    errors: "errors",
    rateOf: (r) => r.messagesPerSec,
    latencyOf: (r) => r.p99Ms,
    latencyText: (ms) => `${ms} ms`,
    errorsOf: (r) => r.errors,
  }),
];
const per: Record<string, number> = {};
for (const [name, r] of Object.entries(rss)) {
  per[name] = (r.after - r.before) / Math.max(1, r.opened);
  lines.push(
    `idle RSS ${name}: ${(r.before / 1048576).toFixed(1)} MiB → ${(r.after / 1048576).toFixed(1)} MiB with ${r.opened} idle tunnels: ${
      (per[name]! / 1024).toFixed(1)
    } KiB per tunnel`,
  );
}
if (per.fulcrum !== undefined && per.nginx !== undefined)
  lines.push(`idle RSS per tunnel, Fulcrum / nginx: ${(per.fulcrum / per.nginx).toFixed(2)}`);
console.log(lines.join("\n"));
await stopAll();

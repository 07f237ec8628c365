// The cost per request of each built-in transform: one Fulcrum process (workers: 1) with one route
// per variant, each ending at the backend's /100b, loaded in turn; besides req/s we read the
// process's CPU time (utime + stime) per request served, which holds better than req/s when other
// work shares the cores (as in bench/obs-cost.ts). Each variant is read against the route that
// differs from it only by the middleware measured, in the same round:
//
//   none          GET /100b, no middleware                               (baseline)
//   strip-prefix  GET /sp/100b, strip-prefix /sp                          vs none
//   rewrite       GET /rw/100b, rewrite ^/rw/(.*) → /$1                    vs none
//   headers       GET /hd/100b, strip-prefix + headers (request set with ${client_ip}, response set + remove)  vs strip-prefix
//   request-id    GET /ri/100b, strip-prefix + request-id (a new UUIDv7 each)                  vs strip-prefix
//   respond       GET /rs, respond 200 "ok" (no backend)                   vs none
//   redirect      GET /rd, redirect 301 (no backend)                       vs none
//   hono-headers  GET /hh/100b, strip-prefix + plugins/response-headers.ts (a function middleware:
//                 the Hono chain, web Request/Response) doing what `headers` does for the response  vs headers-resp
//   headers-resp  GET /hr/100b, strip-prefix + headers (response set + remove only)            vs strip-prefix
//   compress      GET /cp/100b, strip-prefix + compress (defaults; 100 B is under min_size and
//                 the load tool sends no Accept-Encoding: what the middleware costs when it
//                 leaves a response alone; compressing itself is bench/compress.ts)  vs strip-prefix
//   rate-limit    GET /rl/100b, strip-prefix + rate-limit (1000000/s: never denies)           vs strip-prefix
//
//   bun bench/middleware-cost.ts [--runs 3] [--duration 3] [--warmup 3] [--connections 64]
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import YAML from "yaml";
import { startBackends } from "./lib/backends.ts";
import { pickTool, runLoad } from "./lib/loadgen.ts";
import { cpuSeconds, log, stopAll, workDir } from "./lib/proc.ts";
import { repoRoot, startProxy, type ProxyDef } from "./lib/proxies.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const runs = arg("--runs", 3);
const duration = arg("--duration", 3);
const warmup = arg("--warmup", 3);
const connections = arg("--connections", 64);
const PORT = 18380;

const strip = (p: string) => ({ "strip-prefix": p });
const VARIANTS: { name: string; path: string; base: string; route: Record<string, unknown> }[] = [
  { name: "none", path: "/100b", base: "none", route: { match: { path: "/" } } },
  { name: "strip-prefix", path: "/sp/100b", base: "none", route: { match: { path: "/sp" }, middleware: [strip("/sp")] } },
  {
    name: "rewrite",
    path: "/rw/100b",
    base: "none",
    route: { match: { path: "/rw" }, middleware: [{ rewrite: { regex: "^/rw/(.*)", replace: "/$1" } }] },
  },
  {
    name: "headers",
    path: "/hd/100b",
    base: "strip-prefix",
    route: {
      match: { path: "/hd" },
      middleware: [strip("/hd"), {
        headers: {
          request: { set: { "x-real-ip": "${client_ip}" } },
          response: { set: { "x-frame-options": "DENY" }, remove: ["server"] },
        },
      }],
    },
  },
  {
    name: "request-id",
    path: "/ri/100b",
    base: "strip-prefix",
    route: { match: { path: "/ri" }, middleware: [strip("/ri"), { "request-id": {} }] },
  },
  { name: "respond", path: "/rs", base: "none", route: { match: { path: "/rs" }, middleware: [{ respond: { body: "ok\n" } }] } },
  {
    name: "redirect",
    path: "/rd",
    base: "none",
    route: { match: { path: "/rd" }, middleware: [{ redirect: { to: "https://example.com${path}", status: 301 } }] },
  },
  {
    name: "headers-resp",
    path: "/hr/100b",
    base: "strip-prefix",
    route: {
      match: { path: "/hr" },
      middleware: [strip("/hr"), { headers: { response: { set: { "x-frame-options": "DENY" }, remove: ["server"] } } }],
    },
  },
  {
    name: "hono-headers",
    path: "/hh/100b",
    base: "headers-resp",
    route: {
      match: { path: "/hh" },
      middleware: [strip("/hh"), { plugin: "./response-headers.ts", options: { set: { "x-frame-options": "DENY" }, remove: ["server"] } }],
    },
  },
  {
    name: "compress",
    path: "/cp/100b",
    base: "strip-prefix",
    route: { match: { path: "/cp" }, middleware: [strip("/cp"), { compress: {} }] },
  },
  {
    name: "rate-limit",
    path: "/rl/100b",
    base: "strip-prefix",
    route: { match: { path: "/rl" }, middleware: [strip("/rl"), { "rate-limit": { rate: "1000000/s" } }] },
  },
];

const dir = workDir("fulcrum-mw-cost-");
const tool = pickTool();
const backends = await startBackends({ count: 3, basePort: 19301, dir: join(dir, "backends") });
const results = new Map<string, { rps: number; cpuUs: number }[]>(VARIANTS.map((v) => [v.name, []]));
const def: ProxyDef = {
  name: "fulcrum-mw",
  port: PORT,
  unavailable: () => undefined,
  prepare({ dir, backendUrls }) {
    const accessLog = join(dir, "access.log");
    copyFileSync(join(repoRoot(), "plugins", "response-headers.ts"), join(dir, "response-headers.ts"));
    const config = {
      listen: `127.0.0.1:${PORT}`,
      workers: 1,
      admin: { listen: `127.0.0.1:${PORT + 1000}` },
      pools: { bench: { strategy: "round-robin", backends: backendUrls.map((url) => ({ url })) } },
      routes: VARIANTS.map((v) => ({ ...v.route, pool: "bench" })),
      log: { level: "warning", access_log: true, access_log_file: accessLog },
    };
    const file = join(dir, "fulcrum.yaml");
    writeFileSync(file, YAML.stringify(config));
    return { cmd: [process.execPath, "main.ts", "run", "--config", file], cwd: repoRoot(), stderr: join(dir, "stderr"), accessLog };
  },
};

try {
  const r = await startProxy(def, { dir, backendUrls: backends.urls });
  for (const v of VARIANTS)
    await runLoad(tool, { url: `http://127.0.0.1:${PORT}${v.path}`, connections, durationSec: Math.max(1, Math.round(warmup / 3)) }, dir);
  for (let round = 0; round < runs; round++) {
    const order = VARIANTS.map((_, i) => VARIANTS[(i + round) % VARIANTS.length]!);
    for (const v of order) {
      const url = `http://127.0.0.1:${PORT}${v.path}`;
      await runLoad(tool, { url, connections, durationSec: 1 }, dir);
      const cpu0 = cpuSeconds(r.proc.pid);
      const res = await runLoad(tool, { url, connections, durationSec: duration }, dir);
      const cpuUs = ((cpuSeconds(r.proc.pid) - cpu0) * 1e6) / res.requests;
      results.get(v.name)!.push({ rps: res.rps, cpuUs });
      log(`round ${round + 1} ${v.name}: ${Math.round(res.rps)} req/s, ${cpuUs.toFixed(1)} µs CPU/request, errors ${res.errors}`);
    }
  }
} finally {
  await stopAll();
  await backends.stop();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
console.log(`\n${tool}, ${connections} connections, one Fulcrum process, ${runs} rounds × ${duration} s, median of rounds`);
console.log("variant          req/s   CPU µs/req   against         per-round: CPU µs/req   req/s ratio");
for (const v of VARIANTS) {
  const rs = results.get(v.name)!;
  const base = results.get(v.base)!;
  const cpu = median(rs.map((r) => r.cpuUs));
  const delta = median(rs.map((r, i) => r.cpuUs - base[i]!.cpuUs));
  const ratio = median(rs.map((r, i) => r.rps / base[i]!.rps));
  const against = v.name === v.base ? "-" : v.base;
  const vs = v.name === v.base ? "" : `${delta >= 0 ? "+" : ""}${delta.toFixed(1).padStart(5)} µs        ${ratio.toFixed(2)}`;
  console.log(
    `${v.name.padEnd(14)} ${String(Math.round(median(rs.map((r) => r.rps)))).padStart(7)} ${cpu.toFixed(1).padStart(12)}   ${
      against.padEnd(15)
    } ${vs}`,
  );
}

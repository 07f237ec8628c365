// Response compression side by side with nginx's gzip module, and what the compress middleware
// costs a request. One Fulcrum and one nginx (1 process each), both proxying to the same backend
// (nginx serving fixed text files, gzip off); wrk sends `Accept-Encoding` and reads the encoded
// bodies. Rows:
//   gzip-1 1m / gzip-6 1m   a 1 MiB text body (this repository's TypeScript sources) compressed at
//                           level 1 (nginx's default) and 6 (Fulcrum's): uncompressed MB/s through
//                           the proxy, and the proxy's CPU ms per uncompressed MB (user + system,
//                           /proc), both servers at the same level
//   gzip-6 16k              the same with 16 KiB bodies (a response's fixed costs weigh more)
//   br-4 1m / zstd-3 1m     Fulcrum only (nginx has no brotli or zstd module in Debian's package)
//   compress-cost 100b      a route with `compress` against the same route without: 100 B bodies
//                           (under min_size: not compressed), so the row is the middleware's own cost
//   compress-cost 16k       the same with 16 KiB bodies, compressed at gzip 6
// Proxies alternate every round; the table shows medians of the rounds.
//
//   bun bench/compress.ts [--duration S] [--runs N] [--warmup S] [--save]
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertFree, cpuSeconds, log, portOpen, spawn, stopAll, waitFor, which, workDir } from "./lib/proc.ts";
import { loadAverage, median } from "./lib/rounds.ts";
import { parseWrk } from "./lib/loadgen.ts";
import { nginxConfig, nginxVersion, type Server, startServer } from "./lib/vs-nginx.ts";
import { repoRoot } from "./lib/proxies.ts";

const args = process.argv.slice(2);
const opt = (k: string, d: string) => {
  const i = args.indexOf(`--${k}`);
  return i >= 0 ? args[i + 1]! : d;
};
if (args.includes("--help")) {
  console.log("usage: bun bench/compress.ts [--duration S] [--runs N] [--warmup S] [--save]");
  process.exit(0);
}
const duration = Number(opt("duration", "5"));
const runs = Number(opt("runs", "3"));
const warmup = Number(opt("warmup", "3"));
if (!which("nginx") || !which("wrk")) throw new Error("bench/compress.ts needs nginx and wrk");

const PORTS = { fulcrum: 18581, nginx: 18591, backend: 19051 };
const dir = workDir("fulcrum-bench-compress-");
await assertFree(Object.values(PORTS));

// ---- the bodies: real text, this repository's sources (1 MiB without repeating itself) -----
const www = join(dir, "www");
mkdirSync(www);
const sources: string[] = [];
let size = 0;
const collect = (folder: string) => {
  for (const e of readdirSync(join(repoRoot(), folder), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (size > 1 << 20) return;
    const path = join(folder, e.name);
    if (e.isDirectory()) collect(path);
    else if (e.name.endsWith(".ts")) {
      const t = readFileSync(join(repoRoot(), path), "utf8");
      sources.push(t);
      size += t.length;
    }
  }
};
for (const folder of ["core", "strategies", "plugins", "tests", "bench"]) collect(folder);
const text = sources.join("\n");
if (text.length < 1 << 20) throw new Error(`only ${text.length} bytes of sources`);
const all = Buffer.from(text);
const BODIES: Record<string, Buffer> = { "1m": all.subarray(0, 1 << 20), "16k": all.subarray(0, 16 << 10), "100b": all.subarray(0, 100) };
for (const [name, body] of Object.entries(BODIES)) writeFileSync(join(www, `${name}.txt`), body);

// ---- backend: nginx serving the files at any prefix (/l1/1m → 1m.txt) ---------------------
const backendConf = nginxConfig(
  dir,
  PORTS.backend,
  1,
  `  default_type text/plain;
  server {
    listen 127.0.0.1:${PORTS.backend} backlog=4096;
    gzip off;
    location ~ ^/[a-z0-9-]+/(1m|16k|100b)$ { alias ${www}/$1.txt; }
  }
`,
);
const backend = spawn("backend", [which("nginx")!, "-c", backendConf, "-e", join(dir, "backend-error.log")], {});
if (!(await waitFor(async () => (await portOpen(PORTS.backend)) || undefined, 10_000, 20))) throw new Error("the backend did not start");
const upstream = `http://127.0.0.1:${PORTS.backend}`;

// ---- Fulcrum: a route per setting; nginx: a location per level -----------------------------
const route = (prefix: string, compress?: string) =>
  `  - match: { path: /${prefix} }\n    pool: web\n${compress ? `    middleware: [ { compress: ${compress} } ]\n` : ""}`;
const fulcrumFile = join(dir, "fulcrum.yaml");
writeFileSync(
  fulcrumFile,
  `listen: 127.0.0.1:${PORTS.fulcrum}\nworkers: 1\nadmin: false\nlog: { level: warning, access_log: false }\n` +
    `pools:\n  web:\n    backends: [${upstream}]\nroutes:\n` +
    route("plain") +
    route("l1", "{ encodings: [gzip], level: { gzip: 1 } }") +
    route("l6", "{ encodings: [gzip], level: { gzip: 6 } }") +
    route("br", "{ encodings: [br], level: { br: 4 } }") +
    route("zstd", "{ encodings: [zstd], level: { zstd: 3 } }"),
);
const location = (prefix: string, level: number) =>
  `    location /${prefix}/ { proxy_pass ${upstream}; proxy_http_version 1.1; proxy_set_header Connection ""; ` +
  `gzip on; gzip_comp_level ${level}; gzip_types text/plain; gzip_proxied any; gzip_min_length 1024; }\n`;
const nginxFile = nginxConfig(
  dir,
  PORTS.nginx,
  1,
  `  upstream web { server 127.0.0.1:${PORTS.backend}; keepalive 64; }
  server {
    listen 127.0.0.1:${PORTS.nginx} backlog=4096;
${location("l1", 1)}${location("l6", 6)}  }
`,
);
const ready = (port: number, path: string) => () => fetch(`http://127.0.0.1:${port}${path}`).then((r) => r.ok, () => false);
const fulcrum: Server = await startServer("fulcrum", PORTS.fulcrum, dir, fulcrumFile, ready(PORTS.fulcrum, "/plain/100b"));
const nginx: Server = await startServer("nginx", PORTS.nginx, dir, nginxFile, ready(PORTS.nginx, "/l1/100b"));

// Check the encodings before measuring anything: a misconfigured row must not report numbers.
for (
  const [server, path, encoding] of [
    [fulcrum, "/l1/1m", "gzip"],
    [fulcrum, "/br/1m", "br"],
    [fulcrum, "/zstd/1m", "zstd"],
    [fulcrum, "/l6/100b", null],
    [nginx, "/l6/1m", "gzip"],
  ] as const
) {
  const r = await fetch(
    `http://127.0.0.1:${server.port}${path}`,
    { headers: { "accept-encoding": encoding ?? "gzip" }, decompress: false } as RequestInit,
  );
  await r.arrayBuffer();
  if (r.headers.get("content-encoding") !== encoding)
    throw new Error(`${server.name} ${path}: content-encoding ${r.headers.get("content-encoding")}, expected ${encoding}`);
}

/** The encoded size of one response, read whole: the compression ratio of a row (body bytes, not heads). */
async function encodedRatio(server: Server, path: string, encoding: string): Promise<number> {
  const r = await fetch(
    `http://127.0.0.1:${server.port}${path}`,
    { headers: { "accept-encoding": encoding }, decompress: false } as RequestInit,
  );
  return BODIES[path.split("/")[2]!]!.length / (await r.arrayBuffer()).byteLength;
}

interface Sample {
  rps: number;
  mbPerSec: number;
  cpuMsPerMb: number;
  cpuUsPerRequest: number;
  errors: number;
}

async function wrk(port: number, path: string, connections: number, seconds: number, acceptEncoding: string, pid: number): Promise<Sample> {
  const cpu0 = cpuSeconds(pid);
  const p = Bun.spawn(
    [
      "wrk",
      "-t2",
      `-c${connections}`,
      `-d${seconds}s`,
      "--timeout",
      "10s",
      "--latency",
      "-H",
      `Accept-Encoding: ${acceptEncoding}`,
      `http://127.0.0.1:${port}${path}`,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const out = await new Response(p.stdout).text();
  await p.exited;
  const cpu = cpuSeconds(pid) - cpu0;
  const r = parseWrk(out, seconds);
  const size = BODIES[path.split("/")[2]!]!.length;
  const mb = (r.requests * size) / 2 ** 20;
  return {
    rps: r.rps,
    mbPerSec: (r.rps * size) / 2 ** 20,
    cpuMsPerMb: (cpu * 1000) / mb,
    cpuUsPerRequest: (cpu * 1e6) / r.requests,
    errors: r.errors,
  };
}

interface Row {
  name: string;
  connections: number;
  encoding: string;
  runs: { label: string; server: Server; path: string }[];
}
const ROWS: Row[] = [
  {
    name: "gzip-1 1m",
    connections: 8,
    encoding: "gzip",
    runs: [{ label: "fulcrum", server: fulcrum, path: "/l1/1m" }, { label: "nginx", server: nginx, path: "/l1/1m" }],
  },
  {
    name: "gzip-6 1m",
    connections: 8,
    encoding: "gzip",
    runs: [{ label: "fulcrum", server: fulcrum, path: "/l6/1m" }, { label: "nginx", server: nginx, path: "/l6/1m" }],
  },
  {
    name: "gzip-6 16k",
    connections: 32,
    encoding: "gzip",
    runs: [{ label: "fulcrum", server: fulcrum, path: "/l6/16k" }, { label: "nginx", server: nginx, path: "/l6/16k" }],
  },
  { name: "br-4 1m", connections: 8, encoding: "br", runs: [{ label: "fulcrum", server: fulcrum, path: "/br/1m" }] },
  { name: "zstd-3 1m", connections: 8, encoding: "zstd", runs: [{ label: "fulcrum", server: fulcrum, path: "/zstd/1m" }] },
  {
    name: "compress-cost 100b",
    connections: 64,
    encoding: "gzip",
    runs: [{ label: "with compress", server: fulcrum, path: "/l6/100b" }, { label: "without", server: fulcrum, path: "/plain/100b" }],
  },
  {
    name: "compress-cost 16k",
    connections: 32,
    encoding: "gzip",
    runs: [{ label: "with compress", server: fulcrum, path: "/l6/16k" }, { label: "without", server: fulcrum, path: "/plain/16k" }],
  },
];

log(`warm-up ${warmup}s per path`);
for (const row of ROWS)
  for (const r of row.runs) await wrk(r.server.port, r.path, row.connections, warmup, row.encoding, r.server.proc.pid);

const cells = new Map<string, Sample[]>();
for (let round = 0; round < runs; round++) {
  for (const row of ROWS) {
    const order = round % 2 === 0 ? row.runs : [...row.runs].reverse();
    for (const r of order) {
      const s = await wrk(r.server.port, r.path, row.connections, duration, row.encoding, r.server.proc.pid);
      log(
        `round ${round + 1} ${row.name} ${r.label}: ${s.rps.toFixed(0)} req/s, ${s.mbPerSec.toFixed(1)} MB/s, ${
          s.cpuMsPerMb.toFixed(1)
        } CPU ms/MB`,
      );
      const key = `${row.name} ${r.label}`;
      cells.set(key, [...(cells.get(key) ?? []), s]);
      await Bun.sleep(300);
    }
  }
}

const med = (key: string, f: (s: Sample) => number) => median(cells.get(key)!.map(f));
const fmt = (n: number, d = 1) => n.toFixed(d);
const lines = [
  `# bench/compress.ts ${new Date().toISOString()}`,
  `# ${nginxVersion()}; Bun ${Bun.version}; ${navigator.hardwareConcurrency} cores; load ${await loadAverage()}`,
  `# ${runs} rounds × ${duration}s, medians; 1 process each; wrk -t2; MB = MiB of uncompressed body; CPU = the proxy process (user + system)`,
  "",
  "| row | Fulcrum MB/s | nginx MB/s | ratio | Fulcrum CPU ms/MB | nginx CPU ms/MB | ratio | compression F / n | errors |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
];
for (const row of ROWS.slice(0, 5)) {
  const f = `${row.name} fulcrum`;
  const n = row.runs.length > 1 ? `${row.name} nginx` : undefined;
  const fm = med(f, (s) => s.mbPerSec);
  const fc = med(f, (s) => s.cpuMsPerMb);
  const nm = n ? med(n, (s) => s.mbPerSec) : NaN;
  const nc = n ? med(n, (s) => s.cpuMsPerMb) : NaN;
  const errors = row.runs.map((r) => cells.get(`${row.name} ${r.label}`)!.reduce((a, s) => a + s.errors, 0)).join("/");
  const ratios = await Promise.all(row.runs.map((r) => encodedRatio(r.server, r.path, row.encoding)));
  lines.push(
    `| ${row.name} | ${fmt(fm)} | ${n ? fmt(nm) : "—"} | ${n ? fmt(fm / nm, 2) : "—"} | ${fmt(fc)} | ${n ? fmt(nc) : "—"} | ${
      n ? fmt(fc / nc, 2) : "—"
    } | ` +
      `${ratios.map((x) => `${fmt(x, 2)} : 1`).join(" / ")} | ${errors} |`,
  );
}
lines.push(
  "",
  "| row | with compress req/s | without req/s | ratio | with CPU µs/req | without CPU µs/req | difference µs/req |",
  "|---|---:|---:|---:|---:|---:|---:|",
);
for (const row of ROWS.slice(5)) {
  const w = `${row.name} with compress`;
  const o = `${row.name} without`;
  const wr = med(w, (s) => s.rps);
  const or = med(o, (s) => s.rps);
  const wc = med(w, (s) => s.cpuUsPerRequest);
  const oc = med(o, (s) => s.cpuUsPerRequest);
  lines.push(`| ${row.name} | ${fmt(wr, 0)} | ${fmt(or, 0)} | ${fmt(wr / or, 2)} | ${fmt(wc)} | ${fmt(oc)} | ${fmt(wc - oc)} |`);
}
const report = lines.join("\n");
console.log(report);
if (args.includes("--save")) {
  const file = join(repoRoot(), "bench", "results", `compress-${new Date().toISOString().slice(0, 16).replace(":", "")}.txt`);
  writeFileSync(file, `${report}\n`);
  log(`saved ${file}`);
}
await stopAll();
void backend;

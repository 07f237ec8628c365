// The proxies under test. Each is one entry in PROXIES; Fulcrum variants are data (a config
// overlay), so a new feature to measure (workers, tracing, plugin strategy) is one line.
// Peer configs are written by the harness, equivalent to Fulcrum's: round-robin over the same
// three backends, keep-alive on both sides, access log written to a file.
import { copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import YAML from "yaml";
import { assertFree, hardNofile, spawn, stop, waitFor, which } from "./proc.ts";

/** Where `main.ts` is run from: this checkout, or FULCRUM_ROOT / --fulcrum-root (e.g. another branch). */
export const repoRoot = () => process.env.FULCRUM_ROOT ?? join(import.meta.dir, "..", "..");
/** Added to every port (BENCH_PORT_OFFSET): two benchmarks can run at once. */
export const portOffset = Number(process.env.BENCH_PORT_OFFSET ?? 0);
export const OTLP_PORT = 19400 + portOffset;
const cores = navigator.hardwareConcurrency;
/** BENCH_PEER_WORKERS=1 runs nginx and HAProxy single-process/thread, like for like with one Fulcrum process. */
const peerWorkers = process.env.BENCH_PEER_WORKERS ? Number(process.env.BENCH_PEER_WORKERS) : undefined;

export interface Ctx {
  dir: string;
  backendUrls: string[];
}
export interface Launch {
  cmd: string[];
  cwd?: string;
  stdout?: string;
  stderr: string;
  accessLog: string;
}

export interface ProxyDef {
  name: string;
  port: number;
  /** undefined when it can run here, else why it is skipped. */
  unavailable(): string | undefined;
  /** Writes its config into ctx.dir and says how to start it. */
  prepare(ctx: Ctx): Launch;
  /** Only run when asked for with --variants (each costs a full set of runs). */
  optional?: boolean;
  /** Needs the local OTLP receiver. */
  otlp?: boolean;
}

// ---- nginx -------------------------------------------------------------------------------

const nginx: ProxyDef = {
  name: "nginx",
  port: 18081 + portOffset,
  unavailable: () => (which("nginx") ? undefined : "nginx not installed (apt-get install nginx)"),
  prepare({ dir, backendUrls }) {
    const accessLog = join(dir, "nginx-access.log");
    const servers = backendUrls.map((u) => `server ${new URL(u).host};`).join(" ");
    // Access log unbuffered (nginx's default): one write per request, like HAProxy's stdout log.
    writeFileSync(
      join(dir, "nginx-proxy.conf"),
      `
daemon off;
worker_processes ${peerWorkers ?? "auto"};
${process.getuid?.() === 0 ? "user root;" : ""}
pid ${dir}/nginx-proxy.pid;
error_log ${dir}/nginx-proxy-error.log warn;
worker_rlimit_nofile ${hardNofile()};
events { worker_connections ${Math.min(20000, hardNofile() - 100)}; }
http {
  access_log ${accessLog} combined;
  keepalive_timeout 60s; keepalive_requests 1000000;
  client_body_temp_path ${dir}/nbt; proxy_temp_path ${dir}/npt; fastcgi_temp_path ${dir}/nft;
  uwsgi_temp_path ${dir}/nut; scgi_temp_path ${dir}/nst;
  upstream bench { ${servers} keepalive 320; keepalive_requests 1000000; keepalive_timeout 60s; }
  server {
    listen 127.0.0.1:${this.port} backlog=4096;
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
    );
    return {
      cmd: [which("nginx")!, "-c", join(dir, "nginx-proxy.conf"), "-e", `${dir}/nginx-proxy-error.log`],
      stderr: join(dir, "nginx-proxy.stderr"),
      accessLog,
    };
  },
};

// ---- HAProxy -----------------------------------------------------------------------------

const haproxy: ProxyDef = {
  name: "haproxy",
  port: 18082 + portOffset,
  unavailable: () => (which("haproxy") ? undefined : "haproxy not installed (apt-get install haproxy)"),
  prepare({ dir, backendUrls }) {
    const accessLog = join(dir, "haproxy-access.log");
    const servers = backendUrls.map((u, i) => `  server b${i + 1} ${new URL(u).host}`).join("\n");
    // HAProxy wants ~2 fds per maxconn and by default refuses to start when it cannot raise the
    // rlimit that far; `no strict-limits` makes that a warning. Idle clients take one fd each,
    // so a maxconn near the hard rlimit still admits 10,000 idle connections.
    const maxconn = Math.min(40000, hardNofile() - 500);
    // `log stdout` + stdout redirected to a file = access log in a file without a syslog daemon.
    writeFileSync(
      join(dir, "haproxy.cfg"),
      `
global
  nbthread ${peerWorkers ?? cores}
  no strict-limits
  maxconn ${maxconn}
  log stdout format raw local0
defaults
  mode http
  log global
  option httplog
  maxconn ${maxconn}
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:${this.port}
  default_backend bench
backend bench
  balance roundrobin
${servers}
`,
    );
    return {
      cmd: [which("haproxy")!, "-db", "-f", join(dir, "haproxy.cfg")],
      stdout: accessLog,
      stderr: join(dir, "haproxy.stderr"),
      accessLog,
    };
  },
};

// ---- Fulcrum -----------------------------------------------------------------------------

/** Added to every Fulcrum config: one worker per core, like nginx's `worker_processes auto` (the target). */
const FULCRUM_BASE: Record<string, unknown> = { workers: peerWorkers ?? "auto" };

// The default export encoding (http/protobuf), as an operator gets it.
const otlp = { endpoint: `http://127.0.0.1:${OTLP_PORT}/v1/traces` };

/** name → config overlay. `optional` variants run only with --variants NAME (or all). */
export const FULCRUM_VARIANTS: { name: string; overlay: Record<string, unknown>; optional?: boolean; otlp?: boolean }[] = [
  { name: "fulcrum", overlay: {} },
  { name: "fulcrum-1w", overlay: { workers: 1 }, optional: true },
  { name: "fulcrum-trace-0.01", overlay: { telemetry: { traces: { ...otlp, sample_ratio: 0.01 } } }, optional: true, otlp: true },
  { name: "fulcrum-trace-1.0", overlay: { telemetry: { traces: { ...otlp, sample_ratio: 1.0 } } }, optional: true, otlp: true },
  // The other encoding, http/json (the SDK's serializer and batch processor).
  {
    name: "fulcrum-trace-1.0-json",
    overlay: { telemetry: { traces: { ...otlp, protocol: "http/json", sample_ratio: 1.0 } } },
    optional: true,
    otlp: true,
  },
  { name: "fulcrum-nolog", overlay: { log: { access_log: false } }, optional: true },
  { name: "fulcrum-noadmin", overlay: { admin: false }, optional: true }, // no metrics, no admin listener: nothing observes requests
  { name: "fulcrum-plugin-rr", overlay: { pools: { bench: { strategy: { plugin: "./rr-plugin.ts" } } } }, optional: true },
  // One process, nothing but proxying (no access log, metrics or admin): bench/cpu-ladder.ts.
  { name: "fulcrum-bare", overlay: { workers: 1, admin: false, log: { access_log: false } }, optional: true },
  // Tracing on with nothing sampled: every request pays for ids and traceparent, none for spans.
  { name: "fulcrum-trace-0", overlay: { telemetry: { traces: { ...otlp, sample_ratio: 0 } } }, optional: true, otlp: true },
];

// deno-lint-ignore no-explicit-any
function merge(a: any, b: any): any {
  if (typeof a !== "object" || typeof b !== "object" || !a || !b || Array.isArray(a) || Array.isArray(b)) return b;
  const out = { ...a };
  for (const k of Object.keys(b)) out[k] = k in a ? merge(a[k], b[k]) : b[k];
  return out;
}

function fulcrum(v: (typeof FULCRUM_VARIANTS)[number], port: number, root = repoRoot, name = v.name): ProxyDef {
  return {
    name,
    port,
    optional: v.optional,
    otlp: v.otlp,
    unavailable: () => (existsSync(join(root(), "main.ts")) ? undefined : `main.ts not found in ${root()} (the core is not merged yet)`),
    prepare({ dir, backendUrls }) {
      const accessLog = join(dir, `${name.replace(/\W/g, "_")}-access.log`);
      const base = {
        listen: `127.0.0.1:${port}`,
        // An admin port per variant: obs-cost --resident runs them all at once.
        admin: { listen: `127.0.0.1:${port + 1000}` },
        pools: { bench: { strategy: "round-robin", backends: backendUrls.map((url) => ({ url })) } },
        routes: [{ match: { path: "/" }, pool: "bench" }],
        log: { level: "warning", access_log: true, access_log_file: accessLog },
      };
      const cfgPath = join(dir, `${name.replace(/\W/g, "_")}.yaml`);
      // Plugin paths are written relative (the documented form) and resolve against the config's folder.
      copyFileSync(join(import.meta.dir, "..", "plugins", "rr-plugin.ts"), join(dir, "rr-plugin.ts"));
      writeFileSync(cfgPath, YAML.stringify(merge(merge(base, FULCRUM_BASE), v.overlay)));
      return {
        cmd: [process.execPath, "main.ts", "run", "--config", cfgPath],
        cwd: root(),
        stdout: join(dir, `${name.replace(/\W/g, "_")}.stdout`),
        stderr: join(dir, `${name.replace(/\W/g, "_")}.stderr`),
        accessLog,
      };
    },
  };
}

/**
 * A Fulcrum variant run from another checkout (`fulcrum-1w@/work/main`), on a port of its own:
 * an A/B of two branches in the same interleaved rounds (bench/cpu-ladder.ts).
 */
export function fulcrumAt(spec: string, port: number): ProxyDef | undefined {
  const at = spec.indexOf("@");
  const v = FULCRUM_VARIANTS.find((x) => x.name === spec.slice(0, at));
  if (at < 0 || v === undefined) return undefined;
  const root = spec.slice(at + 1);
  return fulcrum(v, port, () => root, spec);
}

/** Fulcrum first: the ratios are read against nginx, but Fulcrum is the subject. */
export const PROXIES: ProxyDef[] = [
  ...FULCRUM_VARIANTS.map((v, i) => fulcrum(v, 18080 + portOffset + (i === 0 ? 0 : 10 + i))),
  nginx,
  haproxy,
];

export interface Running {
  def: ProxyDef;
  proc: Subprocess;
  startupMs: number;
  accessLog: string;
}

/** Start and wait (bounded) for the first proxied response; start-up time is measured to it. */
export async function startProxy(def: ProxyDef, ctx: Ctx, timeoutMs = 10_000): Promise<Running> {
  await assertFree([def.port]); // else the readiness poll could be answered by a stranger
  const l = def.prepare(ctx);
  const t0 = performance.now();
  const proc = spawn(def.name, l.cmd, { cwd: l.cwd, stdout: l.stdout, stderr: l.stderr, raiseNofile: true });
  const ok = await waitFor(
    async () => {
      if (proc.exitCode !== null) return false; // died: stop polling
      const r = await fetch(`http://127.0.0.1:${def.port}/100b`, { signal: AbortSignal.timeout(500) });
      await r.arrayBuffer();
      return r.status === 200 && r.headers.has("x-backend") ? true : undefined;
    },
    timeoutMs,
    2,
  );
  const startupMs = performance.now() - t0;
  if (ok !== true) {
    await stop(proc);
    const err = existsSync(l.stderr) ? readFileSync(l.stderr, "utf8").slice(-800) : "";
    const how = proc.exitCode !== null ? `exited with code ${proc.exitCode}` : `did not serve a proxied response within ${timeoutMs} ms`;
    throw new Error(`${def.name} ${how}. ${err}`);
  }
  return { def, proc, startupMs, accessLog: l.accessLog };
}

/** Minimal OTLP/HTTP receiver for the tracing variants: accepts and counts export requests. */
export async function startOtlpSink(): Promise<{ requests: () => number; stop: () => void }> {
  await assertFree([OTLP_PORT]);
  let n = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: OTLP_PORT,
    async fetch(req) {
      await req.arrayBuffer();
      n++;
      // An empty ExportTraceServiceResponse in the encoding that was sent.
      if (req.headers.get("content-type")?.includes("protobuf"))
        return new Response(new Uint8Array(0), { headers: { "content-type": "application/x-protobuf" } });
      return Response.json({ partialSuccess: {} });
    },
  });
  return { requests: () => n, stop: () => server.stop(true) };
}

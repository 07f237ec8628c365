// Backends for the benchmark: nginx serving fixed files when installed (cheap, so the proxy is
// the bottleneck), else one small Bun process per backend. Both name themselves in `x-backend`
// and report accepted connections, which is how upstream keep-alive reuse is measured.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { assertFree, hardNofile, spawn, stop, waitFor, which, log } from "./proc.ts";

export const BODY_SIZES: Record<string, number> = { "/100b": 100, "/16k": 16 * 1024, "/1m": 1024 * 1024 };
export const POST_PATH = "/upload";
export const POST_SIZE = 4096;

/** Deterministic printable body so every backend kind serves identical bytes. */
export function body(size: number): Uint8Array {
  const line = "fulcrum-bench-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n";
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = line.charCodeAt(i % line.length);
  return b;
}

export interface Backends {
  kind: "nginx" | "bun";
  ports: number[];
  urls: string[];
  /** Total TCP connections accepted so far across all backends. */
  accepts(): Promise<number>;
  /** Total requests served so far. */
  requests(): Promise<number>;
  /** Per backend where the kind can tell (Bun), else one aggregate row (nginx stub_status). */
  stats(): Promise<{ name: string; accepts: number; requests: number }[]>;
  pids(): number[];
  stop(): Promise<void>;
}

export type BackendKind = "auto" | "nginx" | "bun";

export async function startBackends(opts: { count: number; basePort: number; dir: string; kind?: BackendKind }): Promise<Backends> {
  const kind = opts.kind ?? "auto";
  const useNginx = kind === "nginx" || (kind === "auto" && which("nginx") !== undefined);
  if (kind === "nginx" && !which("nginx")) throw new Error("--kind nginx but nginx is not installed");
  const ports = Array.from({ length: opts.count }, (_, i) => opts.basePort + i);
  mkdirSync(opts.dir, { recursive: true });
  await assertFree(ports);
  const b = useNginx ? await startNginx(ports, opts.dir) : await startBun(ports, opts.dir);
  for (const p of ports) {
    const ok = await waitFor(async () => (await fetch(`http://127.0.0.1:${p}/100b`)).ok || undefined, 10_000, 20);
    if (!ok) {
      await b.stop();
      throw new Error(`backend on port ${p} did not come up (logs in ${opts.dir})`);
    }
  }
  return b;
}

async function startNginx(ports: number[], dir: string): Promise<Backends> {
  const www = join(dir, "www");
  mkdirSync(www, { recursive: true });
  for (const [path, size] of Object.entries(BODY_SIZES)) writeFileSync(join(www, path.slice(1)), body(size));
  const sock = join(dir, "backend-status.sock");
  const servers = ports.map((p, i) => `
    server {
      listen 127.0.0.1:${p} backlog=4096;
      add_header x-backend b${i + 1} always;
      location / { root ${www}; }
      location = / { return 200 "hello from b${i + 1}\n"; }
      location = /healthz { return 200 "ok\n"; }
      location = ${POST_PATH} { client_body_buffer_size 64k; return 200 "ok\\n"; }
    }`).join("");
  // stub_status on a unix socket: its `accepts` counts the proxies' upstream connections
  // without taking another TCP port.
  const conf = `
daemon off;
worker_processes auto;
${process.getuid?.() === 0 ? "user root;" : ""}
pid ${dir}/backend-nginx.pid;
error_log ${dir}/backend-error.log warn;
worker_rlimit_nofile ${hardNofile()};
events { worker_connections ${Math.min(16384, hardNofile() - 100)}; }
http {
  access_log off;
  default_type text/plain;
  sendfile on; tcp_nopush on;
  open_file_cache max=100; open_file_cache_valid 600s;
  keepalive_timeout 120s; keepalive_requests 1000000;
  client_body_temp_path ${dir}/bt; proxy_temp_path ${dir}/pt; fastcgi_temp_path ${dir}/ft;
  uwsgi_temp_path ${dir}/ut; scgi_temp_path ${dir}/st;
  ${servers}
  server { listen unix:${sock}; location / { stub_status; } }
}
`;
  const confPath = join(dir, "backend-nginx.conf");
  writeFileSync(confPath, conf);
  const proc = spawn("backend-nginx", [which("nginx")!, "-c", confPath, "-e", `${dir}/backend-error.log`], {
    stderr: join(dir, "backend-nginx.stderr"),
  });
  const status = async () => {
    const text = await (await fetch("http://localhost/", { unix: sock } as RequestInit)).text();
    // "Active connections: 1 \nserver accepts handled requests\n 10 10 20 \n..."
    const m = /\n\s*(\d+)\s+(\d+)\s+(\d+)/.exec(text);
    if (!m) throw new Error(`unexpected stub_status: ${text}`);
    return { accepts: Number(m[1]), requests: Number(m[3]) };
  };
  return {
    kind: "nginx",
    ports,
    urls: ports.map((p) => `http://127.0.0.1:${p}`),
    accepts: async () => (await status()).accepts,
    requests: async () => (await status()).requests,
    stats: async () => [{ name: "all", ...(await status()) }],
    pids: () => [proc.pid],
    stop: () => stop(proc),
  };
}

async function startBun(ports: number[], dir: string): Promise<Backends> {
  const bun = process.execPath;
  const script = join(import.meta.dir, "..", "backend-server.ts");
  // One process per backend so backends do not share one event loop (and one core).
  const procs: Subprocess[] = ports.map((p, i) =>
    spawn(`backend-b${i + 1}`, [bun, script, "--port", String(p), "--name", `b${i + 1}`, "--stats", join(dir, `b${i + 1}.sock`)], {
      stderr: join(dir, `backend-b${i + 1}.stderr`),
    })
  );
  const each = () =>
    Promise.all(
      ports.map(async (_, i) =>
        (await (await fetch("http://localhost/", { unix: join(dir, `b${i + 1}.sock`) } as RequestInit)).json()) as {
          name: string;
          accepts: number;
          requests: number;
        }
      ),
    );
  const stats = async () =>
    (await each()).reduce((a, s) => ({ accepts: a.accepts + s.accepts, requests: a.requests + s.requests }), { accepts: 0, requests: 0 });
  return {
    kind: "bun",
    ports,
    urls: ports.map((p) => `http://127.0.0.1:${p}`),
    accepts: async () => (await stats()).accepts,
    requests: async () => (await stats()).requests,
    stats: each,
    pids: () => procs.map((p) => p.pid),
    stop: async () => {
      await Promise.all(procs.map((p) => stop(p)));
    },
  };
}

export { log };

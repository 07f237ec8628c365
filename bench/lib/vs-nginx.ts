// The two servers of a side-by-side bench (bench/h2.ts, tls.ts, ws.ts): Fulcrum run from this
// checkout's main.ts and nginx, each from a config written into the run's work dir, polled until
// it answers.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { hardNofile, spawn, waitFor, which } from "./proc.ts";
import { repoRoot } from "./proxies.ts";

export interface Server {
  name: string;
  port: number;
  proc: Subprocess;
}

/**
 * Start Fulcrum (a name starting with "fulcrum") or nginx from `config`; returns once `ready()` is
 * true, throws `NAME did not WHAT on PORT` after 15 s.
 */
export async function startServer(
  name: string,
  port: number,
  dir: string,
  config: string,
  ready: () => Promise<boolean>,
  what = "answer",
): Promise<Server> {
  const cmd = name.startsWith("fulcrum")
    ? [process.execPath, join(repoRoot(), "main.ts"), "run", "--config", config]
    : [which("nginx")!, "-c", config, "-e", `${dir}/nginx-${port}-error.log`];
  const proc = spawn(name, cmd, { cwd: repoRoot(), stderr: join(dir, `${name}.stderr`), raiseNofile: true });
  const up = await waitFor(async () => (await ready()) || undefined, 15_000, 50);
  if (!up) throw new Error(`${name} did not ${what} on ${port} (see ${dir})`);
  return { name, port, proc };
}

/** `dir/fulcrum-PORT.yaml`: `listen` (YAML lines), `workers`, no admin API, no access log, then `pools`. */
export function fulcrumConfig(dir: string, port: number, workers: number, listen: string, pools: string): string {
  const file = join(dir, `fulcrum-${port}.yaml`);
  writeFileSync(file, `${listen}workers: ${workers}\nadmin: false\nlog: { level: warning, access_log: false }\n${pools}`);
  return file;
}

/** `dir/nginx-PORT.conf`: `workers` processes, no access log, pid, error log and temp files in `dir`; `http` is the rest of the http block. */
export function nginxConfig(dir: string, port: number, workers: number, http: string): string {
  const file = join(dir, `nginx-${port}.conf`);
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
  client_body_temp_path ${dir}/nbt; proxy_temp_path ${dir}/npt; fastcgi_temp_path ${dir}/nft;
  uwsgi_temp_path ${dir}/nut; scgi_temp_path ${dir}/nst;
${http}}
`,
  );
  return file;
}

/** `nginx version: nginx/1.x` */
export const nginxVersion = () => Bun.spawnSync(["nginx", "-v"]).stderr.toString().trim();

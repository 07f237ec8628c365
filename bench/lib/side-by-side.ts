// A few servers started from commands, each driven in turn by wrk (GET 100 B, 64 connections),
// rounds alternating the order; a markdown table of medians with the ratio to the first server
// (bench/deno.ts, bench/middleware-route.ts).
import { join } from "node:path";
import { runLoad, type LoadResult } from "./loadgen.ts";
import { assertFree, log, spawn, waitFor, which } from "./proc.ts";
import { repoRoot } from "./proxies.ts";
import { nginxConfig } from "./vs-nginx.ts";
import { loadAverage, median } from "./rounds.ts";

export interface SideServer {
  name: string;
  port: number;
  cmd: string[];
  env?: Record<string, string>;
}

/** nginx proxying to `backends` on `port` with keep-alive upstreams, one worker a core: the peer of both side-by-side benches. */
export function nginxProxyServer(dir: string, port: number, backends: readonly string[]): SideServer {
  const upstream = backends.map((u) => `server ${new URL(u).host};`).join(" ");
  const http = `  upstream b { ${upstream} keepalive 320; }
  server { listen 127.0.0.1:${port}; location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } }
`;
  return {
    name: "nginx",
    port,
    cmd: [which("nginx")!, "-c", nginxConfig(dir, port, navigator.hardwareConcurrency, http), "-e", `${dir}/nginx-error.log`],
  };
}

/** Start every server (bounded wait for a 200 on /100b), warm each up, run the rounds; returns the table's lines. */
export async function sideBySide(
  servers: SideServer[],
  o: { dir: string; runs: number; duration: number; path?: string },
): Promise<string[]> {
  const path = o.path ?? "/100b";
  await assertFree(servers.map((s) => s.port));
  for (const s of servers) {
    spawn(s.name, s.cmd, { cwd: repoRoot(), stderr: join(o.dir, `${s.name}.stderr`), raiseNofile: true, env: s.env });
    const up = await waitFor(
      async () => {
        const r = await fetch(`http://127.0.0.1:${s.port}${path}`).catch(() => undefined);
        await r?.arrayBuffer();
        return r?.status === 200 || undefined;
      },
      20_000,
      50,
    );
    if (!up) throw new Error(`${s.name} did not answer on ${s.port} (see ${o.dir})`);
  }
  log(`load average ${await loadAverage()}; warming up`);
  for (const s of servers) await runLoad("wrk", { url: `http://127.0.0.1:${s.port}${path}`, connections: 64, durationSec: 3 }, o.dir);
  const results = new Map<string, LoadResult[]>();
  for (let round = 0; round < o.runs; round++) {
    for (const s of round % 2 ? [...servers].reverse() : servers) {
      const r = await runLoad("wrk", { url: `http://127.0.0.1:${s.port}${path}`, connections: 64, durationSec: o.duration }, o.dir);
      results.set(s.name, [...(results.get(s.name) ?? []), r]);
      log(`round ${round + 1} ${s.name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99Ms} ms, errors ${r.errors}`);
    }
  }
  const first = median(results.get(servers[0]!.name)!.map((r) => r.rps));
  const lines = [
    `GET ${path}, 64 connections, ${o.runs} rounds × ${o.duration} s, medians (${new Date().toISOString().slice(0, 16)}Z, ` +
    `load average at the end ${await loadAverage()}):`,
    `| server | req/s | × ${servers[0]!.name} | p99 ms | errors |`,
    "|---|---:|---:|---:|---:|",
  ];
  for (const s of servers) {
    const rs = results.get(s.name)!;
    const rps = median(rs.map((r) => r.rps));
    lines.push(
      `| ${s.name} | ${rps.toFixed(0)} | ${(rps / first).toFixed(2)} | ${median(rs.map((r) => r.p99Ms)).toFixed(1)} | ${
        rs.reduce((a, r) => a + r.errors, 0)
      } |`,
    );
  }
  return lines;
}

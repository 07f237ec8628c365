/**
 * Fulcrum under Deno against nginx, and what Deno itself allows: GET 100 B at 64 connections
 * (wrk), through
 *   - nginx (`worker_processes auto`),
 *   - Fulcrum under Deno, one process, the bench config (access log to a file, admin and metrics on),
 *     run as `deno task start` runs it,
 *   - a bare Deno proxy (`Deno.serve` + `fetch`, nothing else): the most Deno allows with its own HTTP,
 *   - optionally Fulcrum under Bun, one process, for reference (`--with-bun`),
 *   - optionally Fulcrum under Deno from another checkout (`--base DIR`): an interleaved A/B.
 * Three nginx backends serve the bytes. Rounds alternate the order; the table shows medians of
 * req/s and of each server's CPU time per request (its processes' utime + stime from /proc, read
 * around each wrk run), which a shared machine disturbs less than req/s.
 *   bun bench/deno.ts [--runs 3] [--duration 5] [--with-bun] [--no-bare] [--base DIR] [--env FULCRUM_X=1]
 *                     [--v8-flags=--flag,...] [--base-v8-flags=--flag,...]   (to this checkout's / the base's Deno)
 *   bun bench/deno.ts --profile OUT.cpuprofile [--duration 5] [--base DIR]
 *     (only Fulcrum under Deno, run with --inspect: a V8 CPU profile taken over one wrk run through
 *     the inspector, written to OUT.cpuprofile, its self time per function printed). `deno run
 *     --cpu-prof --cpu-prof-dir=DIR` works too (not in `deno run --help` of 2.9): it writes the
 *     whole run's profile at exit, which Fulcrum's SIGTERM shutdown reaches; the inspector takes
 *     only the loaded seconds.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { startBackends } from "./lib/backends.ts";
import { runLoad, type LoadResult } from "./lib/loadgen.ts";
import { assertFree, cpuSplit, DENO_RUN_FLAGS, log, sleep, spawn, stopAll, waitFor, which, workDir } from "./lib/proc.ts";
import { repoRoot } from "./lib/proxies.ts";
import { loadAverage, median } from "./lib/rounds.ts";
import { nginxProxyServer, type SideServer } from "./lib/side-by-side.ts";
import { nginxVersion } from "./lib/vs-nginx.ts";

const argv = process.argv.slice(2);
const opt = (k: string, d: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1]! : d);
const runs = Number(opt("--runs", "3"));
const duration = Number(opt("--duration", "5"));
const base = opt("--base", "");
const profileOut = opt("--profile", "");
const v8Flags = argv.find((a) => a.startsWith("--v8-flags="));
const baseV8Flags = argv.find((a) => a.startsWith("--base-v8-flags="))?.replace("--base-", "--");
const env: Record<string, string> = {};
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--env") {
    const [k, v] = argv[i + 1]!.split("=");
    env[k!] = v ?? "";
  }
}
if (!which("wrk") || !which("nginx")) throw new Error("bench/deno.ts needs wrk and nginx");
const dir = workDir("fulcrum-deno-");
const deno = join(repoRoot(), "node_modules", ".bin", "deno");
const INSPECT = 19339;

/** The command of `deno task start` (deno.json), for the checkout in `root`. */
const fulcrumDeno = (name: string, root: string, port: number, config: string, extra: string[] = [], flags = v8Flags): SideServer => ({
  name,
  port,
  env,
  cmd: [
    deno,
    "run",
    ...extra,
    ...(flags ? [flags] : []),
    "--config",
    join(root, "deno.json"),
    ...DENO_RUN_FLAGS,
    join(root, "main.ts"),
    "run",
    "--config",
    config,
  ],
});

async function start(s: SideServer): Promise<Subprocess> {
  const proc = spawn(s.name, s.cmd, { cwd: repoRoot(), stderr: join(dir, `${s.name}.stderr`), raiseNofile: true, env: s.env });
  const up = await waitFor(
    async () => {
      const r = await fetch(`http://127.0.0.1:${s.port}/100b`).catch(() => undefined);
      await r?.arrayBuffer();
      return r?.status === 200 || undefined;
    },
    20_000,
    50,
  );
  if (!up) throw new Error(`${s.name} did not answer on ${s.port} (see ${dir})`);
  return proc;
}

const wrk = (port: number, secs: number) =>
  runLoad("wrk", { url: `http://127.0.0.1:${port}/100b`, connections: 64, durationSec: secs }, dir);

/** One wrk run with the CPU the server's processes spent meanwhile, in µs per request. */
type Measured = LoadResult & { cpuUs: number; userUs: number };
async function measured(s: SideServer, pid: number): Promise<Measured> {
  const a = cpuSplit(pid);
  const r = await wrk(s.port, duration);
  const b = cpuSplit(pid);
  const per = (sec: number) => (sec * 1e6) / Math.max(1, r.requests);
  return { ...r, cpuUs: per(b.user + b.system - a.user - a.system), userUs: per(b.user - a.user) };
}

/** A V8 CPU profile of the process behind the inspector on INSPECT, taken while `during` runs. */
async function cpuProfile(during: () => Promise<unknown>): Promise<unknown> {
  const targets = (await (await fetch(`http://127.0.0.1:${INSPECT}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
  const ws = new WebSocket(targets[0]!.webSocketDebuggerUrl);
  await new Promise((r, j) => ((ws.onopen = r), (ws.onerror = j)));
  let id = 0;
  const pending = new Map<number, (v: unknown) => void>();
  ws.onmessage = (m) => {
    const msg = JSON.parse(String(m.data)) as { id?: number; result?: unknown };
    if (msg.id !== undefined) pending.get(msg.id)?.(msg.result);
  };
  const call = (method: string, params: object = {}) =>
    new Promise<unknown>((r) => {
      pending.set(++id, r);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: 200 });
  await call("Profiler.start");
  await during();
  const { profile } = (await call("Profiler.stop")) as { profile: unknown };
  ws.close();
  return profile;
}

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
function selfTimes(p: { nodes: Node[]; samples: number[] }, top = 40): string[] {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  for (const s of p.samples) {
    const f = byId.get(s)!.callFrame;
    const k = `${f.functionName || "(anonymous)"} ${f.url.replace(/^file:\/\/.*?\/(core|main)/, "$1")}:${f.lineNumber + 1}`;
    self.set(k, (self.get(k) ?? 0) + 1);
  }
  const n = p.samples.length;
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => `${((100 * v) / n).toFixed(1).padStart(5)}%  ${k}`);
}

try {
  const backends = await startBackends({ count: 3, basePort: 19351, dir: join(dir, "backends"), kind: "nginx" });
  const NGINX = 18901, DENO = 18902, BARE = 18903, BUN = 18904, BASE = 18905;
  const fulcrumYaml = (port: number) => {
    const file = join(dir, `fulcrum-${port}.yaml`);
    writeFileSync(
      file,
      `listen: 127.0.0.1:${port}\nworkers: 1\nadmin: { listen: 127.0.0.1:${port + 50} }\n` +
        `pools:\n  bench: { backends: [${backends.urls.map((u) => `"${u}"`).join(", ")}] }\n` +
        `log: { level: warning, access_log: true, access_log_file: ${join(dir, `access-${port}.log`)} }\n`,
    );
    return file;
  };
  if (profileOut) {
    const s = fulcrumDeno("fulcrum-deno", base || repoRoot(), DENO, fulcrumYaml(DENO), [`--inspect=127.0.0.1:${INSPECT}`]);
    await assertFree([DENO, INSPECT]);
    await start(s);
    await wrk(DENO, 3);
    const p = (await cpuProfile(() => wrk(DENO, duration))) as { nodes: Node[]; samples: number[] };
    writeFileSync(profileOut, JSON.stringify(p));
    console.log(`${profileOut}: ${p.samples.length} samples; self time:`);
    for (const l of selfTimes(p)) console.log(l);
  } else {
    const servers: SideServer[] = [nginxProxyServer(dir, NGINX, backends.urls)];
    servers.push(fulcrumDeno("fulcrum-deno", repoRoot(), DENO, fulcrumYaml(DENO)));
    if (base) servers.push(fulcrumDeno("fulcrum-deno@base", base, BASE, fulcrumYaml(BASE), [], baseV8Flags));
    if (!argv.includes("--no-bare")) {
      const bare = join(dir, "bare-deno.ts");
      writeFileSync(
        bare,
        `const b = ${JSON.stringify(backends.urls)}; let i = 0;
Deno.serve({ hostname: "127.0.0.1", port: ${BARE}, onListen() {} }, (r) => { const u = new URL(r.url); return fetch(b[i++ % b.length] + u.pathname + u.search, { headers: r.headers }); });
`,
      );
      servers.push({ name: "bare-deno", port: BARE, cmd: [deno, "run", "-A", bare] });
    }
    if (argv.includes("--with-bun")) {
      servers.push({
        name: "fulcrum-bun",
        port: BUN,
        cmd: [process.execPath, join(repoRoot(), "main.ts"), "run", "--config", fulcrumYaml(BUN)],
      });
    }
    await assertFree(servers.map((s) => s.port));
    const pids = new Map<string, number>();
    for (const s of servers) pids.set(s.name, (await start(s)).pid);
    log(`load average ${await loadAverage()}; warming up`);
    for (const s of servers) await wrk(s.port, 3);
    const results = new Map<string, Measured[]>();
    for (let round = 0; round < runs; round++) {
      for (const s of round % 2 ? [...servers].reverse() : servers) {
        const r = await measured(s, pids.get(s.name)!);
        results.set(s.name, [...(results.get(s.name) ?? []), r]);
        log(
          `round ${round + 1} ${s.name}: ${r.rps.toFixed(0)} req/s, ${
            r.cpuUs.toFixed(1)
          } µs CPU/req, p99 ${r.p99Ms} ms, errors ${r.errors}`,
        );
        await sleep(300);
      }
    }
    const first = results.get(servers[0]!.name)!;
    console.log(
      `${nginxVersion()}${Object.keys(env).length ? `, Fulcrum with ${JSON.stringify(env)}` : ""}${v8Flags ? `, ${v8Flags}` : ""}`,
    );
    console.log(
      `GET /100b, 64 connections, ${runs} rounds × ${duration} s, medians (${new Date().toISOString().slice(0, 16)}Z, ` +
        `load average at the end ${await loadAverage()}):`,
    );
    console.log(`| server | req/s | × ${servers[0]!.name} | CPU µs/req | × ${servers[0]!.name} | of which user | p99 ms | errors |`);
    console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
    const rps0 = median(first.map((r) => r.rps)), cpu0 = median(first.map((r) => r.cpuUs));
    for (const s of servers) {
      const rs = results.get(s.name)!;
      const rps = median(rs.map((r) => r.rps)), cpu = median(rs.map((r) => r.cpuUs));
      console.log(
        `| ${s.name} | ${rps.toFixed(0)} | ${(rps / rps0).toFixed(2)} | ${cpu.toFixed(1)} | ${(cpu / cpu0).toFixed(2)} | ${
          median(rs.map((r) => r.userUs)).toFixed(1)
        } | ${median(rs.map((r) => r.p99Ms)).toFixed(1)} | ${rs.reduce((a, r) => a + r.errors, 0)} |`,
      );
    }
    if (base) {
      // Per round, base / this checkout: steadier than the ratio of medians when the machine's load drifts.
      const a = results.get("fulcrum-deno")!, b = results.get("fulcrum-deno@base")!;
      const cpu = median(a.map((r, i) => b[i]!.cpuUs / r.cpuUs)), rps = median(a.map((r, i) => r.rps / b[i]!.rps));
      console.log(`per-round medians: base CPU/req ÷ this = ${cpu.toFixed(2)}, this req/s ÷ base = ${rps.toFixed(2)}`);
    }
  }
} finally {
  await stopAll();
}

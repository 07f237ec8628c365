// Where Fulcrum's tail latency at GET 100 B, 64 connections comes from: Fulcrum checkouts (workers
// auto, the harness's config) beside nginx, wrk --latency in rotating rounds, and per round what
// each Fulcrum worker did in that window: client connections it held (SO_REUSEPORT's split), CPU,
// and with --gc its garbage collections (BUN_JSC_logGC=1: count, summed and longest pause).
//
//   bun bench/p99-probe.ts [--rounds 5] [--duration 5] [--warmup 15] [--connections 64]
//     [--proxies nginx,fulcrum@DIR,fulcrum@DIR2] [--env K=V]... [--env-for NAME@DIR:K=V]... [--gc]
//
// `--env K=V` goes to every Fulcrum (e.g. a JSC option); `--env-for fulcrum@DIR:K=V` to one, as does
// a proxy spec with `#tag` after it (`fulcrum@DIR#big`: another instance of the same checkout).
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startBackends } from "./lib/backends.ts";
import { parseWrk, runLoad } from "./lib/loadgen.ts";
import { log, processTree, stopAll, treeRss, workDir } from "./lib/proc.ts";
import { fulcrumAt, PROXIES, portOffset, type ProxyDef, startProxy, type Running } from "./lib/proxies.ts";
import { loadAverage, median } from "./lib/rounds.ts";

const argv = process.argv.slice(2);
const opt = (k: string, d: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1]! : d);
const all = (k: string) => argv.flatMap((a, i) => (a === k ? [argv[i + 1]!] : []));
const rounds = Number(opt("--rounds", "5"));
const duration = Number(opt("--duration", "5"));
const warmup = Number(opt("--warmup", "15"));
const connections = Number(opt("--connections", "64"));
const gc = argv.includes("--gc");
// The harness's other scenarios before each measured round (16 KiB, 1 MiB, POST 4 KiB, `--disturb S` seconds each),
// as a full run has them between two 100 B slots; `--head S`: the first S seconds of the round measured on their own.
const disturb = Number(opt("--disturb", "0"));
const head = Number(opt("--head", "0"));
const specs = opt("--proxies", `nginx,fulcrum@${join(import.meta.dir, "..")}`).split(",");
const envAll = Object.fromEntries(all("--env").map((kv) => kv.split("=", 2) as [string, string]));
const envFor = new Map<string, Record<string, string>>();
for (const s of all("--env-for")) {
  const at = s.indexOf(":", s.indexOf("@"));
  const [k, v] = s.slice(at + 1).split("=", 2) as [string, string];
  envFor.set(s.slice(0, at), { ...envFor.get(s.slice(0, at)), [k]: v });
}

const dir = workDir("fulcrum-p99-", argv.includes("--keep"));
if (argv.includes("--keep")) log(`keeping ${dir}`);

// wrk prints p50/75/90/99; the tail's shape needs more of it.
const PCT_LUA = `done = function(summary, latency, requests)
  local out = {}
  for _, p in ipairs({95, 99, 99.9}) do out[#out + 1] = string.format("%.3f", latency:percentile(p) / 1000) end
  io.write("PCT " .. table.concat(out, " ") .. "\\n")
end
`;

/** One wrk run with --latency and the percentiles above (ms). */
async function wrk(url: string, durationSec: number): Promise<ReturnType<typeof parseWrk> & { p95: number; p999: number }> {
  const script = join(dir, "pct.lua");
  writeFileSync(script, PCT_LUA);
  const p = Bun.spawn(["wrk", "-t2", `-c${connections}`, `-d${durationSec}s`, "--timeout", "5s", "--latency", "-s", script, url], {
    stdout: "pipe",
    stderr: "ignore",
  });
  const out = await new Response(p.stdout).text();
  await p.exited;
  const pct = /PCT ([\d.]+) ([\d.]+) ([\d.]+)/.exec(out);
  return { ...parseWrk(out, durationSec), p95: Number(pct?.[1]), p999: Number(pct?.[3]) };
}

interface Row {
  proxy: string;
  round: number;
  rps: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
  cpuUs: number;
  split: string;
  gcCount: number;
  gcPauseMs: number;
  gcMaxMs: number;
  load: string;
}

/** Client connections to `port` by the pid holding them (ss). */
function connsByPid(port: number): Map<number, number> {
  const r = Bun.spawnSync(["ss", "-tnpH", "state", "established", `( sport = :${port} )`]);
  const m = new Map<number, number>();
  for (const line of r.stdout.toString().split("\n")) {
    const pid = /pid=(\d+)/.exec(line)?.[1];
    if (pid) m.set(Number(pid), (m.get(Number(pid)) ?? 0) + 1);
  }
  return m;
}

/** CPU seconds (user + system) of one process, not its children. */
function cpuOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** Eden budgets ("bytes allowed", MB) and bytes allocated in each cycle JSC logged from byte `from` on. */
function edenBudgets(file: string, from: number): { budgetMB: number[]; allocated: number } {
  const text = readFileSync(file).subarray(from).toString("latin1");
  const ms = [...text.matchAll(/bytes allocated this cycle: (\d+) exceed bytes allowed: (\d+)/g)];
  return { budgetMB: ms.map((m) => Number(m[2]) / 2 ** 20), allocated: ms.reduce((a, m) => a + Number(m[1]), 0) };
}

/** GCs logged in `file` from byte `from` on, counted by heap (one heap a process): "heap:count …". */
function gcByHeap(file: string, from: number): string {
  const text = readFileSync(file).subarray(from).toString("latin1");
  const m = new Map<string, number>();
  for (const x of text.matchAll(/GC<0x[0-9a-f]*?([0-9a-f]{4})[0-9a-f]{4}>: START/g)) m.set(x[1]!, (m.get(x[1]!) ?? 0) + 1);
  return [...m].map(([k, v]) => `${k}:${v}`).join(" ");
}

/** Collections logged from byte `from` on by kind: "gc eden n (sum ms) full n (sum ms)". */
function gcKinds(file: string, from: number): string {
  const text = readFileSync(file).subarray(from).toString("latin1");
  const k = { Eden: [0, 0], Full: [0, 0] } as Record<string, [number, number]>;
  for (const m of text.matchAll(/=> (Eden|Full)Collection[^\]]*?=> \d+kb, p=([\d.]+)ms/g)) {
    k[m[1]!]![0]++;
    k[m[1]!]![1] += Number(m[2]);
  }
  return `gc eden ${k.Eden![0]} (${k.Eden![1].toFixed(1)} ms) full ${k.Full![0]} (${k.Full![1].toFixed(1)} ms)`;
}

/** GC pauses logged in `file` from byte `from` on: pause ms of each, by heap (one heap a process). */
function gcPauses(file: string, from: number): number[] {
  const text = readFileSync(file).subarray(from).toString("latin1");
  return [...text.matchAll(/=> \d+kb, p=([\d.]+)ms/g)].map((m) => Number(m[1]));
}

async function main(): Promise<void> {
  const backends = await startBackends({ count: 3, basePort: 19001 + portOffset, dir: join(dir, "backends") });
  const running: { r: Running; stderr: string; name: string }[] = [];
  for (const [i, spec] of specs.entries()) {
    const [base, tag] = spec.split("#") as [string, string | undefined];
    let def: ProxyDef | undefined = base === "nginx"
      ? PROXIES.find((p) => p.name === "nginx")
      : fulcrumAt(base, 18300 + portOffset + 10 * i);
    if (def === undefined) throw new Error(`unknown proxy ${spec}`);
    const orig = def;
    if (tag) def = { ...orig, name: spec, prepare: (ctx) => orig.prepare({ ...ctx, dir: join(ctx.dir, tag) }) };
    const env = base === "nginx" ? {} : { ...envAll, ...(gc ? { BUN_JSC_logGC: "1" } : {}), ...envFor.get(spec) };
    const saved = { ...process.env };
    Object.assign(process.env, env);
    if (tag) Bun.spawnSync(["mkdir", "-p", join(dir, tag)]);
    const r = await startProxy(def, { dir, backendUrls: backends.urls });
    process.env = saved;
    const stderr = join(tag ? join(dir, tag) : dir, `${def.name.split("#")[0]!.replace(/\W/g, "_")}.stderr`);
    running.push({ r, stderr, name: spec });
    log(`started ${spec} (pid ${r.proc.pid}) env ${JSON.stringify(env)}`);
  }
  for (const { r, name } of running) {
    log(`warm-up ${name} (${warmup} s)`);
    const w = runLoad("wrk", { url: `http://127.0.0.1:${r.def.port}/100b`, connections, durationSec: warmup }, dir);
    await Bun.sleep(1000);
    log(`  connections by pid during warm-up: ${JSON.stringify([...connsByPid(r.def.port)])}`);
    await w;
  }
  const rows: Row[] = [];
  const heads: { proxy: string; round: number; p99: number; rps: number }[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = [...running.slice(round % running.length), ...running.slice(0, round % running.length)];
    for (const { r, stderr, name } of order) {
      for (const path of disturb > 0 ? ["/16k", "/1m", "/upload"] : []) {
        await runLoad("wrk", {
          url: `http://127.0.0.1:${r.def.port}${path}`,
          connections,
          durationSec: disturb,
          ...(path === "/upload" ? { method: "POST" as const, bodySize: 4096 } : {}),
        }, dir);
      }
      if (head > 0) {
        const hPids = processTree(r.proc.pid);
        const hCpu0 = hPids.reduce((a, p) => a + cpuOf(p), 0);
        const hFrom = gc && name !== "nginx" ? statSync(stderr).size : 0;
        const h = await wrk(`http://127.0.0.1:${r.def.port}/100b`, head);
        const hCpu = ((hPids.reduce((a, p) => a + cpuOf(p), 0) - hCpu0) / h.requests) * 1e6;
        const hGc = gc && name !== "nginx" ? gcKinds(stderr, hFrom) : "";
        console.log(
          `round ${round + 1} ${name.padEnd(28)} first ${head} s: ${Math.round(h.rps)} req/s p50 ${h.p50Ms.toFixed(2)} p99 ${
            h.p99Ms.toFixed(2)
          } ms, cpu ${hCpu.toFixed(1)} us/req ${hGc}`,
        );
        heads.push({ proxy: name, round: round + 1, p99: h.p99Ms, rps: h.rps });
      }
      const from = gc && name !== "nginx" ? statSync(stderr).size : 0;
      const pids = processTree(r.proc.pid);
      const cpu0 = pids.map(cpuOf);
      const load = wrk(`http://127.0.0.1:${r.def.port}/100b`, duration);
      await Bun.sleep(1000);
      const conns = connsByPid(r.def.port);
      const res = await load;
      const cpu = pids.map((p, i) => cpuOf(p) - cpu0[i]!);
      // Per process: connections held and CPU share; the process holding none is nginx's master / Fulcrum's primary.
      const split = pids.map((p, i) => `${conns.get(p) ?? 0}c/${cpu[i]!.toFixed(1)}s`).join(" ");
      const pauses = gc && name !== "nginx" ? gcPauses(stderr, from) : [];
      const row: Row = {
        proxy: name,
        round: round + 1,
        rps: res.rps,
        p50: res.p50Ms,
        p90: res.p90Ms,
        p95: res.p95,
        p99: res.p99Ms,
        p999: res.p999,
        max: res.maxMs,
        cpuUs: (cpu.reduce((a, b) => a + b, 0) / res.requests) * 1e6,
        split,
        gcCount: pauses.length,
        gcPauseMs: pauses.reduce((a, b) => a + b, 0),
        gcMaxMs: Math.max(0, ...pauses),
        load: (await loadAverage()).split(" ").slice(0, 3).join(" "),
      };
      rows.push(row);
      console.log(
        `round ${row.round} ${name.padEnd(28)} ${Math.round(row.rps)} req/s p50 ${row.p50.toFixed(2)} p90 ${row.p90.toFixed(2)} p95 ${
          row.p95.toFixed(2)
        } p99 ${row.p99.toFixed(2)} p99.9 ${row.p999.toFixed(2)} max ${row.max.toFixed(1)} ms, cpu ${
          row.cpuUs.toFixed(1)
        } us/req, per process ${split}${
          gc && name !== "nginx"
            ? `, gc ${row.gcCount} × (sum ${row.gcPauseMs.toFixed(1)} ms, max ${row.gcMaxMs.toFixed(2)} ms, eden budget median ${
              (median([...edenBudgets(stderr, from).budgetMB, NaN]) ?? NaN).toFixed(1)
            } MB, ${(edenBudgets(stderr, from).allocated / res.requests / 1024).toFixed(2)} KB allocated a request; by heap ${
              gcByHeap(stderr, from)
            }; ${gcKinds(stderr, from)})`
            : ""
        }, load ${row.load}`,
      );
      await Bun.sleep(500);
    }
  }
  await Bun.sleep(1000);
  const rss = new Map(running.map(({ r, name }) => [name, treeRss(r.proc.pid) / 2 ** 20]));
  const nginx = rows.filter((r) => r.proxy === "nginx");
  console.log("\nmedians of rounds; ratios are medians of per-round ratios to nginx in the same round");
  console.log(
    "| proxy | req/s | p50 ms | p95 ms | p99 ms | p99.9 ms | cpu µs/req | × nginx req/s | p50 / p95 / p99 / p99.9 × nginx | RSS after MiB |" +
      (gc ? " GCs/round | GC pause ms/round |" : ""),
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|" + (gc ? "---:|---:|" : ""));
  if (head > 0) {
    console.log(`\nthe first ${head} s of each round on its own: median p99 ms, and p99 × nginx's first ${head} s (median of rounds)`);
    for (const { name } of running) {
      const hs = heads.filter((h) => h.proxy === name);
      const n = heads.filter((h) => h.proxy === "nginx");
      const ratio = n.length ? median(hs.map((h) => h.p99 / n.find((x) => x.round === h.round)!.p99)).toFixed(2) : "-";
      console.log(
        `| ${name} | ${median(hs.map((h) => h.p99)).toFixed(2)} | ${ratio} | ${Math.round(median(hs.map((h) => h.rps)))} req/s |`,
      );
    }
    console.log("\nthe rest of each round:");
  }
  for (const { name } of running) {
    const rs = rows.filter((r) => r.proxy === name);
    const ratio = (f: (r: Row) => number) =>
      nginx.length ? median(rs.map((r) => f(r) / f(nginx.find((n) => n.round === r.round)!))).toFixed(2) : "-";
    console.log(
      `| ${name} | ${Math.round(median(rs.map((r) => r.rps)))} | ${median(rs.map((r) => r.p50)).toFixed(2)} | ${
        median(rs.map((r) => r.p95)).toFixed(2)
      } | ${median(rs.map((r) => r.p99)).toFixed(2)} | ${median(rs.map((r) => r.p999)).toFixed(2)} | ${
        median(rs.map((r) => r.cpuUs)).toFixed(1)
      } | ${ratio((r) => r.rps)} | ${ratio((r) => r.p50)} / ${ratio((r) => r.p95)} / ${ratio((r) => r.p99)} / ${ratio((r) => r.p999)} | ${
        rss.get(name)!.toFixed(0)
      } |` +
        (gc && name !== "nginx"
          ? ` ${median(rs.map((r) => r.gcCount))} | ${median(rs.map((r) => r.gcPauseMs)).toFixed(1)} |`
          : gc
          ? " | |"
          : ""),
    );
  }
}

try {
  await main();
} finally {
  await stopAll();
}

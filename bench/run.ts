// Fulcrum benchmark harness: `npm run bench` (3 runs × 10 s) or `npm run bench -- --quick`
// (1 run × 4 s). Same backends, same load generator, proxies alternated in every round so
// machine drift hits all of them alike. Options: --duration S --runs N --tool wrk|autocannon|bun
// --backends auto|nginx|bun --proxies a,b --scenarios a,b --variants a,b|all --idle-conns N
// --warmup S --fulcrum-root DIR --keep-tmp --save. Results: table on stdout and bench/out/ (ignored by
// git); --save also copies them to bench/results/ (latest.{json,svg} and a dated table) to commit.
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startBackends, type BackendKind } from "./lib/backends.ts";
import { pickTool, runLoad } from "./lib/loadgen.ts";
import { isInterrupted, log, sleep, spawn, stop, stopAll, treeMem, treeRss, which, workDir } from "./lib/proc.ts";
import { fulcrumAt, PROXIES, portOffset, startOtlpSink, startProxy, type Running } from "./lib/proxies.ts";
import { aggregate, formatCells, formatSummaries, svgChart, type ProxySummary, type RunRecord } from "./lib/report.ts";
import { SCENARIOS } from "./lib/scenarios.ts";

const argv = process.argv.slice(2);
const flag = (k: string) => argv.includes(k);
const HELP = `usage: npm run bench -- [options]

Starts example backends, Fulcrum, nginx and HAProxy (where installed) on 127.0.0.1, drives each
with the same load generator, and prints req/s, bytes/s, p50/p99 and ratios against nginx, then
idle RSS, start-up time and memory with 10,000 idle connections. Proxies alternate in every round.

  --quick              1 run × 4 s per scenario and proxy, 1 s warm-up each (about 95 s in all)
  --runs N             rounds (default 3; quick 1)
  --duration S         seconds per scenario, proxy and round (default 10; quick 4)
  --warmup S           seconds of load per proxy before measuring (default 15; quick 1; 0 skips)
  --tool T             wrk | autocannon | bun (default: wrk if installed, else the next)
  --backends K         auto | nginx | bun (default auto: nginx if installed)
  --proxies a,b        only these (fulcrum, nginx, haproxy, and variants' names)
  --variants a,b|all   also Fulcrum variants (see bench/lib/proxies.ts FULCRUM_VARIANTS)
  --scenarios a,b      only these (get-100b-c64, get-100b-c256, get-16k-c64, get-1m-c64, post-4k-c64)
  --idle-conns N       idle connections for the memory test (default 10000; 0 skips)
  --fulcrum-root DIR   benchmark another checkout's Fulcrum
  --keep-tmp           keep the work folder (configs, logs)
  --save               also copy the results into bench/results/ (tracked) to commit them
  --help               this text

Ports (127.0.0.1; each must be free): backends 19001-19003, Fulcrum 18080, nginx 18081,
HAProxy 18082, Fulcrum variants 18091 and up, NAME@DIR proxies 18300 and up, the calibration
proxy 18089, the OTLP sink 19400; all moved up by BENCH_PORT_OFFSET (env) when it is set.
  --proxies a,NAME@DIR  NAME@DIR: Fulcrum variant NAME from the checkout in DIR (A/B in one run)
Results: the table on stdout, bench/out/latest.{json,svg,txt} (not tracked by git).`;
if (flag("--help") || flag("-h")) {
  console.log(HELP);
  process.exit(0);
}
const opt = (k: string) => {
  const i = argv.indexOf(k);
  return i >= 0 ? argv[i + 1] : undefined;
};
const list = (k: string) => opt(k)?.split(",").map((s) => s.trim()).filter(Boolean);

const quick = flag("--quick");
if (opt("--fulcrum-root")) process.env.FULCRUM_ROOT = opt("--fulcrum-root");
const durationSec = Number(opt("--duration") ?? (quick ? 4 : 10));
const rounds = Number(opt("--runs") ?? (quick ? 1 : 3));
// Load before the measured rounds, for every proxy alike: Bun compiles Fulcrum's request path in
// tiers over its first seconds of load (a 3 s warm-up left round 1 of a full run at 0.5–0.7 of
// round 3 for every Fulcrum variant), which nginx and HAProxy do not need. Then each scenario's
// path gets a short warm-up of its own (streaming and uploads take other code).
const warmupSec = Number(opt("--warmup") ?? (quick ? 1 : 15));
if (!(warmupSec >= 0)) throw new Error(`--warmup takes seconds (0 or more), got ${opt("--warmup")}`);
// --quick gives each other scenario 1 s: without it the 16 KiB, 1 MiB and POST rows measured code
// Bun had not compiled yet (their first slot is their first load), and read 0.46–0.59 × nginx.
const scenarioWarmupSec = Math.min(warmupSec, quick ? 1 : 3);
const idleConns = Number(opt("--idle-conns") ?? 10_000);
const variants = list("--variants") ?? [];
const onlyProxies = list("--proxies");
const onlyScenarios = list("--scenarios");
const MB = 1024 * 1024;

const tool = pickTool(opt("--tool"));
const dir = workDir("fulcrum-bench-", flag("--keep-tmp"));
const outDir = join(import.meta.dir, "out");
const resultsDir = join(import.meta.dir, "results");

async function main(): Promise<void> {
  const bunVersion = Bun.version;
  log(`machine: ${navigator.hardwareConcurrency} cores, bun ${bunVersion}, ${process.platform}; work dir ${dir}`);
  const why = opt("--tool")
    ? "chosen with --tool"
    : tool === "wrk"
    ? "installed"
    : tool === "autocannon"
    ? "wrk not found"
    : "wrk and autocannon not found: built-in Bun generator";
  log(`load generator: ${tool} (${why})`);
  log(
    `mode: ${
      quick ? "quick" : "full"
    }: ${rounds} run(s) × ${durationSec} s per scenario and proxy, after ${warmupSec} s of warm-up each (${scenarioWarmupSec} s per other scenario)`,
  );

  // Which proxies run, and which are skipped (and why).
  const wanted = PROXIES.filter((
    p,
  ) => (onlyProxies ? onlyProxies.includes(p.name) : !p.optional || variants.includes("all") || variants.includes(p.name)));
  // `NAME@DIR`: a Fulcrum variant from another checkout, e.g. `--proxies fulcrum,fulcrum@/work/main,nginx` (A/B in one run).
  for (const [i, spec] of (onlyProxies ?? []).filter((n) => n.includes("@")).entries()) {
    const def = fulcrumAt(spec, 18300 + portOffset + 10 * i);
    if (def === undefined) throw new Error(`unknown proxy ${spec}: NAME@DIR takes a Fulcrum variant's name`);
    wanted.push(def);
  }
  const selected = wanted.filter((p) => {
    const why = p.unavailable();
    if (why) log(`SKIPPED ${p.name}: ${why}`);
    return !why;
  });
  if (!selected.some((p) => p.name === "nginx") || !selected.some((p) => p.name === "haproxy"))
    log("peers skipped where not installed: ratios to nginx are shown only when nginx ran");
  if (!selected.length) throw new Error("no proxy can run here");
  const scenarios = SCENARIOS.filter((s) => !onlyScenarios || onlyScenarios.includes(s.id));

  const backends = await startBackends({
    count: 3,
    basePort: 19001 + portOffset,
    dir: join(dir, "backends"),
    kind: (opt("--backends") ?? "auto") as BackendKind,
  });
  log(`backends: ${backends.kind} on ${backends.urls.join(", ")}`);
  const otlp = selected.some((p) => p.otlp) ? await startOtlpSink() : undefined;

  const running: Running[] = [];
  const summaries = new Map<string, ProxySummary>();
  for (const def of selected) {
    try {
      const r = await startProxy(def, { dir, backendUrls: backends.urls });
      await sleep(300);
      const seen = new Set<string>();
      for (let i = 0; i < 6; i++) {
        const res = await fetch(`http://127.0.0.1:${def.port}/100b`);
        await res.arrayBuffer();
        seen.add(res.headers.get("x-backend") ?? "?");
      }
      const idle = treeMem(r.proc.pid);
      summaries.set(def.name, { proxy: def.name, startupMs: r.startupMs, rssIdleMB: idle.rss / MB, ownIdleMB: idle.own / MB });
      log(
        `started ${def.name} on 127.0.0.1:${def.port} (pid ${r.proc.pid}) in ${
          r.startupMs.toFixed(0)
        } ms to first proxied response; backends seen: ${[...seen].sort().join(",")}`,
      );
      running.push(r);
    } catch (e) {
      log(`FAILED to start ${def.name}, leaving it out: ${(e as Error).message}`);
    }
  }
  if (!running.length) throw new Error("no proxy started");

  for (const r of warmupSec > 0 ? running : []) {
    log(`warm-up ${r.def.name} (${warmupSec} s)`);
    await runLoad(tool, { url: `http://127.0.0.1:${r.def.port}/100b`, connections: 64, durationSec: warmupSec }, dir);
  }
  if (scenarioWarmupSec > 0) {
    for (const sc of scenarios) {
      if (sc.path === "/100b" && sc.method === undefined) continue; // the warm-up above
      for (const r of running.filter((r) => sc.variants || !r.def.optional)) {
        log(`warm-up ${r.def.name} on ${sc.id} (${scenarioWarmupSec} s)`);
        await runLoad(tool, {
          url: `http://127.0.0.1:${r.def.port}${sc.path}`,
          method: sc.method,
          bodySize: sc.bodySize,
          connections: sc.connections,
          durationSec: scenarioWarmupSec,
        }, dir);
      }
    }
  }

  const records: RunRecord[] = [];
  const total = rounds * scenarios.reduce((n, s) => n + running.filter((r) => s.variants || !r.def.optional).length, 0);
  let done = 0;
  for (let round = 0; round < rounds; round++) {
    for (const [si, sc] of scenarios.entries()) {
      const these = running.filter((r) => sc.variants || !r.def.optional);
      const shift = (round + si) % these.length; // rotate the order every round and scenario
      for (const r of [...these.slice(shift), ...these.slice(0, shift)]) {
        const a0 = await backends.accepts();
        const res = await runLoad(tool, {
          url: `http://127.0.0.1:${r.def.port}${sc.path}`,
          method: sc.method,
          bodySize: sc.bodySize,
          connections: sc.connections,
          durationSec,
        }, dir);
        const upstreamConns = (await backends.accepts()) - a0;
        records.push({ ...res, scenario: sc.id, proxy: r.def.name, round, upstreamConns });
        done++;
        log(
          `[${done}/${total}] round ${round + 1} ${sc.id} ${r.def.name}: ${Math.round(res.rps)} req/s, p50 ${
            res.p50Ms.toFixed(2)
          } ms, p99 ${res.p99Ms.toFixed(2)} ms, errors ${res.errors}, upstream conns ${upstreamConns}`,
        );
      }
    }
  }

  await sleep(1000);
  for (const r of running) summaries.get(r.def.name)!.rssAfterLoadMB = treeRss(r.proc.pid) / MB;
  if (idleConns > 0) { for (const r of running) await measureIdleConns(r, summaries.get(r.def.name)!); }

  const cells = aggregate(records, scenarios, running.map((r) => r.def.name));
  const sums = running.map((r) => summaries.get(r.def.name)!);
  const accessLogs = Object.fromEntries(running.map((r) => [r.def.name, existsSync(r.accessLog) ? statSync(r.accessLog).size : 0]));

  const report: string[] = [];
  const print = (line: string) => {
    report.push(line);
    console.log(line);
  };
  print(
    `\nFulcrum benchmark — ${
      new Date().toISOString()
    } — ${navigator.hardwareConcurrency} cores, load generator ${tool}, backends ${backends.kind}, ${rounds} run(s) × ${durationSec} s (median of runs)\n`,
  );
  print(formatCells(cells));
  const byBytes = scenarios.filter((s) => s.byBytes).map((s) => s.id);
  if (byBytes.length)
    print(
      `(x nginx is the ratio of bytes/s for ${
        byBytes.join(", ")
      }, of req/s elsewhere; upstream conns: most opened in one run, and × client connections)`,
    );
  print("\n" + formatSummaries(sums));
  print(`\naccess log bytes written: ${Object.entries(accessLogs).map(([k, v]) => `${k} ${(v / MB).toFixed(1)} MiB`).join(", ")}`);
  if (otlp) print(`OTLP export requests received: ${otlp.requests()}`);
  const skipped = wanted.filter((p) => !running.some((r) => r.def === p)).map((p) => p.name);
  if (skipped.length) print(`skipped: ${skipped.join(", ")}`);

  mkdirSync(outDir, { recursive: true });
  const json = {
    date: new Date().toISOString(),
    mode: quick ? "quick" : "full",
    rounds,
    durationSec,
    tool,
    machine: { cores: navigator.hardwareConcurrency, bun: bunVersion, kernel: readFileSync("/proc/sys/kernel/osrelease", "utf8").trim() },
    versions: peerVersions(),
    backends: backends.kind,
    skipped,
    cells,
    proxies: sums,
    accessLogBytes: accessLogs,
    runs: records,
  };
  writeFileSync(join(outDir, "latest.json"), JSON.stringify(json, null, 2) + "\n");
  writeFileSync(join(outDir, "latest.txt"), report.join("\n").trimStart() + "\n");
  writeFileSync(
    join(outDir, "latest.svg"),
    svgChart(
      cells,
      `Fulcrum vs peers — ${json.date.slice(0, 10)}, ${json.machine.cores} cores, ${tool}`,
      new Set(scenarios.filter((s) => s.byBytes).map((s) => s.id)),
    ),
  );
  console.log(`\nwrote ${join(outDir, "latest.json")}, latest.svg and latest.txt`);
  if (flag("--save")) {
    // The tracked copies the README and docs/performance.md show, and the table as a dated data file.
    mkdirSync(resultsDir, { recursive: true });
    for (const f of ["latest.json", "latest.svg"]) copyFileSync(join(outDir, f), join(resultsDir, f));
    const stamp = `${json.date.slice(0, 10)}T${json.date.slice(11, 16).replace(":", "")}`;
    const saved = join(resultsDir, `${quick ? "quick" : "full"}-${stamp}.txt`);
    copyFileSync(join(outDir, "latest.txt"), saved);
    console.log(`saved to ${resultsDir}: latest.json, latest.svg, ${saved.slice(resultsDir.length + 1)}`);
  }
}

/** RSS of the proxy with N idle client connections parked on it (then released). */
async function measureIdleConns(r: Running, s: ProxySummary): Promise<void> {
  const out = join(dir, `idle-${r.def.name}.out`);
  writeFileSync(out, "");
  const p = spawn(`idle-${r.def.name}`, [
    process.execPath,
    join(import.meta.dir, "lib", "idle-conns.ts"),
    "--port",
    String(r.def.port),
    "--count",
    String(idleConns),
    "--hold",
    "30",
  ], { stdout: out, raiseNofile: true });
  const lines = async (n: number, ms: number) => {
    for (const end = performance.now() + ms; performance.now() < end; await sleep(100)) {
      const ls = readFileSync(out, "utf8").split("\n").filter(Boolean);
      if (ls.length >= n) return ls.map((l) => JSON.parse(l));
    }
    return undefined;
  };
  try {
    const opened = await lines(1, 25_000);
    if (!opened) {
      log(`idle connections to ${r.def.name}: timed out opening`);
      return;
    }
    await sleep(1500); // let the proxy accept the backlog and settle
    s.rssIdleConnsMB = treeRss(r.proc.pid) / MB;
    const held = await lines(2, 5000);
    s.idleConns = { requested: idleConns, open: opened[0].open, held: held?.[1]?.stillOpen ?? -1 };
    log(
      `${r.def.name}: ${opened[0].open}/${idleConns} idle connections open in ${opened[0].ms} ms, RSS ${
        s.rssIdleConnsMB.toFixed(1)
      } MB, still open after 2 s: ${s.idleConns.held}`,
    );
  } finally {
    await stop(p);
    await sleep(500); // let the proxy see the closes before the next one is measured
  }
}

function peerVersions(): Record<string, string> {
  const v: Record<string, string> = {};
  // By the path `which` found (nginx and HAProxy are in /usr/sbin, off a user's PATH on Debian).
  const run = (bin: string, arg: string) => {
    const path = which(bin);
    if (path === undefined) return undefined;
    const r = Bun.spawnSync([path, arg]);
    return (r.stdout.toString() + r.stderr.toString()).split("\n")[0]!.trim();
  };
  const nginx = run("nginx", "-v"), haproxy = run("haproxy", "-v"), wrk = run("wrk", "--version");
  if (nginx !== undefined) v.nginx = nginx;
  if (haproxy !== undefined) v.haproxy = haproxy;
  if (wrk !== undefined) v.wrk = wrk.slice(0, 40);
  return v;
}

let code = 0;
try {
  await main();
} catch (e) {
  if (!isInterrupted()) console.error(`bench failed: ${(e as Error).stack ?? e}`);
  code = 1;
} finally {
  await stopAll(); // also removes the work dir, once the proxies writing into it have stopped
  if (flag("--keep-tmp")) log(`kept ${dir}`);
}
process.exit(code);

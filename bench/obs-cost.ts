// The cost of observability on the hot path, measured so that a busy machine does not hide it:
// one Fulcrum variant runs at a time (interleaved over rounds), and besides requests/s we read
// the Fulcrum process's own CPU time (utime + stime from /proc) and divide by the requests it
// served. CPU µs per request is much steadier than req/s when other work shares the cores.
//
//   bun bench/obs-cost.ts [--runs 5] [--duration 5] [--warmup 2] [--connections 64] [--variants a,b,...] [--resident]
// (the first variant is the baseline). A variant `NAME@DIR` runs NAME from the checkout in DIR:
// `--variants fulcrum,fulcrum-trace-0.01@/work/main,fulcrum-trace-0.01` compares a change with
// the code before it in the same interleaved rounds. By default each round starts every variant afresh; with
// `--resident` each is started and warmed up once and the rounds alternate between the running
// processes: the steady state of a long-running proxy, without each process's first seconds
// (JIT compilation, which with tracing at 0.01 made fresh rounds bimodal).
// Each round runs every variant back to back, so besides the medians of each variant it reports
// the median over rounds of the ratio to the baseline in the same round: when the load of other
// work on the machine drifts, that ratio holds better than the two medians apart.
//
// Variants (bench/lib/proxies.ts): fulcrum-noadmin (no metrics, no tracing), fulcrum (metrics
// on: the default), fulcrum-trace-0.01 and fulcrum-trace-1.0 (metrics + tracing to a local sink,
// the default http/protobuf), fulcrum-trace-1.0-json (http/json).
import { join } from "node:path";
import { startBackends } from "./lib/backends.ts";
import { pickTool, runLoad } from "./lib/loadgen.ts";
import { cpuSeconds, log, stop, stopAll, workDir } from "./lib/proc.ts";
import { fulcrumAt, PROXIES, startOtlpSink, startProxy } from "./lib/proxies.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const runs = arg("--runs", 5);
const duration = arg("--duration", 5);
// Load before measuring. The JIT keeps compiling for seconds (the request path's big functions,
// recompiled when a rare branch such as a sampled request is first taken): a short warm-up counts
// that one-time cost per request.
const warmup = arg("--warmup", 2);
const connections = arg("--connections", 64);
const resident = process.argv.includes("--resident");
const only = process.argv.indexOf("--variants");
const VARIANTS = only > 0
  ? process.argv[only + 1]!.split(",")
  : ["fulcrum-noadmin", "fulcrum", "fulcrum-trace-0.01", "fulcrum-trace-1.0", "fulcrum-trace-1.0-json"];

// Ports of `NAME@DIR` variants: 18600, 18610, … (+ BENCH_PORT_OFFSET), admin 1000 above each.
const defs = new Map(
  VARIANTS.map((
    v,
    i,
  ) => [
    v,
    v.includes("@") ? fulcrumAt(v, 18600 + Number(process.env.BENCH_PORT_OFFSET ?? 0) + 10 * i) : PROXIES.find((p) => p.name === v),
  ]),
);
for (const [v, d] of defs) if (d === undefined) throw new Error(`unknown variant ${v}`);
const def = (name: string) => defs.get(name)!;

const dir = workDir("fulcrum-obs-cost-");
const tool = pickTool();
const backends = await startBackends({ count: 3, basePort: 19001, dir: join(dir, "backends") });
const sink = await startOtlpSink();
const results = new Map<string, { rps: number; cpuUs: number }[]>(VARIANTS.map((v) => [v, []]));
type Started = Awaited<ReturnType<typeof startProxy>>;
const running = new Map<string, Started>();
try {
  if (resident) {
    for (const name of VARIANTS) {
      const r = await startProxy(def(name), { dir, backendUrls: backends.urls });
      running.set(name, r);
      await runLoad(tool, { url: `http://127.0.0.1:${def(name).port}/100b`, connections, durationSec: warmup }, dir);
    }
  }
  for (let round = 0; round < runs; round++) {
    const order = VARIANTS.map((_, i) => VARIANTS[(i + round) % VARIANTS.length]!);
    for (const name of order) {
      const url = `http://127.0.0.1:${def(name).port}/100b`;
      let r = running.get(name);
      if (r === undefined) {
        r = await startProxy(def(name), { dir, backendUrls: backends.urls });
        await runLoad(tool, { url, connections, durationSec: warmup }, dir); // warm-up (JIT, connections)
      } else {
        await runLoad(tool, { url, connections, durationSec: 1 }, dir); // connections back up after the others' turns
      }
      const cpu0 = cpuSeconds(r.proc.pid);
      const res = await runLoad(tool, { url, connections, durationSec: duration }, dir);
      const cpuUs = ((cpuSeconds(r.proc.pid) - cpu0) * 1e6) / res.requests;
      results.get(name)!.push({ rps: res.rps, cpuUs });
      log(`round ${round + 1} ${name}: ${Math.round(res.rps)} req/s, ${cpuUs.toFixed(1)} µs CPU/request, errors ${res.errors}`);
      if (!resident) await stop(r.proc);
    }
  }
} finally {
  await stopAll(); // and removes the work dir
  sink.stop();
  await backends.stop();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const base = results.get(VARIANTS[0]!)!;
const how = resident
  ? `processes started once and warmed up ${warmup} s, then ${runs} alternating rounds × ${duration} s`
  : `${runs} rounds × ${duration} s, each in a fresh process after ${warmup} s of warm-up`;
console.log(`\n${tool}, ${connections} connections, GET 100 B, ${how}, median of rounds; OTLP requests ${sink.requests()}`);
console.log("variant                  req/s   CPU µs/req   vs off     per-round vs off: req/s   CPU (min … max)");
const pct = (x: number) => `${x >= 1 ? "+" : "−"}${Math.abs((x - 1) * 100).toFixed(0)}%`;
for (const [name, rs] of results) {
  const cpu = median(rs.map((r) => r.cpuUs));
  const delta = cpu - median(base.map((r) => r.cpuUs));
  const rpsRatio = median(rs.map((r, i) => r.rps / base[i]!.rps));
  const cpuRatios = rs.map((r, i) => r.cpuUs / base[i]!.cpuUs);
  const cpuRatio = median(cpuRatios);
  const vs = name === VARIANTS[0] ? "-".padEnd(10) : `${delta >= 0 ? "+" : ""}${delta.toFixed(1)} µs`.padEnd(10);
  const spread = `(${pct(Math.min(...cpuRatios))} … ${pct(Math.max(...cpuRatios))})`;
  const perRound = name === VARIANTS[0] ? "" : `${pct(rpsRatio).padStart(22)} ${pct(cpuRatio).padStart(6)} ${spread}`;
  console.log(
    `${name.padEnd(24)} ${String(Math.round(median(rs.map((r) => r.rps)))).padStart(6)} ${cpu.toFixed(1).padStart(12)}   ${vs}${perRound}`,
  );
}

// How long tracing's cost takes to settle in a fresh process: one Fulcrum process (`workers: 1`)
// per variant, under wrk from its start, its CPU per request read window by window, and the
// share of it spent by JSC's compiler threads (`/proc/PID/task/*`, threads named `JIT…` or
// `FTL…`): the JIT compiling code paths that only sampled requests take, or compiling again
// after its code was thrown away.
//
//   bun bench/obs-settle.ts [--windows 12] [--window 5] [--connections 64] [--variants fulcrum-1w,fulcrum-trace-0.01,...]
// Variants are names of bench/lib/proxies.ts, or NAME@DIR for a checkout in DIR; each runs with
// `workers: 1` (BENCH_PEER_WORKERS=1), one after the other.
process.env.BENCH_PEER_WORKERS ??= "1";
const { readdirSync, readFileSync } = await import("node:fs");
const { join } = await import("node:path");
const { startBackends } = await import("./lib/backends.ts");
const { pickTool, runLoad } = await import("./lib/loadgen.ts");
const { cpuSeconds, log, stop, stopAll, workDir } = await import("./lib/proc.ts");
const { fulcrumAt, PROXIES, startOtlpSink, startProxy } = await import("./lib/proxies.ts");

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const windows = Number(arg("--windows", "12"));
const window = Number(arg("--window", "5"));
const connections = Number(arg("--connections", "64"));
const variants = arg("--variants", "fulcrum-1w,fulcrum-trace-0.01").split(",");

/** CPU seconds of the process's compiler threads. */
function jitSeconds(pid: number): number {
  let s = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (!/JIT|FTL|DFG/i.test(comm)) continue;
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      s += (Number(f[11]) + Number(f[12])) / 100;
    } catch { /* the thread ended */ }
  }
  return s;
}

const dir = workDir("fulcrum-obs-settle-");
const tool = pickTool();
const backends = await startBackends({ count: 3, basePort: 19041, dir: join(dir, "backends") });
const sink = await startOtlpSink();
const rows = new Map<string, { cpuUs: number; jitUs: number }[]>();
try {
  for (const [i, v] of variants.entries()) {
    const def = v.includes("@")
      ? fulcrumAt(v, 18650 + Number(process.env.BENCH_PORT_OFFSET ?? 0) + 10 * i)
      : PROXIES.find((p) => p.name === v);
    if (def === undefined) throw new Error(`unknown variant ${v}`);
    const r = await startProxy(def, { dir, backendUrls: backends.urls });
    const pid = r.proc.pid;
    const out: { cpuUs: number; jitUs: number }[] = [];
    for (let w = 0; w < windows; w++) {
      const c0 = cpuSeconds(pid);
      const j0 = jitSeconds(pid);
      const res = await runLoad(tool, { url: `http://127.0.0.1:${def.port}/100b`, connections, durationSec: window }, dir);
      out.push({ cpuUs: ((cpuSeconds(pid) - c0) * 1e6) / res.requests, jitUs: ((jitSeconds(pid) - j0) * 1e6) / res.requests });
    }
    rows.set(v, out);
    log(`${v}: ${out.map((o) => o.cpuUs.toFixed(1)).join(" ")}`);
    await stop(r.proc);
  }
} finally {
  await stopAll();
  sink.stop();
  await backends.stop();
}
console.log(
  `\nCPU µs per request (of which the JIT threads'), ${window} s windows from the process's start, ${tool} at ${connections} connections, GET 100 B`,
);
console.log(["variant".padEnd(36), ...Array.from({ length: windows }, (_, w) => `${(w + 1) * window}s`.padStart(11))].join(""));
for (const [v, out] of rows) {
  console.log([v.padEnd(36), ...out.map((o) => `${o.cpuUs.toFixed(1)} (${o.jitUs.toFixed(1)})`.padStart(11))].join(""));
}

export {};

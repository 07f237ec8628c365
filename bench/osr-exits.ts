// Where JSC throws compiled code away: one Fulcrum process (`workers: 1`, access log on) per
// tracing setting, under wrk for a while, with JSC's OSR-exit log on; the `Speculation failure in
// NAME` lines counted by function. A function whose count reaches ~100 is recompiled (and each
// recompilation costs JIT-thread CPU); a site that exits only with sampling on is a value or
// object shape that sampled and unsampled requests do not share.
//
//   bun bench/osr-exits.ts [--duration 20] [--connections 64] [--variants off,0,0.01,1.0] [--top 20] [--keep DIR] [--root DIR]
//
// `--root DIR` runs the main.ts of another checkout (a before/after of one change).
// `--keep DIR` copies each variant's log (osr-VARIANT.stderr) there: each exit's line says the
// bytecode index and the kind (BadType, BadCache…) of the speculation that failed.
// The logging itself slows the proxy (6–14k req/s), so read counts, not throughput.
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import YAML from "yaml";
import { startBackends } from "./lib/backends.ts";
import { pickTool, runLoad } from "./lib/loadgen.ts";
import { log, spawn, stop, stopAll, waitFor200, workDir } from "./lib/proc.ts";
import { OTLP_PORT, startOtlpSink } from "./lib/proxies.ts";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const duration = Number(arg("--duration", "20"));
const connections = Number(arg("--connections", "64"));
const top = Number(arg("--top", "20"));
const variants = arg("--variants", "off,0,0.01,1.0").split(",");
const keep = arg("--keep", "");
// More JSC options, e.g. `--env BUN_JSC_dumpGeneratedBytecodes=1` to read what an exit's bc# is.
const extraEnv = Object.fromEntries(process.argv.flatMap((a, i) => (a === "--env" ? [process.argv[i + 1]!.split("=", 2)] : [])));
const root = arg("--root", join(import.meta.dir, ".."));
const port = 18070 + Number(process.env.BENCH_PORT_OFFSET ?? 0);

const dir = workDir("fulcrum-osr-");
const tool = pickTool();
const backends = await startBackends({ count: 3, basePort: 19021, dir: join(dir, "backends") });
const sink = await startOtlpSink();
const table = new Map<string, Map<string, number>>();
try {
  for (const v of variants) {
    const cfg: Record<string, unknown> = {
      workers: 1,
      listen: `127.0.0.1:${port}`,
      admin: { listen: `127.0.0.1:${port + 1000}` },
      pools: { bench: { strategy: "round-robin", backends: backends.urls.map((url) => ({ url })) } },
      routes: [{ match: { path: "/" }, pool: "bench" }],
      log: { level: "warning", access_log: true, access_log_file: join(dir, `access-${v}.log`) },
    };
    if (v !== "off") {
      cfg.telemetry = { traces: { endpoint: `http://127.0.0.1:${OTLP_PORT}/v1/traces`, sample_ratio: Number(v) } };
    }
    const cfgPath = join(dir, `osr-${v}.yaml`);
    writeFileSync(cfgPath, YAML.stringify(cfg));
    const stderr = join(dir, `osr-${v}.stderr`);
    const proc = spawn(`fulcrum-${v}`, [process.execPath, "main.ts", "run", "--config", cfgPath], {
      cwd: root,
      stdout: join(dir, `osr-${v}.stdout`),
      stderr,
      env: { BUN_JSC_printEachOSRExit: "1", BUN_JSC_verboseOSR: "1", ...extraEnv },
    });
    const url = `http://127.0.0.1:${port}/100b`;
    await waitFor200(url);
    const res = await runLoad(tool, { url, connections, durationSec: duration }, dir);
    await stop(proc);
    const counts = new Map<string, number>();
    for (const f of [stderr, join(dir, `osr-${v}.stdout`)]) {
      for (const m of readFileSync(f, "utf8").matchAll(/Speculation failure in ([^#\s]+)/g)) {
        counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
      }
    }
    table.set(v, counts);
    if (keep) copyFileSync(stderr, join(keep, `osr-${v}.stderr`));
    log(`${v}: ${Math.round(res.rps)} req/s, ${res.requests} requests, ${[...counts.values()].reduce((a, b) => a + b, 0)} exits`);
  }
  const names = new Set<string>();
  for (const c of table.values()) {
    for (const [n, k] of c) if (k >= 5) names.add(n);
  }
  const most = (n: string) => Math.max(...variants.map((v) => table.get(v)!.get(n) ?? 0));
  const rows = [...names].sort((a, b) => most(b) - most(a) || a.localeCompare(b)).slice(0, top);
  console.log(
    `\nOSR exits by function (≥ 5 in some variant), ${duration} s of ${tool} at ${connections} connections, GET /100b, workers: 1`,
  );
  console.log(["function".padEnd(28), ...variants.map((v) => (v === "off" ? "tracing off" : `ratio ${v}`).padStart(12))].join(""));
  for (const n of rows) console.log([n.padEnd(28), ...variants.map((v) => String(table.get(v)!.get(n) ?? "—").padStart(12))].join(""));
} finally {
  await stopAll();
  sink.stop();
  await backends.stop();
}

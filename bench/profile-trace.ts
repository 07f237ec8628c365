// One Fulcrum process (`workers: 1`, access log and metrics on, tracing at RATIO to a local OTLP
// sink) under wrk, profiled by JSC's sampling profiler after a warm-up: where a traced request's
// time goes.
//   bun bench/profile-trace.ts [--ratio 1.0] [--root DIR] [--warmup 10] [--secs 5] [--out /tmp/fulcrum-trace-profile]
// then `bun bench/profile-report.ts OUT.PID.0.json`. The process runs with bench/profile-hook.ts
// preloaded and gets SIGUSR2 after the warm-up.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import YAML from "yaml";
import { startBackends } from "./lib/backends.ts";
import { pickTool, runLoad } from "./lib/loadgen.ts";
import { log, spawn, stop, stopAll, waitFor, waitFor200, workDir } from "./lib/proc.ts";
import { OTLP_PORT, startOtlpSink } from "./lib/proxies.ts";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const ratio = Number(arg("--ratio", "1.0"));
const root = arg("--root", join(import.meta.dir, ".."));
const warmup = Number(arg("--warmup", "10"));
const secs = Number(arg("--secs", "5"));
const out = arg("--out", "/tmp/fulcrum-trace-profile");
const port = 18075 + Number(process.env.BENCH_PORT_OFFSET ?? 0);

const dir = workDir("fulcrum-trace-profile-");
const tool = pickTool();
const backends = await startBackends({ count: 3, basePort: 19031, dir: join(dir, "backends") });
const sink = await startOtlpSink();
try {
  const cfg = {
    workers: 1,
    listen: `127.0.0.1:${port}`,
    admin: { listen: `127.0.0.1:${port + 1000}` },
    pools: { bench: { strategy: "round-robin", backends: backends.urls.map((url) => ({ url })) } },
    routes: [{ match: { path: "/" }, pool: "bench" }],
    log: { level: "warning", access_log: true, access_log_file: join(dir, "access.log") },
    telemetry: { traces: { endpoint: `http://127.0.0.1:${OTLP_PORT}/v1/traces`, sample_ratio: ratio } },
  };
  const cfgPath = join(dir, "fulcrum.yaml");
  writeFileSync(cfgPath, YAML.stringify(cfg));
  const hook = join(import.meta.dir, "profile-hook.ts");
  const proc = spawn("fulcrum", [process.execPath, "--preload", hook, "main.ts", "run", "--config", cfgPath], {
    cwd: root,
    stdout: join(dir, "fulcrum.stdout"),
    stderr: join(dir, "fulcrum.stderr"),
    env: { PROFILE_SECS: String(secs), PROFILE_OUT: out },
  });
  const url = `http://127.0.0.1:${port}/100b`;
  await waitFor200(url);
  await runLoad(tool, { url, connections: 64, durationSec: warmup }, dir);
  const load = runLoad(tool, { url, connections: 64, durationSec: secs + 2 }, dir);
  await new Promise((r) => setTimeout(r, 500));
  process.kill(proc.pid, "SIGUSR2");
  const res = await load;
  const file = `${out}.${proc.pid}.0.json`;
  await waitFor(async () => (existsSync(file) ? true : undefined), 20_000, 100);
  log(`${Math.round(res.rps)} req/s while profiled; ${file}`);
  await stop(proc);
} finally {
  await stopAll();
  sink.stop();
  await backends.stop();
}

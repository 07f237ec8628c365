// CPU per request of Fulcrum against a floor and a peer, one process each, so that a shared,
// noisy machine still gives comparable figures: every rung runs at once (started and warmed
// once), rounds interleave them, and each round reads the process's own CPU time from /proc.
//
//   bun bench/cpu-ladder.ts [--runs 8] [--duration 2] [--path /100b] [--connections 64]
//
// Rungs: nginx (one worker, its access log on, as in the bench), the calibration proxy
// (bench/lib/calibration-proxy.ts: raw TCP both sides and nothing else: the floor for a proxy on
// Bun), fulcrum-bare (one process, no access log, no metrics), fulcrum-1w (one process, access
// log to a file and metrics: the defaults). All over the same three backends, wrk at 64
// connections with one thread. Prints each rung's CPU µs per request (median and spread).
process.env.BENCH_PEER_WORKERS ??= "1";
const { mkdtempSync } = await import("node:fs");
const { tmpdir } = await import("node:os");
const { join } = await import("node:path");
const { startBackends } = await import("./lib/backends.ts");
const { pickTool, runLoad } = await import("./lib/loadgen.ts");
const { cpuSeconds, log, stopAll } = await import("./lib/proc.ts");
const { PROXIES, startProxy } = await import("./lib/proxies.ts");
type ProxyDef = (typeof PROXIES)[number];

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const runs = Number(arg("--runs", "8"));
const duration = Number(arg("--duration", "2"));
const path = arg("--path", "/100b");
const connections = Number(arg("--connections", "64"));

const calibration: ProxyDef = {
  name: "calibration", port: 18099,
  unavailable: () => undefined,
  prepare({ dir, backendUrls }) {
    return {
      cmd: ["/usr/bin/env", `CAL_PORT=18099`, `CAL_BACKENDS=${backendUrls.join(",")}`, process.execPath, join(import.meta.dir, "lib", "calibration-proxy.ts")],
      stderr: join(dir, "calibration.stderr"), accessLog: "",
    };
  },
};

const dir = mkdtempSync(join(tmpdir(), "fulcrum-cpu-ladder-"));
const tool = pickTool("wrk");
const backends = await startBackends({ count: 3, basePort: 19001, dir: join(dir, "backends") });
const rungs = [PROXIES.find((p) => p.name === "nginx")!, calibration, PROXIES.find((p) => p.name === "fulcrum-bare")!, PROXIES.find((p) => p.name === "fulcrum-1w")!]
  .filter((d) => {
    const why = d.unavailable();
    if (why) log(`skipping ${d.name}: ${why}`);
    return !why;
  });
const results = new Map<string, number[]>();
try {
  const running = [];
  for (const def of rungs) running.push(await startProxy(def, { dir, backendUrls: backends.urls }));
  for (const r of running) await runLoad(tool, { url: `http://127.0.0.1:${r.def.port}${path}`, connections, durationSec: 2, threads: 1 }, dir);
  for (let round = 0; round < runs; round++) {
    for (let i = 0; i < running.length; i++) {
      const r = running[(i + round) % running.length]!;
      const cpu0 = cpuSeconds(r.proc.pid);
      const res = await runLoad(tool, { url: `http://127.0.0.1:${r.def.port}${path}`, connections, durationSec: duration, threads: 1 }, dir);
      const us = ((cpuSeconds(r.proc.pid) - cpu0) * 1e6) / res.requests;
      (results.get(r.def.name) ?? results.set(r.def.name, []).get(r.def.name)!).push(us);
      log(`round ${round + 1} ${r.def.name}: ${Math.round(res.rps)} req/s, ${us.toFixed(1)} µs CPU/request, errors ${res.errors}`);
    }
  }
} finally {
  await stopAll();
  await backends.stop();
}
console.log(`\n${tool}, ${connections} connections, GET ${path}, ${runs} interleaved rounds × ${duration} s; CPU µs per request of the proxy's processes`);
console.log("rung           median    min    max");
for (const [name, xs] of results) {
  const s = [...xs].sort((a, b) => a - b);
  console.log(`${name.padEnd(14)} ${s[s.length >> 1]!.toFixed(1).padStart(6)} ${s[0]!.toFixed(1).padStart(6)} ${s[s.length - 1]!.toFixed(1).padStart(6)}`);
}

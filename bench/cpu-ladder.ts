// CPU per request of Fulcrum against a floor and a peer, one process each, so that a shared,
// noisy machine still gives comparable figures: every rung runs at once (started and warmed
// once), rounds interleave them, and each round reads the process's own CPU time from /proc.
//
//   bun bench/cpu-ladder.ts [--runs 8] [--duration 2] [--path /100b] [--connections 64] [--rungs a,b,...]
//                           [--post BYTES]   (POST that many bytes to --path, e.g. --path /upload --post 4096)
//                           [--base-port P]  (backends on P..P+2, `NAME@DIR` rungs on P+100, +110…; default 19001)
//
// Rungs: nginx (one worker, its access log on, as in the bench), the calibration proxy
// (bench/lib/calibration-proxy.ts: raw TCP both sides and nothing else: the floor for a proxy on
// Bun), fulcrum-bare (one process, no access log, no metrics), fulcrum-1w (one process, access
// log to a file and metrics: the defaults). All over the same three backends, wrk at 64
// connections with one thread. Prints each rung's CPU µs per request (median and spread), and the
// median over rounds of each rung's ratio to the first rung in the same round (steadier when the
// machine's load drifts). `--rungs` picks other rungs: `calibration` or any name of
// bench/lib/proxies.ts (Fulcrum variants run one process here), e.g. `--rungs fulcrum,fulcrum-plugin-rr`
// for a user strategy plugin against the identical built-in. A rung `NAME@DIR` runs variant NAME
// from the checkout in DIR: `--rungs fulcrum-1w,fulcrum-1w@/work/main` is an A/B of this branch
// against main in the same interleaved rounds. Besides the total, it prints user and system µs.
process.env.BENCH_PEER_WORKERS ??= "1";
const { join } = await import("node:path");
const { startBackends } = await import("./lib/backends.ts");
const { pickTool, runLoad } = await import("./lib/loadgen.ts");
const { cpuSplit, log, stopAll, workDir } = await import("./lib/proc.ts");
const { PROXIES, fulcrumAt, startProxy } = await import("./lib/proxies.ts");
type ProxyDef = (typeof PROXIES)[number];

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const runs = Number(arg("--runs", "8"));
const duration = Number(arg("--duration", "2"));
const path = arg("--path", "/100b");
const connections = Number(arg("--connections", "64"));
const postBytes = Number(arg("--post", "0"));
const basePort = Number(arg("--base-port", "19001"));
const load = postBytes > 0 ? { method: "POST" as const, bodySize: postBytes } : {};

const calibration: ProxyDef = {
  name: "calibration",
  port: 18089,
  unavailable: () => undefined,
  prepare({ dir, backendUrls }) {
    return {
      cmd: [
        "/usr/bin/env",
        `CAL_PORT=18089`,
        `CAL_BACKENDS=${backendUrls.join(",")}`,
        process.execPath,
        join(import.meta.dir, "lib", "calibration-proxy.ts"),
      ],
      stderr: join(dir, "calibration.stderr"),
      accessLog: "",
    };
  },
};

const dir = workDir("fulcrum-cpu-ladder-");
const tool = pickTool("wrk");
const rungNames = arg("--rungs", "nginx,calibration,fulcrum-bare,fulcrum-1w").split(",");
const rungs = rungNames
  .map((name, i) => {
    const def = name === "calibration" ? calibration : PROXIES.find((p) => p.name === name) ?? fulcrumAt(name, basePort + 100 + 10 * i);
    if (!def) throw new Error(`unknown rung ${name}: calibration or one of ${PROXIES.map((p) => p.name).join(", ")}`);
    return def;
  })
  .filter((d) => {
    const why = d.unavailable();
    if (why) log(`skipping ${d.name}: ${why}`);
    return !why;
  });
if (rungs.length === 0) {
  log("no rung can run here");
  process.exit(1);
}
const backends = await startBackends({ count: 3, basePort, dir: join(dir, "backends") });
const results = new Map<string, number[]>();
/** Per rung, per round: user and system µs per request. */
const splits = new Map<string, { user: number; system: number }[]>();
/** p99 latency (ms) per rung and round: a tail that one process shows alone, without the others' load. */
const p99s = new Map<string, number[]>();
/** Per round: rung name → CPU µs per request, for ratios within a round. */
const rounds: Map<string, number>[] = [];
try {
  const running = [];
  for (const def of rungs) running.push(await startProxy(def, { dir, backendUrls: backends.urls }));
  for (const r of running)
    await runLoad(tool, { url: `http://127.0.0.1:${r.def.port}${path}`, connections, durationSec: 2, threads: 1, ...load }, dir);
  for (let round = 0; round < runs; round++) {
    const thisRound = new Map<string, number>();
    rounds.push(thisRound);
    for (let i = 0; i < running.length; i++) {
      const r = running[(i + round) % running.length]!;
      const cpu0 = cpuSplit(r.proc.pid);
      const res = await runLoad(
        tool,
        { url: `http://127.0.0.1:${r.def.port}${path}`, connections, durationSec: duration, threads: 1, ...load },
        dir,
      );
      const cpu1 = cpuSplit(r.proc.pid);
      const split = { user: ((cpu1.user - cpu0.user) * 1e6) / res.requests, system: ((cpu1.system - cpu0.system) * 1e6) / res.requests };
      (splits.get(r.def.name) ?? splits.set(r.def.name, []).get(r.def.name)!).push(split);
      const us = split.user + split.system;
      (results.get(r.def.name) ?? results.set(r.def.name, []).get(r.def.name)!).push(us);
      thisRound.set(r.def.name, us);
      (p99s.get(r.def.name) ?? p99s.set(r.def.name, []).get(r.def.name)!).push(res.p99Ms);
      log(
        `round ${round + 1} ${r.def.name}: ${Math.round(res.rps)} req/s, ${us.toFixed(1)} µs CPU/request, p99 ${
          res.p99Ms.toFixed(2)
        } ms, errors ${res.errors}`,
      );
    }
  }
} finally {
  await stopAll(); // and removes the work dir
  await backends.stop();
}
console.log(
  `\n${tool}, ${connections} connections, ${
    postBytes > 0 ? `POST ${postBytes} B to` : "GET"
  } ${path}, ${runs} interleaved rounds × ${duration} s; CPU µs per request of the proxy's processes`,
);
const first = rungs[0]!.name;
console.log(
  `rung                    median    min    max   user    sys   p99 ms (median)   vs ${first} in the same round: median (min … max)`,
);
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
for (const [name, xs] of results) {
  const s = sorted(xs);
  const ratios = sorted(rounds.filter((r) => r.has(name) && r.has(first)).map((r) => r.get(name)! / r.get(first)!));
  const pct = (x: number) => `${x >= 1 ? "+" : "−"}${Math.abs((x - 1) * 100).toFixed(1)}%`;
  const vs = name === first || ratios.length === 0
    ? ""
    : `${pct(ratios[ratios.length >> 1]!)} (${pct(ratios[0]!)} … ${pct(ratios[ratios.length - 1]!)})`;
  const p99 = sorted(p99s.get(name) ?? []);
  const user = sorted((splits.get(name) ?? []).map((x) => x.user));
  const sys = sorted((splits.get(name) ?? []).map((x) => x.system));
  const mid = (xs: number[]) => (xs[xs.length >> 1] ?? NaN).toFixed(1).padStart(6);
  console.log(
    `${name.padEnd(22)} ${s[s.length >> 1]!.toFixed(1).padStart(6)} ${s[0]!.toFixed(1).padStart(6)} ${
      s[s.length - 1]!.toFixed(1).padStart(6)
    } ${mid(user)} ${mid(sys)}   ${(p99[p99.length >> 1] ?? NaN).toFixed(2).padStart(14)}   ${vs}`,
  );
}

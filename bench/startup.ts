/**
 * Start-up time to the first proxied response and idle RSS, for each way to run Fulcrum
 * (the compiled binary, `bun main.ts` with one process and with 2 workers, `deno run`) beside
 * nginx, HAProxy and a bare Bun proxy (`Bun.serve` + `fetch`, the floor for a proxy on Bun):
 *   npm run bench:startup [-- --runs 10] [-- --only bun,nginx] [-- --root DIR] [-- --no-mem]
 * --root DIR adds each Fulcrum variant run from another checkout DIR (its own compile.sh for the
 * binary), labelled "@other", and the runs alternate between the variants (run 1 of each, then
 * run 2 of each...), so an A/B comparison sees the same machine load. --no-mem skips the memory
 * reads (and the 3 s wait after each start).
 * Fulcrum runs its defaults (admin listener and metrics on, access log to a file); start-up is
 * timed from spawn to the first 200 through the proxy, beside the CPU time the process tree had
 * used by then (every thread, from /proc schedstat: steadier than wall time on a shared machine).
 * Idle memory is read 1 s and 3 s after that response (anonymous memory still shrinks for a few
 * seconds after start-up as the allocator returns pages), for the whole process tree: summed RSS
 * (counts the pages processes share, such as the Bun executable's, once per process), PSS (shared pages divided among their sharers: what
 * the tree costs, but outsiders sharing the executable, such as this bench's own Bun, lower it),
 * `own` (private pages plus the shared ones once: the tree's cost independent of outsiders; see
 * treeMem) and anonymous memory (heaps). Everything runs on 127.0.0.1 and every process
 * started is stopped by its PID.
 */
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertFree, DENO_RUN_FLAGS, removeWhenDone, sleep, spawn, stop, treeCpuMs, treeMem, which, workDir } from "./lib/proc.ts";
import { PROXIES } from "./lib/proxies.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const arg = (name: string) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined);
const runs = Number(arg("--runs") ?? 10) || 10;
const only = arg("--only")?.split(",");
const other = arg("--root");
const withMem = !process.argv.includes("--no-mem");
const dir = workDir("fulcrum-startup-"); // removed at exit (a compiled binary: ~100 MB)
removeWhenDone(dir);
const backend = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch: () => new Response("ok", { headers: { "x-backend": "b1" } }),
});
const backendUrl = `http://127.0.0.1:${backend.port}`;
const PORT = 18_700;

function fulcrumConfig(name: string, workers: number): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `listen: 127.0.0.1:${PORT}\nworkers: ${workers}\nadmin: { listen: 127.0.0.1:${PORT + 1} }\n` +
      `pools:\n  web: { backends: ["${backendUrl}"] }\n` +
      `log: { level: warning, access_log: true, access_log_file: ${join(dir, `${name}-access.log`)} }\n`,
  );
  return file;
}

const bin = join(dir, "fulcrum");
const denoBin = join(ROOT, "node_modules", ".bin", "deno");
const bareProxy = join(dir, "bare-bun.ts");
writeFileSync(
  bareProxy,
  `Bun.serve({ hostname: "127.0.0.1", port: ${PORT}, fetch: (r) => fetch("${backendUrl}" + new URL(r.url).pathname) });\n`,
);
const peer = (name: string) => {
  const def = PROXIES.find((p) => p.name === name)!;
  return { port: def.port, cmd: () => (def.unavailable() ? undefined : def.prepare({ dir, backendUrls: [backendUrl] }).cmd) };
};

interface Variant {
  name: string;
  port?: number;
  cwd?: string;
  cmd: () => string[] | undefined;
}
const otherBin = join(dir, "fulcrum-other");
const fulcrumVariants: Variant[] = [
  { name: "compiled binary", cmd: () => [bin, "run", "--config", fulcrumConfig("bin", 1)] },
  { name: "bun main.ts", cmd: () => [process.execPath, "main.ts", "run", "--config", fulcrumConfig("bun", 1)] },
  { name: "bun, 2 workers", cmd: () => [process.execPath, "main.ts", "run", "--config", fulcrumConfig("bun2", 2)] },
  {
    name: "deno run",
    cmd: () => [
      denoBin,
      "run",
      ...DENO_RUN_FLAGS,
      "main.ts",
      "run",
      "--config",
      fulcrumConfig("deno", 1),
    ],
  },
];
const variants: Variant[] = [
  ...fulcrumVariants,
  ...(other
    ? fulcrumVariants.map((v) => ({
      ...v,
      name: `${v.name} @other`,
      cwd: other,
      cmd: () => v.cmd()?.map((a) => (a === bin ? otherBin : a)),
    }))
    : []),
  { name: "nginx", ...peer("nginx") },
  { name: "haproxy", ...peer("haproxy") },
  { name: "bare Bun proxy", cmd: () => [process.execPath, bareProxy] },
].filter((v) => !only || only.some((o) => v.name.includes(o)));

for (const [root, out] of [[ROOT, bin], [other, otherBin]] as const) {
  if (!root || !variants.some((v) => v.name.startsWith("compiled binary"))) continue;
  const build = Bun.spawnSync(["./compile.sh", "--outfile", out], { cwd: root });
  if (build.exitCode !== 0) throw new Error(build.stderr.toString());
}

type Mem = ReturnType<typeof treeMem>;
const NO_MEM: Mem = { rss: NaN, pss: NaN, own: NaN, anon: NaN };
async function once(name: string, cmd: string[], port: number, cwd = ROOT): Promise<{ ms: number; cpu: number; at1: Mem; at3: Mem }> {
  await assertFree([port]);
  const t0 = performance.now();
  const proc = spawn(name, cmd, { cwd, stderr: join(dir, "stderr.txt") });
  try {
    for (;;) {
      if (performance.now() - t0 > 15_000) throw new Error(`${name} did not answer within 15 s`);
      if (proc.exitCode !== null) throw new Error(`${name} exited with code ${proc.exitCode}`);
      try {
        const r = await fetch(`http://127.0.0.1:${port}/`);
        await r.text();
        if (r.status === 200 && r.headers.get("x-backend") === "b1") {
          const ms = performance.now() - t0;
          const cpu = treeCpuMs(proc.pid);
          if (!withMem) return { ms, cpu, at1: NO_MEM, at3: NO_MEM };
          await sleep(1_000);
          const at1 = treeMem(proc.pid);
          await sleep(2_000);
          return { ms, cpu, at1, at3: treeMem(proc.pid) };
        }
      } catch {
        await sleep(2); // polling a port that is not open yet
      }
    }
  } finally {
    await stop(proc);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows: string[] = [];
const W = Math.max(16, ...variants.map((v) => v.name.length));
// Run i of every variant, then run i+1 of every variant: an A/B pair sees the same machine load.
const results = new Map<Variant, { ms: number[]; cpu: number[]; mems: { at1: Mem; at3: Mem }[] }>();
for (let i = 0; i < runs; i++) {
  for (const v of variants) {
    const cmd = v.cmd();
    if (!cmd) continue;
    const r = await once(v.name, cmd, v.port ?? PORT, v.cwd);
    const acc = results.get(v) ?? { ms: [], cpu: [], mems: [] };
    acc.ms.push(r.ms);
    acc.cpu.push(r.cpu);
    acc.mems.push(r);
    results.set(v, acc);
  }
}
for (const v of variants) {
  const r = results.get(v);
  if (!r) {
    rows.push(`${v.name.padEnd(W)} skipped (not installed)`);
    continue;
  }
  const { ms: times, cpu, mems } = r;
  const ms = (xs: number[]) => `${median(xs).toFixed(0).padStart(5)} ${Math.min(...xs).toFixed(0).padStart(5)}`;
  const mib = (at: "at1" | "at3", k: keyof Mem) => (median(mems.map((m) => m[at][k])) / 2 ** 20).toFixed(1).padStart(6);
  rows.push(
    `${v.name.padEnd(W)} ${ms(times)}  ${ms(cpu)}` +
      (withMem ? `   ${mib("at1", "rss")}   ${mib("at3", "rss")} ${mib("at3", "pss")} ${mib("at3", "own")} ${mib("at3", "anon")}` : ""),
  );
}
backend.stop(true);
console.log(
  `start-up to first proxied response and idle memory of the process tree (${runs} runs each, medians, ${
    new Date().toISOString().slice(0, 16)
  }Z, ${process.platform}/${process.arch}, ${navigator.hardwareConcurrency} cores):`,
);
console.log(`  ${"".padEnd(W)} start-up ms  CPU ms to it${withMem ? "   1 s:     3 s after the first response (MiB):" : ""}`);
console.log(
  `  ${"".padEnd(W)} ${"median".padStart(5)} ${"min".padStart(5)}  ${"median".padStart(5)} ${"min".padStart(5)}` +
    (withMem ? `   ${"RSS".padStart(6)}   ${["RSS", "PSS", "own", "anon"].map((h) => h.padStart(6)).join(" ")}` : ""),
);
for (const r of rows) console.log(`  ${r}`);
if (other) console.log(`@other: ${other}`);
if (variants.some((v) => v.name === "compiled binary")) console.log(`binary size: ${(statSync(bin).size / 2 ** 20).toFixed(1)} MiB`);
console.log(
  `(nginx: worker_processes ${which("nginx") ? "auto" : "-"}; HAProxy: nbthread = cores; Fulcrum: admin + metrics + access log on)`,
);

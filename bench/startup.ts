/**
 * Start-up time to the first proxied response and idle RSS, for each way to run Fulcrum
 * (the compiled binary, `bun main.ts` with one process and with 2 workers, `deno run`) beside
 * nginx, HAProxy and a bare Bun proxy (`Bun.serve` + `fetch`, the floor for a proxy on Bun):
 *   npm run bench:startup [-- --runs 10] [-- --only bun,nginx]
 * Fulcrum runs its defaults (admin listener and metrics on, access log to a file); start-up is
 * timed from spawn to the first 200 through the proxy. Idle memory is read 1 s and 3 s after that
 * response (anonymous memory still shrinks for a few seconds after start-up as the allocator
 * returns pages), for the whole process tree: summed RSS (counts the pages processes share, such
 * as the Bun executable's, once per process), PSS (shared pages divided among their sharers: what
 * the tree costs, but outsiders sharing the executable, such as this bench's own Bun, lower it),
 * `own` (private pages plus the shared ones once: the tree's cost independent of outsiders; see
 * treeMem) and anonymous memory (heaps). Everything runs on 127.0.0.1 and every process
 * started is stopped by its PID.
 */
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertFree, DENO_RUN_FLAGS, removeWhenDone, sleep, spawn, stop, treeMem, which, workDir } from "./lib/proc.ts";
import { PROXIES } from "./lib/proxies.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const arg = (name: string) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined);
const runs = Number(arg("--runs") ?? 10) || 10;
const only = arg("--only")?.split(",");
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
  cmd: () => string[] | undefined;
}
const variants: Variant[] = [
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
  { name: "nginx", ...peer("nginx") },
  { name: "haproxy", ...peer("haproxy") },
  { name: "bare Bun proxy", cmd: () => [process.execPath, bareProxy] },
].filter((v) => !only || only.some((o) => v.name.includes(o)));

if (variants.some((v) => v.name === "compiled binary")) {
  const build = Bun.spawnSync(["./compile.sh", "--outfile", bin], { cwd: ROOT });
  if (build.exitCode !== 0) throw new Error(build.stderr.toString());
}

type Mem = ReturnType<typeof treeMem>;
async function once(name: string, cmd: string[], port: number): Promise<{ ms: number; at1: Mem; at3: Mem }> {
  await assertFree([port]);
  const t0 = performance.now();
  const proc = spawn(name, cmd, { cwd: ROOT, stderr: join(dir, "stderr.txt") });
  try {
    for (;;) {
      if (performance.now() - t0 > 15_000) throw new Error(`${name} did not answer within 15 s`);
      if (proc.exitCode !== null) throw new Error(`${name} exited with code ${proc.exitCode}`);
      try {
        const r = await fetch(`http://127.0.0.1:${port}/`);
        await r.text();
        if (r.status === 200 && r.headers.get("x-backend") === "b1") {
          const ms = performance.now() - t0;
          await sleep(1_000);
          const at1 = treeMem(proc.pid);
          await sleep(2_000);
          return { ms, at1, at3: treeMem(proc.pid) };
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
for (const v of variants) {
  const cmd = v.cmd();
  if (!cmd) {
    rows.push(`${v.name.padEnd(16)} skipped (not installed)`);
    continue;
  }
  const times: number[] = [];
  const mems: { at1: Mem; at3: Mem }[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await once(v.name, v.cmd()!, v.port ?? PORT);
    times.push(r.ms);
    mems.push(r);
  }
  const mib = (at: "at1" | "at3", k: keyof Mem) => (median(mems.map((m) => m[at][k])) / 2 ** 20).toFixed(1).padStart(6);
  rows.push(
    `${v.name.padEnd(16)} ${median(times).toFixed(0).padStart(5)} ${Math.min(...times).toFixed(0).padStart(5)}   ${mib("at1", "rss")}   ` +
      `${mib("at3", "rss")} ${mib("at3", "pss")} ${mib("at3", "own")} ${mib("at3", "anon")}`,
  );
}
backend.stop(true);
console.log(
  `start-up to first proxied response and idle memory of the process tree (${runs} runs each, medians, ${
    new Date().toISOString().slice(0, 16)
  }Z, ${process.platform}/${process.arch}, ${navigator.hardwareConcurrency} cores):`,
);
console.log(`  ${"".padEnd(16)} start-up ms    1 s:     3 s after the first response (MiB):`);
console.log(
  `  ${"".padEnd(16)} ${"median".padStart(5)} ${"min".padStart(5)}   ${"RSS".padStart(6)}   ${
    ["RSS", "PSS", "own", "anon"].map((h) => h.padStart(6)).join(" ")
  }`,
);
for (const r of rows) console.log(`  ${r}`);
if (variants.some((v) => v.name === "compiled binary")) console.log(`binary size: ${(statSync(bin).size / 2 ** 20).toFixed(1)} MiB`);
console.log(
  `(nginx: worker_processes ${which("nginx") ? "auto" : "-"}; HAProxy: nbthread = cores; Fulcrum: admin + metrics + access log on)`,
);

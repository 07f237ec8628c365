/**
 * Start-up time to the first proxied response, and binary size, for each way to run Fulcrum:
 * `bun main.ts`, the compiled binary (built here with ./compile.sh) and `deno run`.
 *   npm run bench:startup [-- --runs 10]
 * Everything runs on 127.0.0.1 and every process started is stopped by its PID.
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import { removeWhenDone, workDir } from "./lib/proc.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const runs = Number(process.argv[process.argv.indexOf("--runs") + 1] || 10) || 10;
const dir = workDir("fulcrum-startup-"); // removed at exit (a compiled binary: ~100 MB)
const backend = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
const PORT = 18_700;
const config = join(ROOT, ".tmp", "startup.yaml");
removeWhenDone(config);
await Bun.write(
  config,
  `listen: 127.0.0.1:${PORT}\npools:\n  web: { backends: ["http://127.0.0.1:${backend.port}"] }\nlog: { access_log: false, level: warning }\n`,
);

const bin = join(dir, "fulcrum");
const build = Bun.spawnSync(["./compile.sh", "--outfile", bin], { cwd: ROOT });
if (build.exitCode !== 0) throw new Error(build.stderr.toString());
const denoBin = join(ROOT, "node_modules", ".bin", "deno");

const variants: [string, string[]][] = [
  ["compiled binary", [bin, "run", "--config", config]],
  ["bun main.ts", [process.execPath, "main.ts", "run", "--config", config]],
  ["deno run", [
    denoBin,
    "run",
    "--allow-read=.",
    "--allow-net",
    "--allow-env",
    "--allow-sys=hostname",
    "--unstable-no-legacy-abort",
    "main.ts",
    "run",
    "--config",
    config,
  ]],
];

async function once(cmd: string[]): Promise<number> {
  const t0 = performance.now();
  const proc = Bun.spawn(cmd, { cwd: ROOT, stdout: "ignore", stderr: "ignore" });
  try {
    for (;;) {
      if (performance.now() - t0 > 15_000) throw new Error(`${cmd[0]} did not answer within 15 s`);
      try {
        const r = await fetch(`http://127.0.0.1:${PORT}/`);
        await r.text();
        if (r.status === 200) return performance.now() - t0;
      } catch {
        await Bun.sleep(2); // polling a port that is not open yet
      }
    }
  } finally {
    proc.kill("SIGKILL");
    await proc.exited;
  }
}

const rows: string[] = [];
for (const [name, cmd] of variants) {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push(await once(cmd));
  times.sort((a, b) => a - b);
  rows.push(
    `${name.padEnd(16)} median ${times[Math.floor(times.length / 2)]!.toFixed(0).padStart(5)} ms   min ${
      times[0]!.toFixed(0).padStart(5)
    } ms`,
  );
}
backend.stop(true);
console.log(
  `start-up to first proxied response (${runs} runs each, ${new Date().toISOString().slice(0, 10)}, ${process.platform}/${process.arch}):`,
);
for (const r of rows) console.log(`  ${r}`);
console.log(`binary size: ${(statSync(bin).size / 2 ** 20).toFixed(1)} MiB (${bin})`);

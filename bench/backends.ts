// `npm run backends -- --count 3 --base-port 9001 [--kind auto|nginx|bun] [--duration S]`
// Starts N example backends on 127.0.0.1 (each names itself in `x-backend`; paths /, /healthz,
// /100b, /16k, /1m, POST /upload) and prints traffic every 2 s until Ctrl-C or --duration.
import { startBackends, type BackendKind } from "./lib/backends.ts";
import { log, sleep, stopAll, workDir } from "./lib/proc.ts";

const argv = process.argv.slice(2);
if (argv.includes("--help") || argv.includes("-h")) {
  console.log(`usage: npm run backends -- [options]

Starts example backends on 127.0.0.1 (each names itself in the x-backend header; paths /,
/healthz, /100b, /16k, /1m and POST /upload) and prints their traffic every 2 s until Ctrl-C.

  --count N            how many (default 3, at most 64)
  --base-port P        the first one's port (default 9001: ports P .. P+N-1, the demo config's)
  --kind K             auto | nginx | bun (default auto: nginx if installed, else Bun servers)
  --duration S         stop after S seconds (default 0: until Ctrl-C)
  --help               this text`);
  process.exit(0);
}
const opt = (k: string, d: string) => {
  const i = argv.indexOf(k);
  return i >= 0 ? argv[i + 1]! : d;
};
const count = Number(opt("--count", "3"));
const basePort = Number(opt("--base-port", "9001"));
const kind = opt("--kind", "auto") as BackendKind;
const durationSec = Number(opt("--duration", "0")); // 0 = until Ctrl-C
if (!(count >= 1 && count <= 64) || !(basePort > 1024 && basePort + count < 65536) || !["auto", "nginx", "bun"].includes(kind)) {
  console.error("usage: npm run backends -- [--count 1..64] [--base-port N>1024] [--kind auto|nginx|bun] [--duration S]");
  process.exit(2);
}

const dir = workDir("fulcrum-backends-"); // removed by stopAll(), also on Ctrl-C
let code = 0;
try {
  log(`starting ${count} backend(s) on ports ${basePort}..${basePort + count - 1} (kind ${kind})`);
  const b = await startBackends({ count, basePort, dir, kind });
  for (const [i, u] of b.urls.entries()) log(`  b${i + 1} ${u}  (x-backend: b${i + 1}; /, /healthz, /100b, /16k, /1m, POST /upload)`);
  log(`${b.kind} backends up (pids ${b.pids().join(", ")}); ${durationSec ? `stopping in ${durationSec} s` : "Ctrl-C to stop"}`);
  let prev = await b.stats();
  const end = durationSec ? performance.now() + durationSec * 1000 : Infinity;
  let t = performance.now();
  while (performance.now() < end) {
    await sleep(Math.min(2000, end - performance.now()));
    const cur = await b.stats();
    const secs = (performance.now() - t) / 1000;
    t = performance.now();
    const parts = cur.map((s, i) =>
      `${s.name} ${((s.requests - (prev[i]?.requests ?? 0)) / secs).toFixed(0)} req/s (total ${s.requests}, conns ${s.accepts})`
    );
    log(parts.join(" | "));
    prev = cur;
  }
} catch (e) {
  console.error(`backends failed: ${(e as Error).message}`);
  code = 1;
} finally {
  await stopAll();
  log("backends stopped");
}
process.exit(code);

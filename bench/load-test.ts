// `npm run load-test -- --url http://127.0.0.1:8080/100b [--duration 10 | --requests N]
//   [--connections 64] [--method POST --body-size 4096] [--tool bun|wrk]`
// Drives an already running Fulcrum (or any HTTP server) for a bounded time or request count,
// printing progress every second and the backend spread (from `x-backend`) at the end.
// Default tool is the built-in generator: it reports live and can stop at a count; --tool wrk
// runs wrk in 1 s slices for more load (a count is then checked once per slice).
import { join } from "node:path";
import { runLoad, type LoadResult } from "./lib/loadgen.ts";
import { log, spawn, stopAll, which, workDir } from "./lib/proc.ts";

const argv = process.argv.slice(2);
if (argv.includes("--help") || argv.includes("-h")) {
  console.log(`usage: npm run load-test -- [options]

Drives an already running Fulcrum (or any HTTP server) for a bounded time or request count,
printing progress every second and the spread over backends (the x-backend header) at the end.

  --url URL            what to request (default http://127.0.0.1:8080/, the port npm start serves)
  --duration S         stop after S seconds (default 10; 300 as the bound of a --requests run)
  --requests N         stop after N requests
  --connections N      concurrent connections (default 64)
  --method GET|POST    default GET
  --body-size B        request body bytes for POST (default 4096)
  --tool bun|wrk       the built-in generator (default: live progress, exact counts) or wrk
  --help               this text

It opens no port of its own and sends traffic only to --url (keep it on 127.0.0.1).`);
  process.exit(0);
}
const opt = (k: string, d: string) => {
  const i = argv.indexOf(k);
  return i >= 0 ? argv[i + 1]! : d;
};
const url = opt("--url", "http://127.0.0.1:8080/");
const connections = Number(opt("--connections", "64"));
const requests = Number(opt("--requests", "0"));
const durationSec = Number(opt("--duration", requests ? "300" : "10")); // a count run is still time-bounded
const method = opt("--method", "GET").toUpperCase() as "GET" | "POST";
const bodySize = Number(opt("--body-size", method === "POST" ? "4096" : "0"));
const tool = opt("--tool", "bun");
if (!/^https?:\/\//.test(url) || !(connections >= 1) || !(durationSec > 0) || !["bun", "wrk"].includes(tool)) {
  console.error(
    "usage: npm run load-test -- --url URL [--duration S | --requests N] [--connections N] [--method GET|POST] [--body-size B] [--tool bun|wrk]",
  );
  process.exit(2);
}

async function main(): Promise<number> {
  const dir = workDir("fulcrum-load-test-"); // the result file, wrk's POST script; removed by stopAll()
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(2000), method, body: method === "POST" ? "x".repeat(bodySize) : undefined });
    await r.arrayBuffer();
    log(`${url} answers ${r.status}${r.headers.get("x-backend") ? ` (x-backend: ${r.headers.get("x-backend")})` : ""}`);
  } catch (e) {
    console.error(`nothing answers at ${url} (${(e as Error).message}). Start Fulcrum first, e.g. bun main.ts run --config fulcrum.yaml`);
    return 1;
  }
  log(
    `load: ${method} ${url}, ${connections} connections, ${
      requests ? `${requests} requests (at most ${durationSec} s)` : `${durationSec} s`
    }, generator ${tool}`,
  );
  if (tool === "bun") {
    const out = join(dir, "result.json");
    const p = spawn("loadgen", [
      process.execPath,
      join(import.meta.dir, "lib", "loadgen-bun.ts"),
      "--url",
      url,
      "--connections",
      String(connections),
      "--duration",
      String(durationSec),
      "--requests",
      String(requests),
      "--method",
      method,
      "--body-size",
      String(bodySize),
      "--progress",
      "--json",
    ], { stdout: out, stderr: "inherit" });
    await p.exited;
    const res = (await Bun.file(out).json()) as LoadResult & { backends: Record<string, number> };
    summary(res, res.backends);
    return res.errors ? 1 : 0;
  }
  if (!which("wrk")) {
    console.error("wrk is not installed");
    return 1;
  }
  let total = 0, errors = 0, elapsed = 0;
  const all: LoadResult[] = [];
  while (elapsed < durationSec && (!requests || total < requests)) {
    const r = await runLoad("wrk", { url, method, bodySize, connections, durationSec: 1 }, dir);
    all.push(r);
    total += r.requests;
    errors += r.errors;
    elapsed += 1;
    log(
      `  t=${elapsed}s  requests=${total}  ${Math.round(r.rps)}/s  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${
        r.p99Ms.toFixed(2)
      } ms  errors=${errors}`,
    );
  }
  const spread: Record<string, number> = {};
  for (let i = 0; i < 30; i++) {
    const r = await fetch(url, { method, body: method === "POST" ? "x".repeat(bodySize) : undefined });
    await r.arrayBuffer();
    const b = r.headers.get("x-backend") ?? "(none)";
    spread[b] = (spread[b] ?? 0) + 1;
  }
  const p = (k: "p50Ms" | "p99Ms") => all.map((r) => r[k]).sort((a, b) => a - b)[all.length >> 1]!;
  summary(
    {
      tool: "wrk",
      requests: total,
      durationSec: elapsed,
      rps: total / elapsed,
      bytesPerSec: NaN,
      p50Ms: p("p50Ms"),
      p90Ms: NaN,
      p99Ms: p("p99Ms"),
      maxMs: NaN,
      errors,
      detail: "",
    },
    spread,
    "of 30 sequential requests",
  );
  return errors ? 1 : 0;
}

function summary(r: LoadResult, backends: Record<string, number>, note = "of all responses"): void {
  console.log(
    `\n${r.requests} requests in ${r.durationSec.toFixed(1)} s = ${Math.round(r.rps)} req/s; p50 ${r.p50Ms.toFixed(2)} ms, p99 ${
      r.p99Ms.toFixed(2)
    } ms; errors ${r.errors}${r.detail ? ` (${r.detail})` : ""}`,
  );
  const n = Object.values(backends).reduce((a, b) => a + b, 0);
  console.log(
    `backends (${note}): ${
      Object.entries(backends).sort().map(([k, v]) => `${k} ${((100 * v) / n).toFixed(1)}%`).join(", ") || "no x-backend header seen"
    }`,
  );
}

let code = 1;
try {
  code = await main();
} finally {
  await stopAll();
}
process.exit(code);

// Load generators behind one interface: wrk when installed (fast, C, latency percentiles with
// --latency), else autocannon if it is on PATH / in node_modules, else a built-in Bun generator
// on raw TCP (bench/lib/loadgen-bun.ts). The harness prints which one it used.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { track, untrack, which } from "./proc.ts";

export interface LoadSpec {
  url: string;
  method?: "GET" | "POST";
  bodySize?: number; // request body bytes for POST
  connections: number;
  durationSec: number;
  threads?: number;
  timeoutSec?: number;
}

export interface LoadResult {
  tool: string;
  requests: number;
  durationSec: number;
  rps: number;
  bytesPerSec: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number; // non-2xx/3xx + socket errors + timeouts
  detail: string; // breakdown of errors for the JSON
}

export type ToolName = "wrk" | "autocannon" | "bun";

export function pickTool(prefer?: string): ToolName {
  if (prefer === "wrk" || prefer === "autocannon" || prefer === "bun") return prefer;
  if (which("wrk")) return "wrk";
  if (autocannonPath()) return "autocannon";
  return "bun";
}

function autocannonPath(): string | undefined {
  const local = join(import.meta.dir, "..", "..", "node_modules", ".bin", "autocannon");
  return existsSync(local) ? local : which("autocannon");
}

export async function runLoad(tool: ToolName, spec: LoadSpec, tmpDir: string): Promise<LoadResult> {
  if (tool === "wrk") return runWrk(spec, tmpDir);
  if (tool === "autocannon") return runAutocannon(spec);
  return runBunGen(spec);
}

/** Bound every child by wall clock too, so a hung generator cannot hang the harness. */
async function exec(cmd: string[], timeoutMs: number): Promise<string> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  track(cmd[0]!, p);
  const timer = setTimeout(() => {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch { /* already exited */ }
  }, timeoutMs);
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  await p.exited;
  clearTimeout(timer);
  untrack(p);
  if (p.exitCode !== 0) throw new Error(`${cmd[0]} exited ${p.exitCode ?? p.signalCode}: ${err.slice(0, 500)}`);
  return out;
}

// ---- wrk ----------------------------------------------------------------------------------

function wrkScript(spec: LoadSpec, tmpDir: string): string | undefined {
  if ((spec.method ?? "GET") === "GET") return undefined;
  const path = join(tmpDir, `wrk-${spec.method}-${spec.bodySize ?? 0}.lua`);
  writeFileSync(
    path,
    [
      `wrk.method = "${spec.method}"`,
      `wrk.body = string.rep("x", ${spec.bodySize ?? 0})`,
      `wrk.headers["Content-Type"] = "application/octet-stream"`,
      "",
    ].join("\n"),
  );
  return path;
}

async function runWrk(spec: LoadSpec, tmpDir: string): Promise<LoadResult> {
  const threads = Math.min(spec.threads ?? navigator.hardwareConcurrency, spec.connections);
  const cmd = [
    "wrk",
    `-t${threads}`,
    `-c${spec.connections}`,
    `-d${spec.durationSec}s`,
    `--timeout`,
    `${spec.timeoutSec ?? 5}s`,
    "--latency",
  ];
  const script = wrkScript(spec, tmpDir);
  if (script) cmd.push("-s", script);
  cmd.push(spec.url);
  const out = await exec(cmd, (spec.durationSec + 30) * 1000);
  return parseWrk(out, spec.durationSec);
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };
const SIZE: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 };

function dur(s: string | undefined): number {
  const m = /([\d.]+)(us|ms|s|m)/.exec(s ?? "");
  return m ? Number(m[1]) * UNIT_MS[m[2]!]! : NaN;
}

export function parseWrk(out: string, durationSec: number): LoadResult {
  const pct = (p: string) => dur(new RegExp(`^\\s*${p}%\\s+(\\S+)`, "m").exec(out)?.[1]);
  const reqs = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(out);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const tr = /Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB)/.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const [c, r, w, t] = sock ? sock.slice(1).map(Number) : [0, 0, 0, 0];
  if (!reqs || Number.isNaN(rps)) throw new Error(`could not parse wrk output:\n${out}`);
  return {
    tool: "wrk",
    requests: Number(reqs[1]),
    durationSec: dur(`${reqs[2]}${reqs[3]}`) / 1000 || durationSec,
    rps,
    bytesPerSec: tr ? Number(tr[1]) * SIZE[tr[2]!]! : NaN,
    p50Ms: pct("50"),
    p90Ms: pct("90"),
    p99Ms: pct("99"),
    maxMs: dur(/Latency\s+\S+\s+\S+\s+(\S+)/.exec(out)?.[1]),
    errors: non2xx + c! + r! + w! + t!,
    detail: `non2xx=${non2xx} connect=${c} read=${r} write=${w} timeout=${t}`,
  };
}

// ---- autocannon ---------------------------------------------------------------------------

async function runAutocannon(spec: LoadSpec): Promise<LoadResult> {
  const cmd = [
    autocannonPath()!,
    "-j",
    "-c",
    String(spec.connections),
    "-d",
    String(spec.durationSec),
    "-t",
    String(spec.timeoutSec ?? 5),
    "-w",
    String(Math.min(navigator.hardwareConcurrency, 4)),
  ];
  if (spec.method === "POST") cmd.push("-m", "POST", "-b", "x".repeat(spec.bodySize ?? 0), "-H", "content-type=application/octet-stream");
  cmd.push(spec.url);
  const j = JSON.parse(await exec(cmd, (spec.durationSec + 30) * 1000));
  const d = j.duration ?? spec.durationSec;
  const errors = (j.errors ?? 0) + (j.timeouts ?? 0) + (j.non2xx ?? 0);
  return {
    tool: "autocannon",
    requests: j.requests.total,
    durationSec: d,
    rps: j.requests.total / d,
    bytesPerSec: j.throughput.total / d,
    p50Ms: j.latency.p50,
    p90Ms: j.latency.p90,
    p99Ms: j.latency.p99,
    maxMs: j.latency.max,
    errors,
    detail: `errors=${j.errors} timeouts=${j.timeouts} non2xx=${j.non2xx}`,
  };
}

// ---- built-in Bun generator ---------------------------------------------------------------

async function runBunGen(spec: LoadSpec): Promise<LoadResult> {
  const script = join(import.meta.dir, "loadgen-bun.ts");
  const cmd = [
    process.execPath,
    script,
    "--url",
    spec.url,
    "--connections",
    String(spec.connections),
    "--duration",
    String(spec.durationSec),
    "--method",
    spec.method ?? "GET",
    "--body-size",
    String(spec.bodySize ?? 0),
    "--json",
  ];
  return JSON.parse(await exec(cmd, (spec.durationSec + 30) * 1000)) as LoadResult;
}

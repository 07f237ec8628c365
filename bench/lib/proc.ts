// Process bookkeeping for the harness: every child is registered here and killed by PID on
// exit, error or Ctrl-C, so a crashed or interrupted run never leaves a proxy on a port (nor,
// after them, its temp folder).
import type { Subprocess } from "bun";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

interface Tracked {
  name: string;
  proc: Subprocess;
}
const tracked: Tracked[] = [];
/** Temp folders and files to remove once the children writing into them have stopped. */
const removals: string[] = [];
let installed = false;
let interrupted = false;
/** True once a signal started the shutdown: errors from killed children are then expected. */
export const isInterrupted = () => interrupted;

export function log(msg: string): void {
  const t = new Date().toISOString().slice(11, 19);
  process.stderr.write(`[${t}] ${msg}\n`);
}

type SpawnOpts = { cwd?: string; stdout?: string; stderr?: string; env?: Record<string, string>; raiseNofile?: boolean };

/** Spawn and register a child. Output goes to files (never pipes a busy child could fill) or, for stderr, "inherit". */
export function spawn(name: string, cmd: string[], opts: SpawnOpts = {}): Subprocess {
  installSignalHandlers();
  // Soft fd limit up to the hard one (10,000 idle clients need 10,000+ fds); exec keeps the PID.
  if (opts.raiseNofile) cmd = ["sh", "-c", 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', "sh", ...cmd];
  const proc = Bun.spawn(cmd, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdin: "ignore",
    stdout: opts.stdout ? Bun.file(opts.stdout) : "ignore",
    stderr: opts.stderr === "inherit" ? "inherit" : opts.stderr ? Bun.file(opts.stderr) : "ignore",
  });
  tracked.push({ name, proc });
  return proc;
}

/** Register a child spawned elsewhere (e.g. a load generator reading pipes) for cleanup. */
export function track(name: string, proc: Subprocess): void {
  installSignalHandlers();
  tracked.push({ name, proc });
}
export function untrack(proc: Subprocess): void {
  const i = tracked.findIndex((t) => t.proc === proc);
  if (i >= 0) tracked.splice(i, 1);
}

/**
 * A fresh folder in the system temp dir for a run's configs, logs and sockets (the proxies' access
 * logs there reach GBs). Removed, unless `keep`, after the children are stopped: by stopAll() (end,
 * error, Ctrl-C) or, failing that, at exit.
 */
export function workDir(prefix: string, keep = false): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (!keep) removeWhenDone(dir);
  return dir;
}

/** Remove `path` (a file or a folder) like a workDir. */
export function removeWhenDone(path: string): void {
  installSignalHandlers();
  removals.push(path);
}

function removeAll(): void {
  for (const p of removals.splice(0)) {
    try {
      rmSync(p, { recursive: true, force: true });
    } catch { /* best effort */ }
  }
}

/** SIGTERM by PID, then SIGKILL after a grace period; returns when the child has exited. */
export async function stop(proc: Subprocess, graceMs = 3000): Promise<void> {
  const i = tracked.findIndex((t) => t.proc === proc);
  if (i >= 0) tracked.splice(i, 1);
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  try {
    process.kill(proc.pid, "SIGTERM");
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(proc.pid, "SIGKILL");
    } catch { /* already exited */ }
  }, graceMs);
  await proc.exited;
  clearTimeout(timer);
}

export async function stopAll(): Promise<void> {
  await Promise.all(tracked.slice().reverse().map((t) => stop(t.proc)));
  removeAll();
}

function installSignalHandlers(): void {
  if (installed) return;
  installed = true;
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, async () => {
      if (interrupted) return;
      interrupted = true;
      log(`${sig}: stopping ${tracked.length} child process(es)`);
      await stopAll();
      process.exit(130);
    });
  }
  // Last resort if the event loop dies with children alive: synchronous SIGKILL by PID.
  process.on("exit", () => {
    for (const t of tracked) {
      try {
        process.kill(t.proc.pid, "SIGKILL");
      } catch { /* already exited */ }
    }
    removeAll();
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll until fn() returns a value (not undefined) or the deadline passes. */
export async function waitFor<T>(fn: () => Promise<T | undefined>, timeoutMs: number, stepMs = 5): Promise<T | undefined> {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch { /* not ready yet: poll again */ }
    await sleep(stepMs);
  }
  return undefined;
}

/** Poll `url` until it answers 200 (a proxy just started), at most `timeoutMs`; whether it did. */
export async function waitFor200(url: string, timeoutMs = 15_000): Promise<boolean> {
  const ok = await waitFor(
    async () => {
      const r = await fetch(url).catch(() => undefined);
      await r?.arrayBuffer();
      return r?.status === 200 ? true : undefined;
    },
    timeoutMs,
    50,
  );
  return ok === true;
}

/** Throws if something already listens on a port we are about to use (another bench, a dev server). */
export async function assertFree(ports: number[]): Promise<void> {
  const busy = [];
  for (const p of ports) if (await portOpen(p)) busy.push(p);
  if (busy.length) throw new Error(`port(s) ${busy.join(", ")} on 127.0.0.1 already in use (another bench running?)`);
}

/** True once a TCP connect to host:port succeeds. */
export async function portOpen(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), 500);
    Bun.connect({
      hostname: host,
      port,
      socket: {
        open(s) {
          clearTimeout(t);
          s.end();
          resolve(true);
        },
        connectError() {
          clearTimeout(t);
          resolve(false);
        },
        data() {},
      },
    }).catch(() => {
      clearTimeout(t);
      resolve(false);
    });
  });
}

/** pid and all its descendants (nginx workers, Fulcrum's worker processes). */
export function processTree(pid: number): number[] {
  const kids = new Map<number, number[]>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      (kids.get(ppid) ?? kids.set(ppid, []).get(ppid)!).push(Number(d));
    } catch { /* the process ended meanwhile */ }
  }
  const out: number[] = [];
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop()!;
    out.push(p);
    stack.push(...(kids.get(p) ?? []));
  }
  return out;
}

/** CPU seconds (user + system) a process and its descendants (workers) have used so far. */
export function cpuSeconds(pid: number): number {
  const { user, system } = cpuSplit(pid);
  return user + system;
}

/** User and system CPU seconds of pid plus all its descendants. */
export function cpuSplit(pid: number): { user: number; system: number } {
  let user = 0;
  let system = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      user += Number(fields[11]) / 100; // utime, stime in clock ticks (USER_HZ = 100)
      system += Number(fields[12]) / 100;
    } catch { /* the process ended meanwhile */ }
  }
  return { user, system };
}

/** VmRSS in bytes of pid plus all its descendants. */
export function treeRss(pid: number): number {
  let total = 0;
  for (const p of processTree(pid)) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, "utf8"));
      if (m) total += Number(m[1]) * 1024;
    } catch { /* the process ended meanwhile */ }
  }
  return total;
}

/**
 * Memory of pid plus all its descendants, from /proc/PID/smaps_rollup, in bytes. Summed RSS
 * counts the pages processes share (the Bun executable's text, pages still shared after a fork)
 * once per process. PSS divides each shared page among all its sharers, also processes outside
 * the tree (the bench's own Bun, other Bun processes on the machine). `own` counts every shared
 * page once: the private pages of each process plus the largest process's shared pages, which
 * is what the tree costs when its processes share the same executable (Fulcrum's workers, nginx's
 * forked workers). `anon`: anonymous memory (heaps, stacks).
 */
export function treeMem(pid: number): { rss: number; pss: number; own: number; anon: number } {
  const out = { rss: 0, pss: 0, own: 0, anon: 0 };
  let shared = 0;
  for (const p of processTree(pid)) {
    try {
      const text = readFileSync(`/proc/${p}/smaps_rollup`, "utf8");
      const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0) * 1024;
      out.rss += kb("Rss");
      out.pss += kb("Pss");
      out.anon += kb("Anonymous");
      out.own += kb("Private_Clean") + kb("Private_Dirty");
      shared = Math.max(shared, kb("Shared_Clean") + kb("Shared_Dirty"));
    } catch { /* the process ended meanwhile */ }
  }
  out.own += shared;
  return out;
}

/**
 * CPU time (ms) that pid and its descendants have run so far, every thread, from
 * /proc/PID/task/TID/schedstat (nanoseconds; /proc's utime and stime tick by 10 ms). Threads that
 * have ended are not counted.
 */
export function treeCpuMs(pid: number): number {
  let ns = 0;
  for (const p of processTree(pid)) {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch { /* the process ended meanwhile */ }
    for (const t of tasks) {
      try {
        ns += Number(readFileSync(`/proc/${p}/task/${t}/schedstat`, "utf8").split(" ")[0]);
      } catch { /* the thread ended meanwhile */ }
    }
  }
  return ns / 1e6;
}

/** BENCH_HIDE=nginx,haproxy,wrk pretends those are not installed (to test the fresh-machine path). */
export function which(bin: string): string | undefined {
  if ((process.env.BENCH_HIDE ?? "").split(",").includes(bin)) return undefined;
  return Bun.which(bin, { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/usr/local/sbin:/sbin` }) ?? undefined;
}

/** Hard RLIMIT_NOFILE: children can raise their soft limit to it, but (without CAP_SYS_RESOURCE)
 *  not beyond, so proxy configs size their connection limits from it. */
export function hardNofile(): number {
  const m = /Max open files\s+\S+\s+(\S+)/.exec(readFileSync("/proc/self/limits", "utf8"));
  return !m || m[1] === "unlimited" ? 1_048_576 : Number(m[1]);
}

/** `deno run`'s permissions and flags for Fulcrum, as `deno task start` gives them (with write, for the bench's files). */
export const DENO_RUN_FLAGS = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-sys=hostname",
  "--unstable-no-legacy-abort",
];

/** Worker processes on Bun: `Bun.spawn` with an IPC channel (core/cluster/ uses them). */
import type { ParentChannel, Processes, WorkerProcess } from "./types.ts";

/**
 * The command that runs this program again. A compiled binary's entry point lives in its
 * embedded filesystem (`/$bunfs/…`, `B:/~BUN/…` on Windows) and the binary is the whole
 * program; from source it is the runtime, its flags (`--smol`…) and the entry script.
 */
export function selfCommand(): string[] {
  const compiled = Bun.main.startsWith("/$bunfs/") || /^[A-Za-z]:[\\/]~BUN[\\/]/.test(Bun.main);
  return compiled ? [process.execPath] : [process.execPath, ...process.execArgv, Bun.main];
}

/**
 * JavaScriptCore's collector settings a worker starts with, unless the operator's environment sets
 * them. Why: a worker under load allocates ~3 KB a request; with Bun's 8 MiB minimum heap and its
 * eden timer (collectionTimerMaxPercentCPU 0.1) it ran ~9 young collections a second, each stopping
 * every connection the worker holds for ~1 ms, longer when the machine is busy and the collector is
 * preempted. A 32 MiB minimum heap (JSC's own default) and a 50× slower timer make it ~3 a second:
 * a third of the pause time; p99 level on a quiet machine, lower on a busy one; idle memory
 * unchanged (bench/results/p99-2026-12-06-c64.md, docs/multi-core.md).
 */
export const WORKER_GC_ENV: Readonly<Record<string, string>> = {
  BUN_JSC_largeHeapSize: String(32 * 1024 * 1024),
  BUN_JSC_collectionTimerMaxPercentCPU: "0.002",
};

/** A worker's environment: the collector's defaults, then this process's environment, then `own`. */
export function workerEnv(parent: Record<string, string | undefined>, own: Record<string, string>): Record<string, string | undefined> {
  return { ...WORKER_GC_ENV, ...parent, ...own };
}

function spawnSelf(args: readonly string[], env: Record<string, string>, onMessage: (message: unknown) => void): WorkerProcess {
  const proc = Bun.spawn([...selfCommand(), ...args], {
    env: workerEnv(process.env, env),
    stdin: "ignore",
    stdout: "inherit",
    stderr: "inherit",
    serialization: "json",
    ipc: (message) => onMessage(message),
  });
  return {
    pid: proc.pid,
    send(message) {
      try {
        proc.send(message);
      } catch {
        // The worker is gone; its exit is reported through `exited`.
      }
    },
    kill: (signal) => proc.kill(signal),
    exited: proc.exited.then(() => ({
      code: proc.signalCode ? null : proc.exitCode,
      signal: proc.signalCode ? String(proc.signalCode) : null,
    })),
  };
}

function parent(): ParentChannel | undefined {
  if (typeof process.send !== "function") return undefined;
  return {
    send(message) {
      try {
        process.send!(message);
      } catch {
        // The primary is gone; `disconnect` follows.
      }
    },
    onMessage: (handler) => void process.on("message", handler),
    // A primary gone before this was asked (a worker still starting) is told at once, not never.
    onDisconnect: (handler) => void (process.connected === false ? setTimeout(handler, 0) : process.once("disconnect", handler)),
  };
}

export const bunProcesses: Processes = { spawnSelf, parent };

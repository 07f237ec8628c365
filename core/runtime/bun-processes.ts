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

function spawnSelf(args: readonly string[], env: Record<string, string>, onMessage: (message: unknown) => void): WorkerProcess {
  const proc = Bun.spawn([...selfCommand(), ...args], {
    env: { ...process.env, ...env },
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

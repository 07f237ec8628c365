/** Helpers for plugin tests: temp folders with config and plugin files, Fulcrum from a config file. */
import type { LogRecord } from "@logtape/logtape";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { loadConfigFile } from "../../core/config/load.ts";
import { captureLogs } from "./fulcrum.ts";
import { bunRuntime } from "../../core/runtime/bun.ts";
import { startServer, type RunningServer } from "../../core/server.ts";
import { builtinRegistry } from "../../main.ts";

export const ROOT = new URL("../../", import.meta.url).pathname;

/** A fresh temp folder; `write(name, text)` creates files (and folders) in it. */
export function tempDir(prefix = "fulcrum-plugins-"): { dir: string; write(name: string, text: string): string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    write(name, text) {
      const file = join(dir, name);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, text);
      return file;
    },
  };
}

export interface FromFile {
  readonly url: string;
  readonly server: RunningServer;
  readonly records: LogRecord[];
  /** Operational log records with this message. */
  logged(message: string): LogRecord[];
  stop(): Promise<void>;
}

/** Load `file` like `fulcrum run` does (plugins and all), in-process on 127.0.0.1:0. */
export async function startFromFile(file: string): Promise<FromFile> {
  const registry = builtinRegistry();
  const load = async () => {
    const c = await loadConfigFile(file, {
      readTextFile: bunRuntime.readTextFile,
      env: (n) => process.env[n],
      strategyNames: registry.strategyNames(),
      middlewareNames: registry.middlewareNames(),
    });
    c.listen = { hostname: "127.0.0.1", port: 0 };
    return c;
  };
  const config = await load();
  const { records, logging } = await captureLogs(config.log.access_log);
  const server = await startServer(bunRuntime, config, { registry, logging, loadConfig: load });
  return {
    url: `http://127.0.0.1:${server.listener.port}`,
    server,
    records,
    logged: (message) => records.filter((r) => r.rawMessage === message || r.message.join("") === message),
    stop: () => server.shutdown(),
  };
}

/** A child `bun main.ts …` whose stdout lines can be awaited (no polling). */
export interface LineWatcher {
  readonly lines: string[];
  /** Resolves with the first line (past or future) containing `needle`, after `from` lines. */
  waitFor(needle: string, from?: number, timeoutMs?: number): Promise<string>;
  /** Resolves when the stream ends: every process that held it (a primary and its workers) has exited. */
  readonly closed: Promise<void>;
}

export function watchLines(stream: ReadableStream<Uint8Array>): LineWatcher {
  const lines: string[] = [];
  const waiters = new Set<{ needle: string; from: number; resolve: (l: string) => void }>();
  const closed = (async () => {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        for (const w of waiters) {
          if (lines.length > w.from && line.includes(w.needle)) {
            waiters.delete(w);
            w.resolve(line);
          }
        }
      }
    }
  })();
  return {
    lines,
    closed,
    waitFor(needle, from = 0, timeoutMs = 10_000) {
      const found = lines.slice(from).find((l) => l.includes(needle));
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { needle, from, resolve: (l: string) => (clearTimeout(timer), resolve(l)) };
        const timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`no line containing ${needle} within ${timeoutMs}ms:\n${lines.slice(-20).join("\n")}`));
        }, timeoutMs);
        waiters.add(w);
      });
    },
  };
}

export interface ChildFulcrum extends LineWatcher {
  readonly proc: ReturnType<typeof Bun.spawn>;
  readonly url: string;
  readonly pid: number;
  readonly exited: Promise<number>;
  stop(): Promise<void>;
}

/** Start `bun main.ts run --config FILE …` (or a compiled binary) and wait for "listening". */
export async function spawnRun(cmd: string[], cwd = ROOT): Promise<ChildFulcrum> {
  const proc = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  const w = watchLines(proc.stdout as ReadableStream<Uint8Array>);
  let line: string;
  try {
    line = await Promise.race([
      w.waitFor('"message":"listening"'),
      proc.exited.then(async (code) => {
        throw new Error(`exited ${code} before listening:\n${w.lines.join("\n")}\n${await new Response(proc.stderr as ReadableStream).text()}`);
      }),
    ]);
  } catch (e) {
    proc.kill("SIGKILL");
    throw e;
  }
  return {
    ...w,
    proc,
    url: JSON.parse(line).url as string,
    pid: proc.pid,
    exited: proc.exited,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

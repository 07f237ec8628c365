/** Helpers for plugin tests: temp folders with config and plugin files, Fulcrum from a config file. */
import type { Clock } from "../../core/lib/clock.ts";
import { afterAll, onTestFinished } from "bun:test";
import type { LogRecord } from "@logtape/logtape";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { loadConfigFile } from "../../core/config/load.ts";
import { captureLogs, watchLines, type LineWatcher } from "./fulcrum.ts";
import { bunRuntime } from "../../core/runtime/bun.ts";
import { startServer, type RunningServer } from "../../core/proxy/server.ts";
import { builtinRegistry } from "../../main.ts";

export const ROOT = new URL("../../", import.meta.url).pathname;

/**
 * A fresh temp folder; `write(name, text)` creates files (and folders) in it. Made in a test, it is
 * removed when the test has finished (after its afterEach hooks); made at file or describe level,
 * after the tests there. Not in a beforeAll: Bun would remove it when the hook ends.
 */
export function tempDir(prefix = "fulcrum-plugins-"): { dir: string; write(name: string, text: string): string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    onTestFinished(remove);
  } catch {
    afterAll(remove); // at file or describe level, where onTestFinished throws
  }
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
export async function startFromFile(file: string, extra: { clock?: Clock } = {}): Promise<FromFile> {
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
  const server = await startServer(bunRuntime, config, { registry, logging, loadConfig: load, ...extra });
  return {
    url: `http://127.0.0.1:${server.listener.port}`,
    server,
    records,
    logged: (message) => records.filter((r) => r.rawMessage === message || r.message.join("") === message),
    stop: () => server.shutdown(),
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
        throw new Error(
          `exited ${code} before listening:\n${w.lines.join("\n")}\n${await new Response(proc.stderr as ReadableStream).text()}`,
        );
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

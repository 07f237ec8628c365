/** Start Fulcrum in-process (real listener on a loopback port) or as a child process. */
import { configure, getLogger, type LogRecord } from "@logtape/logtape";
import { parseConfig } from "../../core/config/load.ts";
import { bunRuntime } from "../../core/runtime/bun.ts";
import { startServer, type RunningServer } from "../../core/proxy/server.ts";
import { accessLine, type Logging } from "../../core/telemetry/log.ts";
import { builtinRegistry } from "../../main.ts";
import { startObservability, type Observability } from "../../core/admin/observability.ts";

export interface InProcess {
  readonly url: string;
  readonly server: RunningServer;
  /** Tracing, metrics and the admin API, wired as `main.ts` does. */
  readonly obs: Observability;
  /** Base URL of the admin listener (undefined with `admin: false`). */
  readonly adminUrl: string | undefined;
  /** Every log record, operational and access, in order. */
  readonly records: LogRecord[];
  /** Access-log records' properties. */
  access(): Record<string, unknown>[];
  stop(): Promise<void>;
}

/**
 * Parse `yaml` as a config (listen and admin.listen are forced to 127.0.0.1:0) and serve it.
 * `env` is what OTEL_* and FULCRUM_ADMIN_TOKEN are read from (default: none set).
 */
/** Send every log record (operational and access) to memory, for assertions. */
export async function captureLogs(accessLog: boolean): Promise<{ records: LogRecord[]; logging: Logging }> {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { mem: (r) => records.push(r) },
    loggers: [
      { category: ["fulcrum"], sinks: ["mem"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "error" },
    ],
  });
  return {
    records,
    logging: {
      logger: getLogger(["fulcrum"]),
      // The real access-line formatter, parsed back: tests see exactly the fields written.
      access: accessLog
        ? {
          write(e, ms, ids) {
            const { "@timestamp": _t, level: _l, message: _m, logger: _g, ...properties } = JSON.parse(accessLine(e, ms, ids));
            records.push(
              {
                category: ["fulcrum", "access"],
                level: "info",
                message: ["access"],
                rawMessage: "access",
                properties,
                timestamp: Date.now(),
              } as LogRecord,
            );
          },
        }
        : undefined,
      close: async () => {},
    },
  };
}

/** `reload` gives the YAML that `server.reload()` reads. */
export async function startFulcrum(yaml: string, opts: { env?: Record<string, string>; reload?: () => string } = {}): Promise<InProcess> {
  const registry = builtinRegistry();
  const parse = (text: string) => {
    const c = parseConfig(text, { file: "test.yaml", env: (n) => process.env[n], strategyNames: registry.strategyNames() });
    c.listen = { ...c.listen, hostname: "127.0.0.1", port: 0 };
    c.admin.listen = { hostname: "127.0.0.1", port: 0 };
    return c;
  };
  const config = parse(yaml);
  const reload = opts.reload;
  const { records, logging } = await captureLogs(config.log.access_log);
  const env = opts.env ?? {};
  const obs = await startObservability(bunRuntime, config, {
    logging,
    serviceVersion: "0.0.0-test",
    env: (n) => env[n],
    flushTimeoutMs: 2000,
  });
  const server = await startServer(bunRuntime, config, {
    registry,
    logging,
    observer: obs.observer,
    metrics: obs.metrics,
    stage: obs.stage,
    beforeListen: () => obs.listen(),
    loadConfig: reload === undefined ? undefined : async () => parse(reload()),
  });
  obs.attach(server);
  return {
    url: `http://127.0.0.1:${server.listener.port}`,
    server,
    obs,
    adminUrl: obs.admin?.url,
    records,
    access: () => records.filter((r) => r.category.join(".") === "fulcrum.access").map((r) => r.properties),
    stop: async () => {
      obs.draining();
      await server.shutdown();
      await obs.close();
    },
  };
}

export interface Child {
  readonly proc: ReturnType<typeof Bun.spawn>;
  readonly url: string;
  /** stdout lines so far. */
  readonly lines: string[];
  /** Resolves with the exit code. */
  readonly exited: Promise<number>;
  kill(signal?: NodeJS.Signals): void;
}

const ROOT = new URL("../../", import.meta.url).pathname;

/** Run `bun main.ts <args>` and wait for its "listening" log line. */
export function spawnFulcrum(args: string[], timeoutMs = 10_000): Promise<Child> {
  return spawnListening([process.execPath, "main.ts", ...args], { cwd: ROOT }, timeoutMs);
}

/** Process groups of spawned children still running: killed when the test process exits. */
const liveGroups = new Set<number>();
process.on("exit", () => {
  for (const pid of liveGroups) {
    try {
      process.kill(-pid, "SIGKILL");
    } catch { /* already exited */ }
  }
});

/** Run any Fulcrum command line (binary, deno task…) and wait for its "listening" log line. */
export async function spawnListening(
  cmd: string[],
  options: { cwd: string; env?: Record<string, string> },
  timeoutMs = 10_000,
): Promise<Child> {
  // Its own process group, so that a SIGKILL (cleanup, failed start) also reaches the workers of a
  // primary and the child of a wrapper such as `deno task`, which would otherwise outlive the test.
  const proc = Bun.spawn(cmd, { cwd: options.cwd, env: options.env ?? process.env, stdout: "pipe", stderr: "pipe", detached: true });
  const kill = (signal: NodeJS.Signals = "SIGTERM") => {
    if (signal !== "SIGKILL") return void proc.kill(signal); // graceful: the process forwards it itself
    try {
      process.kill(-proc.pid, "SIGKILL");
    } catch { /* the group is gone already */ }
  };
  // Out of the terminal's process group, a child would not get the Ctrl-C that stops the test run.
  liveGroups.add(proc.pid);
  void proc.exited.then(() => liveGroups.delete(proc.pid));
  const watch = watchLines(proc.stdout as ReadableStream<Uint8Array>);
  let line: string;
  try {
    line = await Promise.race([
      watch.waitFor('"message":"listening"', 0, timeoutMs),
      watch.closed.then(async (): Promise<string> => {
        const stderr = await new Response(proc.stderr as ReadableStream).text();
        throw new Error(`fulcrum exited before listening: ${watch.lines.join("\n")}\n${stderr}`);
      }),
    ]);
  } catch (e) {
    kill("SIGKILL");
    throw e;
  }
  return { proc, url: JSON.parse(line).url as string, lines: watch.lines, exited: proc.exited, kill };
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

/** Run `bun main.ts <args>` to completion. */
export async function runCli(args: string[], env?: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([process.execPath, "main.ts", ...args], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** Resident set size of a process in bytes, from /proc. */
export function rssOf(pid: number): number {
  const status = require("node:fs").readFileSync(`/proc/${pid}/status`, "utf8") as string;
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

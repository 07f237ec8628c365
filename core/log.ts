/**
 * Structured JSON-lines logging through LogTape. Operational records go to stdout; access-log
 * records (one a request) go to stdout too, or to `log.access_log_file`.
 */
import { configure, getJsonLinesFormatter, getLogger, type Logger, type LogRecord, type Sink } from "@logtape/logtape";
import type { Runtime, Writer } from "./runtime/types.ts";

export type { Logger };

export interface LogConfig {
  level: "debug" | "info" | "warning" | "error";
  access_log: boolean;
  access_log_file?: string | undefined;
}

/** What one access-log line says about a request (the gateway's request record has these). */
export interface AccessEntry {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly route: string;
  readonly pool: string;
  readonly backend: string;
  readonly bytes: number;
  readonly attempts: number;
  readonly clientIp: string;
  readonly retryReason: string | undefined;
  readonly error: string | undefined;
}

/** The access log: one JSON line a request. */
export interface AccessLog {
  write(entry: AccessEntry, durationMs: number, ids: { trace_id: string; span_id: string } | undefined): void;
}

export interface Logging {
  /** Operational logger, category `fulcrum`. */
  logger: Logger;
  /** The access log, or undefined when it is off (so the hot path skips it). */
  access: AccessLog | undefined;
  close(): Promise<void>;
}

const format = getJsonLinesFormatter({ properties: "flatten", message: "rendered" });

let lastMs = -1;
let lastIso = "";
const J = JSON.stringify;

/**
 * One access line: the same JSON-lines shape as LogTape's records (`@timestamp`, `level`,
 * `message`, `logger`, then the fields), built as one string. Access lines do not go through
 * LogTape's dispatch: at one a request its record, property snapshot and formatter cost ~4 µs
 * against ~1 µs for this (bench/hotpath-micro.ts). Operational records still do.
 */
export function accessLine(e: AccessEntry, durationMs: number, ids: { trace_id: string; span_id: string } | undefined, worker?: number, now = Date.now()): string {
  if (now !== lastMs) {
    lastMs = now;
    lastIso = new Date(now).toISOString();
  }
  let line =
    `{"@timestamp":"${lastIso}","level":"INFO","message":"access","logger":"fulcrum.access","method":${J(e.method)},"path":${J(e.path)},` +
    `"status":${e.status},"route":${J(e.route)},"pool":${J(e.pool)},"backend":${J(e.backend)},"duration_ms":${Math.round(durationMs * 1000) / 1000},` +
    `"bytes":${e.bytes},"attempts":${e.attempts},"client_ip":${J(e.clientIp)}`;
  if (e.retryReason) line += `,"retry_reason":${J(e.retryReason)}`;
  if (e.error) line += `,"error":${J(e.error)}`;
  if (ids) line += `,"trace_id":"${ids.trace_id}","span_id":"${ids.span_id}"`;
  if (worker !== undefined) line += `,"worker":${worker}`;
  return `${line}}\n`;
}

function writerSink(writer: Writer, formatter: (r: LogRecord) => string = format): Sink {
  return (record: LogRecord) => writer.write(formatter(record));
}

/**
 * Several processes share stdout (workers): hand it whole lines in writes of at most PIPE_BUF
 * (4 KiB), which the kernel never interleaves with another process's writes.
 */
function lineAtomic(w: Writer): Writer {
  const LIMIT = 4096;
  let buffered = 0;
  return {
    write(text) {
      const n = Buffer.byteLength(text);
      if (buffered + n > LIMIT) {
        w.flush();
        buffered = 0;
      }
      w.write(text);
      buffered += n;
    },
    flush() {
      w.flush();
      buffered = 0;
    },
    close: () => w.close(),
  };
}

/**
 * Configure LogTape for the process; call again on reload to apply a new config. `worker`: this
 * is worker N (core/cluster/): every record carries `"worker": N`. `sharedStdout`: other
 * processes write to the same stdout (a primary and its workers).
 */
export async function setupLogging(runtime: Runtime, config: LogConfig, opts: { worker?: number; sharedStdout?: boolean } = {}): Promise<Logging> {
  const raw = runtime.openWriter("stdout");
  const stdout = opts.worker === undefined && !opts.sharedStdout ? raw : lineAtomic(raw);
  const accessWriter = config.access_log_file ? runtime.openWriter({ path: config.access_log_file }) : stdout;
  await configure({
    reset: true,
    sinks: { main: writerSink(stdout) },
    loggers: [
      { category: ["fulcrum"], sinks: ["main"], lowestLevel: config.level },
      // LogTape reports its own problems under this category.
      { category: ["logtape", "meta"], sinks: ["main"], lowestLevel: "warning" },
    ],
  });
  const context = opts.worker === undefined ? undefined : { worker: opts.worker };
  const logger = getLogger(["fulcrum"]);
  const worker = opts.worker;
  const access: AccessLog | undefined = config.access_log
    ? { write: (e, ms, ids) => accessWriter.write(accessLine(e, ms, ids, worker)) }
    : undefined;
  return {
    logger: context ? logger.with(context) : logger,
    access,
    async close() {
      stdout.flush();
      if (accessWriter !== stdout) await accessWriter.close();
    },
  };
}

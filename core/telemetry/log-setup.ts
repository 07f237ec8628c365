/**
 * A process's logging: LogTape configured for the operational records, and the access log over
 * stdout or `log.access_log_file`. A reload changes both (`Logging.stage`): the level applies at
 * once, a new access-log format or file applies to the requests of the new config.
 */
import { configureSync, getJsonLinesFormatter, getLogger, type LogRecord } from "@logtape/logtape";
import type { Runtime, Writer } from "../runtime/types.ts";
import { accessLog, type LogConfig, type Logging, type StagedLog } from "./log.ts";

const format = getJsonLinesFormatter({ properties: "flatten", message: "rendered" });

function configureLevel(stdout: Writer, level: LogConfig["level"]): void {
  configureSync({
    reset: true,
    sinks: { main: (record: LogRecord) => stdout.write(format(record)) },
    loggers: [
      { category: ["fulcrum"], sinks: ["main"], lowestLevel: level },
      // LogTape reports its own problems under this category.
      { category: ["logtape", "meta"], sinks: ["main"], lowestLevel: "warning" },
    ],
  });
}

/** Whether two configs write the same access lines to the same place. */
const sameAccess = (a: LogConfig, b: LogConfig) =>
  a.access_log === b.access_log && a.access_log_file === b.access_log_file && (a.access_format ?? "json") === (b.access_format ?? "json") &&
  JSON.stringify(a.fields) === JSON.stringify(b.fields);

/**
 * Configure logging for the process. `worker`: this is worker N (core/cluster/): every record
 * carries `"worker": N`. `sharedStdout`: other processes write to the same stdout (a primary and
 * its workers).
 */
export function setupLogging(
  runtime: Runtime,
  config: LogConfig,
  opts: { worker?: number; sharedStdout?: boolean } = {},
): Promise<Logging> {
  // Several processes share stdout (workers): whole lines in writes of at most PIPE_BUF (4 KiB),
  // which the kernel never interleaves with another process's writes.
  const shared = opts.worker !== undefined || opts.sharedStdout === true;
  const stdout = runtime.openWriter("stdout", shared ? { chunk: 4096 } : undefined);
  const worker = opts.worker;
  // A file only when the access log is on: a path for a log that is off is not opened (or created).
  const open = (c: LogConfig) => (c.access_log && c.access_log_file ? runtime.openWriter({ path: c.access_log_file }) : stdout);
  const accessOver = (w: Writer, c: LogConfig) => (c.access_log ? accessLog(w, worker, Date.now, c) : undefined);
  /** Files replaced by a reload whose old requests are still writing to them. */
  const retiring = new Set<Writer>();
  const closed = new WeakSet<Writer>();
  const closeFile = (w: Writer): Promise<void> => {
    retiring.delete(w);
    if (w === stdout || closed.has(w)) return Promise.resolve();
    closed.add(w);
    // A failed last flush (a full disk) must not become an unhandled rejection.
    return w.close().catch(() => {});
  };
  let shutDown = false;

  configureLevel(stdout, config.level);
  let running = config;
  let writer = open(config);
  const logger = getLogger(["fulcrum"]);
  const logging: Logging = {
    logger: worker === undefined ? logger : logger.with({ worker }),
    access: accessOver(writer, config),
    reopen() {
      for (const w of [writer, ...retiring]) if (w !== stdout) w.reopen?.();
    },
    stage(next: LogConfig): StagedLog {
      const sameFile = (next.access_log && next.access_log_file) === (running.access_log && running.access_log_file);
      const same = sameAccess(running, next);
      // A new file is opened now, so that a path that cannot be written fails the reload.
      const w = same || sameFile || shutDown ? writer : open(next);
      const access = same ? logging.access : accessOver(w, next);
      return {
        access,
        commit(drained) {
          if (shutDown) return void (w !== writer && closeFile(w));
          const old = writer;
          writer = w;
          logging.access = access;
          const level = running.level;
          running = next;
          if (old !== w) {
            // The old gateway's requests write their lines to the old file until they are done.
            retiring.add(old);
            void drained.then(() => closeFile(old));
          }
          if (next.level !== level) configureLevel(stdout, next.level);
        },
        abort() {
          if (w !== writer) void closeFile(w);
        },
      };
    },
    async close() {
      shutDown = true;
      stdout.flush();
      await Promise.all([writer, ...retiring].map(closeFile));
    },
  };
  return Promise.resolve(logging);
}

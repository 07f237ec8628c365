/**
 * A process's logging: LogTape configured for the operational records, and the access log over
 * stdout or `log.access_log_file`. A reload changes both (`Logging.stage`): the level applies at
 * once, a new access-log format or file applies to the requests of the new config.
 */
import { configureSync, getJsonLinesFormatter, getLogger, type LogRecord } from "@logtape/logtape";
import type { Runtime, Writer } from "../runtime/types.ts";
import { type AccessLog, accessLog, type LogConfig, type Logging, type StagedLog } from "./log.ts";

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
  const open = (c: LogConfig) => (c.access_log_file ? runtime.openWriter({ path: c.access_log_file }) : stdout);
  const accessOver = (w: Writer, c: LogConfig) => (c.access_log ? accessLog(w, worker, Date.now, c) : undefined);
  const closeFile = (w: Writer) => (w === stdout ? Promise.resolve() : w.close());

  configureLevel(stdout, config.level);
  let running = config;
  let writer = open(config);
  const logger = getLogger(["fulcrum"]);
  const logging: Logging = {
    logger: worker === undefined ? logger : logger.with({ worker }),
    access: accessOver(writer, config),
    reopen() {
      if (writer !== stdout) writer.reopen?.();
    },
    stage(next: LogConfig): StagedLog {
      if (sameAccess(running, next)) {
        const access = logging.access;
        return {
          access,
          commit() {
            if (next.level !== running.level) configureLevel(stdout, next.level);
            running = next;
          },
          abort() {},
        };
      }
      // A new file is opened now, so that a path that cannot be written fails the reload.
      const w = next.access_log_file === running.access_log_file ? writer : open(next);
      const access: AccessLog | undefined = accessOver(w, next);
      return {
        access,
        commit(drained) {
          if (next.level !== running.level) configureLevel(stdout, next.level);
          const old = writer;
          running = next;
          writer = w;
          logging.access = access;
          // The old gateway's requests write their lines to the old file until they are done.
          if (old !== w) void drained.then(() => closeFile(old));
        },
        abort() {
          if (w !== writer) void closeFile(w);
        },
      };
    },
    async close() {
      stdout.flush();
      await closeFile(writer);
    },
  };
  return Promise.resolve(logging);
}

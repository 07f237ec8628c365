/**
 * Load and validate a config file in a worker thread. yaml, zod and the schema are loaded there
 * and the thread ends with the validation, so the process that serves never loads them: measured
 * on Bun, that process keeps ~12 MiB less resident (what a finished thread leaves behind is
 * reused), and the rest of start-up runs beside the validation. The config comes back as
 * {@link encodeConfig} text (with its `file:line:col` positions); problems as a {@link ConfigError}.
 */
import type { Config } from "./schema.ts";
import { ConfigError, decodeConfig } from "./source.ts";

export interface ThreadRequest {
  file: string;
  strategyNames: readonly string[];
  middlewareNames: readonly string[];
}

export type ThreadReply =
  | { config: string }
  | { problems: string[]; unchecked: readonly string[] }
  | { error: string };

/**
 * `workerUrl`: load-thread-worker.ts's URL, made by main.ts from its own: the compiled binary
 * (compile.sh lists the worker as an entry point of its own) keeps it at the same path below
 * main's, as `core/config/load-thread-worker.js`; from source the `.ts` file is there.
 */
export function loadConfigInThread(request: ThreadRequest, workerUrl: URL): Promise<Config> {
  const worker = new Worker(workerUrl.href, { type: "module" });
  return new Promise<Config>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<ThreadReply>) => {
      worker.terminate();
      const r = e.data;
      if ("config" in r) resolve(decodeConfig(r.config));
      else if ("problems" in r) reject(new ConfigError(r.problems, r.unchecked));
      else reject(new Error(r.error));
    };
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault?.();
      worker.terminate();
      reject(new Error(`the config validation thread failed: ${e.message}`));
    };
    worker.postMessage(request);
  });
}

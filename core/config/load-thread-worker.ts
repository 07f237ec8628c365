/** The worker thread of load-thread.ts: load, validate, answer once. */
import { readFile } from "node:fs/promises";
import process from "node:process";
import { loadConfigFile } from "./load.ts";
import { ConfigError, encodeConfig } from "./source.ts";
import type { ThreadReply, ThreadRequest } from "./load-thread.ts";

declare const self: { onmessage: ((e: MessageEvent<ThreadRequest>) => void) | null; postMessage(m: ThreadReply): void };

self.onmessage = async (e) => {
  const { file, strategyNames, middlewareNames } = e.data;
  let reply: ThreadReply;
  try {
    const config = await loadConfigFile(file, {
      readTextFile: (p) => readFile(p, "utf8"),
      env: (name) => process.env[name],
      strategyNames,
      middlewareNames,
    });
    reply = { config: encodeConfig(config) };
  } catch (err) {
    reply = err instanceof ConfigError
      ? { problems: err.problems, unchecked: err.unchecked }
      : { error: String((err as Error)?.message ?? err) };
  }
  self.postMessage(reply);
};

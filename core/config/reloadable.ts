/**
 * What a reload can apply. Every key of the config is applied by a reload except these, which
 * are bound to the listening socket or to the process: a reload that changes one keeps the
 * running value and names the key in its answer (`restart_required`) and its log line.
 * tests/proxy/reload-keys.test.ts walks every key of config/reference.yaml against this list.
 */
import type { Config } from "./schema.ts";

export const RESTART_KEYS: readonly string[] = [
  "listen", // the proxy's socket
  "workers", // the processes serving it
  "limits.max_request_body", // given to the listener when it opens
  "limits.client_idle_timeout",
  "admin.enabled", // the admin listener's socket
  "admin.listen",
  "acme", // the ACME account, CA and storage the orders of this process use
];

function get(config: Config, key: string): unknown {
  let v: unknown = config;
  for (const k of key.split(".")) v = v !== null && typeof v === "object" ? (v as Record<string, unknown>)[k] : undefined;
  return v;
}

function set(config: Config, key: string, value: unknown): void {
  const path = key.split(".");
  let v = config as unknown as Record<string, unknown>;
  for (const k of path.slice(0, -1)) v = v[k] as Record<string, unknown>;
  if (value === undefined) delete v[path.at(-1)!];
  else v[path.at(-1)!] = value;
}

/** The keys of {@link RESTART_KEYS} whose value differs between the running config and `next`. */
export function restartRequired(running: Config, next: Config): string[] {
  return RESTART_KEYS.filter((k) => JSON.stringify(get(running, k)) !== JSON.stringify(get(next, k)));
}

/** Put the running values of `keys` back into `next`, which is then the config that goes live. */
export function keepRunningValues(running: Config, next: Config, keys: readonly string[]): void {
  for (const k of keys) set(next, k, get(running, k));
}

/**
 * Operator state kept across restarts (`state_file:`), as HAProxy's server-state-file: the
 * backends an operator drained, and the weights set through the admin API. Written atomically (a
 * temp file renamed over the old one) after every admin change and every reload; read once at
 * start, before the proxy listens. Entries for backends the config no longer has are ignored, and
 * so is a weight whose backend's configured weight changed since it was set (the config wins, as
 * on reload; for a discovered backend, the weight its source gives it stands for the config's). A file that cannot be read or parsed is logged and ignored: it never stops a start.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Logger } from "@logtape/logtape";
import { backendId, configSource } from "../config/source.ts";
import type { Config } from "../config/schema.ts";
import type { Backend, Pool } from "../pool/pool.ts";

/** One backend's operator state; only what differs from the config is written. */
export interface StateEntry {
  draining?: boolean;
  /** The weight set through the admin API... */
  weight?: number;
  /** ...and the configured weight it overrode then. */
  config_weight?: number;
}

export interface StateFile {
  version: 1;
  /** pool name → backend id → state. */
  pools: Record<string, Record<string, StateEntry>>;
}

/** Where `config` keeps its operator state: `state_file` resolved against the config file's folder. */
export function stateFilePath(config: Config, cwd: string): string | undefined {
  if (!config.state_file) return undefined;
  return resolve(dirname(resolve(cwd, configSource(config).file)), config.state_file);
}

/** The backend's weight in its pool's config, or the one its discovery source gave it. */
function configWeight(p: Pool, b: Backend): number | undefined {
  if (p.discovery) return p.discovery.sourceWeight(b);
  return p.config.backends.find((c) => backendId(c) === b.id)?.weight;
}

/** The operator state of `pools`: drained backends and weights that differ from the config's. */
export function collectState(pools: Iterable<Pool>): StateFile {
  const out: StateFile = { version: 1, pools: {} };
  for (const p of pools) {
    for (const b of p.backends) {
      const configured = configWeight(p, b);
      const e: StateEntry = {};
      if (b.draining) e.draining = true;
      if (configured !== undefined && b.weight !== configured) {
        e.weight = b.weight;
        e.config_weight = configured;
      }
      if (e.draining || e.weight !== undefined) (out.pools[p.name] ??= {})[b.id] = e;
    }
  }
  return out;
}

/** Write the state of `pools` to `path` atomically; a failure is logged, never thrown. */
export function saveState(path: string, pools: Iterable<Pool>, log: Logger): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, `${JSON.stringify(collectState(pools), null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    log.error("cannot write the state file {file}: {error}; drain and weight changes will not survive a restart", {
      file: path,
      error: (e as Error).message,
    });
  }
}

// 0 is a soft drain, in the config and through the admin API alike.
const isWeight = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 1_000_000;

/** Parse a state file's text; throws with a reason when it is not one. */
export function parseState(text: string): StateFile {
  const data = JSON.parse(text) as StateFile;
  if (data === null || typeof data !== "object" || data.version !== 1 || typeof data.pools !== "object" || data.pools === null) {
    throw new Error('not a Fulcrum state file (expected {"version": 1, "pools": {...}})');
  }
  for (const [pool, backends] of Object.entries(data.pools)) {
    if (backends === null || typeof backends !== "object") throw new Error(`pools.${pool} is not a map of backends`);
    for (const [id, e] of Object.entries(backends)) {
      const ok = e !== null && typeof e === "object" && (e.draining === undefined || typeof e.draining === "boolean") &&
        (e.weight === undefined || (isWeight(e.weight) && isWeight(e.config_weight)));
      if (!ok) throw new Error(`pools.${pool}.${id} is not { draining, weight, config_weight }`);
    }
  }
  return data;
}

/**
 * Apply the state saved at `path` to `pools` (call before they serve). A missing file is a first
 * start; an unreadable or corrupt one is logged and ignored.
 */
export function restoreState(path: string, pools: ReadonlyMap<string, Pool>, log: Logger): void {
  let state: StateFile;
  try {
    state = parseState(readFileSync(path, "utf8"));
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") {
      log.debug("no state file at {file} yet", { file: path });
      return;
    }
    log.warning("state file {file} ignored: {error}; starting with the config's drain and weights", {
      file: path,
      error: (e as Error).message,
    });
    return;
  }
  const drained: string[] = [];
  const weights: string[] = [];
  const ignored: string[] = [];
  for (const [poolName, backends] of Object.entries(state.pools)) {
    const p = pools.get(poolName);
    for (const [id, e] of Object.entries(backends)) {
      const b = p?.backends.find((x) => x.id === id);
      if (!p || !b) {
        ignored.push(`${poolName}/${id}`);
        continue;
      }
      if (e.draining) {
        b.draining = true;
        drained.push(`${poolName}/${id}`);
      }
      if (e.weight !== undefined) {
        const configured = configWeight(p, b);
        if (configured === e.config_weight) {
          b.weight = e.weight;
          weights.push(`${poolName}/${id}=${e.weight}`);
        } else {
          log.info(
            "backend {backend}: the config's weight {weight} replaces the weight {saved} in the state file (the config changed it)",
            {
              pool: poolName,
              backend: id,
              weight: configured,
              saved: e.weight,
            },
          );
        }
      }
    }
  }
  for (const p of pools.values()) p.refresh(true);
  log.info("operator state restored from {file}", { file: path, drained, weights, ignored });
}

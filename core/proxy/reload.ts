/**
 * Reload: re-read the config, re-import the plugins (and the helper files they import), build a
 * new gateway next to the running one and swap it in. Anything invalid is rejected whole and the
 * running configuration keeps serving. Backends that stay (same pool, same id and URL) are the
 * same objects, so their in-flight counts, health and latency carry over.
 */
import { ConfigError } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import type { Runtime } from "../runtime/types.ts";
import type { Gateway, GatewayDeps } from "./gateway.ts";
import { loadPlugins } from "../plugins/load.ts";

export interface ReloadResult {
  readonly ok: boolean;
  /** Why the reload was rejected, one `file:line:col: …` line each. */
  readonly problems: readonly string[];
}

export interface ServingState {
  readonly config: Config;
  readonly gateway: Gateway;
  readonly files: readonly string[];
}

/** Settings bound to the listener or the process: changing them needs a restart. */
function restartNeeded(running: Config, next: Config): string[] {
  const out: string[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (!same(running.listen, next.listen)) out.push("listen");
  if (!same(running.limits, next.limits)) out.push("limits");
  if (!same(running.log, next.log)) out.push("log");
  if (!same(running.workers, next.workers)) out.push("workers");
  return out;
}

/** What a reload needs of the server's dependencies (core/proxy/server.ts ServerDeps extends it). */
export interface ReloadDeps extends GatewayDeps {
  /** Reads the config again; without it, a reload re-uses the running config. */
  loadConfig?: () => Promise<Config>;
  /** A worker: its reloads are reported once, by the primary. */
  worker?: boolean;
}

export interface ReloaderOptions {
  runtime: Pick<Runtime, "importPlugin" | "cwd">;
  deps: ReloadDeps;
  build: (config: Config, deps: GatewayDeps) => Gateway;
  current: () => ServingState;
  /** Switch to the new state; may finish asynchronously (the primary waits for its workers) and
   * return problems that make the reload count as failed (a worker that rejected it). */
  swap: (next: ServingState) => void | Promise<readonly string[] | void>;
  stopping: () => boolean;
}

/** A reload function; calls during a reload are coalesced into one more reload after it. */
export function createReloader(o: ReloaderOptions): () => Promise<ReloadResult> {
  const log = o.deps.logging.logger;
  // A worker's reloads are reported once, by its primary.
  const info = o.deps.worker ? "debug" : "info";

  async function reloadOnce(): Promise<ReloadResult> {
    const started = performance.now();
    const running = o.current();
    try {
      const config = o.deps.loadConfig ? await o.deps.loadConfig() : running.config;
      const plugins = await loadPlugins(config, { runtime: o.runtime, registry: o.deps.registry, fresh: true });
      const fixed = restartNeeded(running.config, config);
      if (fixed.length) {
        log[o.deps.worker ? "debug" : "warning"](
          "reload cannot change {keys} while running; keeping the running values (restart to apply)",
          {
            keys: fixed.join(", "),
          },
        );
        config.listen = running.config.listen;
        config.limits = running.config.limits;
        config.log = running.config.log;
        config.workers = running.config.workers;
      }
      const gateway = o.build(config, { ...o.deps, registry: plugins.registry, previous: running.gateway });
      if (o.stopping()) {
        gateway.retire(running.gateway);
        return { ok: false, problems: ["shutting down"] };
      }
      const failed = await o.swap({ config, gateway, files: plugins.files });
      if (failed?.length) {
        log.error("reload incomplete: {problems}", { problems: failed.join("\n") });
        return { ok: false, problems: failed };
      }
      log[info]("reloaded", {
        pools: [...gateway.pools.keys()],
        plugins: [...plugins.fromFile.keys()],
        duration_ms: Math.round(performance.now() - started),
      });
      return { ok: true, problems: [] };
    } catch (e) {
      const problems = e instanceof ConfigError ? e.problems : [String((e as Error)?.message ?? e)];
      log[o.deps.worker ? "debug" : "error"]("reload rejected; the running configuration keeps serving: {problems}", {
        problems: problems.join("\n"),
      });
      return { ok: false, problems };
    }
  }

  let running: Promise<ReloadResult> | undefined;
  let queued: Promise<ReloadResult> | undefined;
  return function reload(): Promise<ReloadResult> {
    if (!running) {
      running = reloadOnce().finally(() => (running = undefined));
      return running;
    }
    // A change arrived during a reload: run once more after it, whatever the number of calls.
    queued ??= running.then((): Promise<ReloadResult> => {
      queued = undefined;
      return reload();
    });
    return queued;
  };
}

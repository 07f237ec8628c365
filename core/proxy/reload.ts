/**
 * Reload: re-read the config, re-import the plugins (and the helper files they import), build a
 * new gateway next to the running one and swap it in. Anything invalid is rejected whole and the
 * running configuration keeps serving. Backends that stay (same pool, same id and URL) are the
 * same objects, so their in-flight counts, health and latency carry over.
 */
import { ConfigError, configSource } from "../config/source.ts";
import type { Config } from "../config/schema.ts";
import { keepRunningValues, restartRequired } from "../config/reloadable.ts";
import { adminExposure } from "../config/exposure.ts";
import type { Runtime } from "../runtime/types.ts";
import type { Observer } from "../telemetry/observer.ts";
import type { GatewayMetrics } from "../telemetry/metrics.ts";
import type { StagedLog } from "../telemetry/log.ts";
import type { Gateway, GatewayDeps } from "./gateway.ts";
import { loadPlugins } from "../plugins/load.ts";
import type { StoreSet } from "../stores/set.ts";

export interface ReloadResult {
  readonly ok: boolean;
  /** Why the reload was rejected, one `file:line:col: …` line each. */
  readonly problems: readonly string[];
  /**
   * Keys the new config changes that cannot change while running (core/config/reloadable.ts):
   * their running values stay until a restart. Everything else was applied.
   */
  readonly restartRequired: readonly string[];
}

/**
 * Tracing, metrics and the admin settings for a new config, prepared next to the running ones
 * (core/admin/observability.ts): the new gateway is built with `observer` and `metrics`; `commit`
 * makes them current once it serves (the old tracer is flushed and shut down once `previous`,
 * the old gateway's requests, have finished); `abort` discards them when the reload fails.
 */
export interface StagedObservability {
  readonly observer: Observer | undefined;
  readonly metrics: GatewayMetrics | undefined;
  commit(previous: Promise<void>): void;
  abort(): void;
}

export interface ServingState {
  readonly config: Config;
  readonly gateway: Gateway;
  readonly files: readonly string[];
  /** The config's stores, open (core/stores/). */
  readonly stores?: StoreSet;
}

/** What a reload needs of the server's dependencies (core/proxy/server.ts ServerDeps extends it). */
export interface ReloadDeps extends GatewayDeps {
  /** Reads the config again; without it, a reload re-uses the running config. */
  loadConfig?: () => Promise<Config>;
  /** A worker: its reloads are reported once, by the primary. */
  worker?: boolean;
  /** Prepares tracing, metrics and admin settings for the new config; without it they stay as they are. */
  stage?: (config: Config) => Promise<StagedObservability>;
  /**
   * The stores of the new config: the running ones that did not change, the others opened (see
   * core/stores/open.ts). Without it (the cluster primary, which serves no requests) there are none.
   */
  openStores?: (config: Config, running: StoreSet | undefined) => Promise<StoreSet | undefined>;
}

export interface ReloaderOptions {
  runtime: Pick<Runtime, "importPlugin" | "cwd" | "env">;
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
    let staged: StagedObservability | undefined;
    let stagedLog: StagedLog | undefined;
    let stores: StoreSet | undefined = running.stores;
    /** Stores opened for this reload: closed again if it does not go live. */
    let opened: StoreSet | undefined;
    let restart: string[] = [];
    try {
      const config = o.deps.loadConfig ? await o.deps.loadConfig() : running.config;
      const plugins = await loadPlugins(config, { runtime: o.runtime, registry: o.deps.registry, fresh: true });
      restart = restartRequired(running.config, config);
      if (restart.length) {
        log[o.deps.worker ? "debug" : "warning"](
          "reload cannot change {keys} while running; keeping the running values (restart to apply)",
          { keys: restart.join(", "), restart_required: restart },
        );
        keepRunningValues(running.config, config, restart);
      }
      // With the running admin listener kept, a token the new config drops would leave it open.
      const exposed = adminExposure(config, o.runtime.env);
      if (exposed.length) {
        const at = configSource(config).at(["admin"]);
        throw new ConfigError(exposed.map((p) => `${at}: admin.listen (kept until a restart) ${p.message}`));
      }
      if (o.deps.openStores) {
        stores = await o.deps.openStores(config, running.stores);
        if (stores !== running.stores) opened = stores;
      }
      staged = await o.deps.stage?.(config);
      stagedLog = o.deps.logging.stage?.(config.log);
      const logging = stagedLog && stagedLog.access !== o.deps.logging.access
        ? { ...o.deps.logging, access: stagedLog.access }
        : o.deps.logging;
      const deps = staged ? { ...o.deps, logging, observer: staged.observer, metrics: staged.metrics } : { ...o.deps, logging };
      const gateway = o.build(config, { ...deps, stores, registry: plugins.registry, previous: running.gateway });
      if (o.stopping()) {
        gateway.retire(running.gateway);
        staged?.abort();
        stagedLog?.abort();
        void opened?.close(running.stores);
        return { ok: false, problems: ["shutting down"], restartRequired: restart };
      }
      const failed = await o.swap({ config, gateway, files: plugins.files, stores });
      // Swapped (with workers, in the primary at least): the new settings are the running ones,
      // never aborted from here on (the live gateway uses them).
      const committed = { staged, stagedLog };
      staged = undefined;
      stagedLog = undefined;
      opened = undefined;
      committed.staged?.commit(running.gateway.drained());
      committed.stagedLog?.commit(running.gateway.drained());
      // Stores the new config dropped or changed close once the old gateway's requests are done.
      const old = running.stores;
      const live = stores;
      if (old !== undefined && old !== live) void running.gateway.drained().then(() => old.close(live));
      if (failed?.length) {
        log.error("reload incomplete: {problems}", { problems: failed.join("\n") });
        return { ok: false, problems: failed, restartRequired: restart };
      }
      log[info]("reloaded", {
        pools: [...gateway.pools.keys()],
        plugins: [...plugins.fromFile.keys()],
        restart_required: restart,
        duration_ms: Math.round(performance.now() - started),
      });
      return { ok: true, problems: [], restartRequired: restart };
    } catch (e) {
      staged?.abort();
      stagedLog?.abort();
      void opened?.close(running.stores);
      const problems = e instanceof ConfigError ? e.problems : [String((e as Error)?.message ?? e)];
      log[o.deps.worker ? "debug" : "error"]("reload rejected; the running configuration keeps serving: {problems}", {
        problems: problems.join("\n"),
      });
      return { ok: false, problems, restartRequired: [] };
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

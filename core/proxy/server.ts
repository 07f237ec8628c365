/**
 * A gateway behind a listener: start-up (plugins, then the gateway, then the port), reload
 * without dropping connections, and graceful shutdown.
 */
import type { Config } from "../config/schema.ts";
import { loadPlugins } from "../plugins/load.ts";
import { createReloader, type ReloadDeps, type ReloadResult } from "./reload.ts";
import { buildGateway, type Gateway } from "./gateway.ts";
import { useUpstreamClient } from "../upstream/client.ts";
import { HTTP2_DEFAULTS, type Http2Settings, type Listener, type Runtime } from "../runtime/types.ts";

export interface RunningServer {
  readonly listener: Listener;
  /** The configuration being served (replaced by each successful reload). */
  readonly config: Config;
  /** The gateway serving new requests (replaced by each successful reload). */
  readonly gateway: Gateway;
  /** Files a reload depends on: the plugin files and every local file they import. */
  readonly pluginFiles: readonly string[];
  /**
   * Re-read the config and plugins and switch to them without dropping a connection. A config
   * or plugin that fails validation is rejected (its problems logged) and the old one keeps
   * serving. Concurrent calls are coalesced.
   */
  reload(): Promise<ReloadResult>;
  /** Stop accepting, let in-flight requests finish up to the config's `shutdown_timeout`, then close. */
  shutdown(): Promise<void>;
}

export interface ServerDeps extends ReloadDeps {
  /** Reads the config again for {@link RunningServer.reload}; without it, reload re-uses the first config. */
  loadConfig?: () => Promise<Config>;
  /** Called after each successful reload (e.g. to update the files being watched). */
  onReload?: (server: RunningServer) => void;
  /** Runs once the config and plugins are valid, before the proxy listens (e.g. the admin listener). */
  beforeListen?: (gateway: Gateway) => Promise<void>;
  /** Share the port with other processes (a worker, core/cluster/). */
  reusePort?: boolean;
  /** A worker: the primary runs the active health checks and logs reloads and shutdown once for all. */
  worker?: boolean;
}

/** The listener's HTTP/2 settings from `listen.http2` (defaults when `listen` is a plain address). */
function http2Settings(config: Config): Http2Settings {
  const h = config.listen.http2;
  if (h === undefined) return { ...HTTP2_DEFAULTS };
  return {
    maxConcurrentStreams: h.max_concurrent_streams,
    initialWindowSize: h.initial_window_size,
    maxHeaderListSize: h.max_header_list_size,
  };
}

/** Load the config's plugins, build the gateway, and start listening. */
export async function startServer(runtime: Runtime, config: Config, deps: ServerDeps): Promise<RunningServer> {
  // The runtime's own upstream client (Bun: raw TCP), chosen before any pool builds its agents.
  if (runtime.upstreamClient) useUpstreamClient(runtime.upstreamClient);
  const plugins = await loadPlugins(config, { runtime, registry: deps.registry, fresh: false });
  let current = { config, gateway: buildGateway(config, { ...deps, registry: plugins.registry }), files: plugins.files };
  current.gateway.activate();
  await deps.beforeListen?.(current.gateway);
  const listener = await runtime.serve({
    hostname: config.listen.hostname,
    port: config.listen.port,
    // Read `current` per request: a reload swaps it atomically; requests already in flight keep
    // the gateway (pools, strategy, middleware) they started with.
    fetch: (request, clientIp) => current.gateway.fetch(request, clientIp),
    raw: (exchange) => void current.gateway.handle(exchange),
    maxRequestBodySize: config.limits.max_request_body || Number.MAX_SAFE_INTEGER,
    idleTimeoutSeconds: Math.round(config.limits.client_idle_timeout / 1000),
    reusePort: deps.reusePort,
    h2c: config.listen.h2c ?? false,
    http2: http2Settings(config),
    onWarning: (message, properties) => deps.logging.logger.warning(message, properties),
  });
  const checks = !deps.worker;
  if (checks) { for (const pool of current.gateway.pools.values()) pool.start(); }
  let stopping: Promise<void> | undefined;
  // Gateways replaced by a reload whose requests have not all finished yet.
  const retiring = new Set<Gateway>();
  const server: RunningServer = {
    listener,
    get config() {
      return current.config;
    },
    get gateway() {
      return current.gateway;
    },
    get pluginFiles() {
      return current.files;
    },
    reload: createReloader({
      runtime,
      deps,
      build: buildGateway,
      current: () => current,
      swap(next) {
        const old = current.gateway;
        next.gateway.activate();
        current = next;
        // Health checks move to the new pools at once; the old ones would only probe twice.
        for (const p of old.pools.values()) p.stop();
        if (checks) { for (const p of next.gateway.pools.values()) p.start(); }
        // Close removed backends only once the requests that started on the old gateway are done.
        retiring.add(old);
        void old.drained().then(() => {
          retiring.delete(old);
          if (!stopping) old.retire(current.gateway);
        });
        deps.onReload?.(server);
      },
      stopping: () => stopping !== undefined,
    }),
    shutdown() {
      stopping ??= (async () => {
        const log = deps.logging.logger;
        const gateways = [current.gateway, ...retiring];
        const inflight = () => gateways.reduce((n, g) => n + g.inflight(), 0);
        log[deps.worker ? "debug" : "info"]("shutting down", { inflight: inflight() });
        for (const g of gateways) for (const p of g.pools.values()) p.stop();
        // close() stops accepting, closes idle connections and resolves once the responses in
        // flight have been written out; drained() also covers bodies still streaming from us.
        const closing = listener.close();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timedOut = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), current.config.shutdown_timeout)));
        const finished = Promise.all([...gateways.map((g) => g.drained()), closing]).then(() => false);
        const expired = await Promise.race([finished, timedOut]);
        clearTimeout(timer);
        if (expired) {
          log.warning("shutdown timeout reached; closing in-flight requests", { inflight: inflight() });
          await listener.forceClose();
        }
        for (const g of gateways) g.close();
        log[deps.worker ? "debug" : "info"]("stopped");
      })();
      return stopping;
    },
  };
  return server;
}

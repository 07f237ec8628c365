/**
 * A gateway behind a listener: start-up (plugins, then the gateway, then the port), reload
 * without dropping connections, and graceful shutdown.
 */
import type { Config } from "../config/schema.ts";
import { loadPlugins } from "../plugins/load.ts";
import { createReloader, type ReloadDeps, type ReloadResult, type ServingState } from "./reload.ts";
import { buildGateway, type Gateway } from "./gateway.ts";
import { useUpstreamClient } from "../upstream/client.ts";
import { HTTP2_DEFAULTS, type Http2Settings, type Listener, type RawExchange, type Runtime } from "../runtime/types.ts";
import type { ListenerConfig } from "../config/tls.ts";
import { listenersOf } from "../config/defaults.ts";
import { configDir, TlsManager } from "../tls/manager.ts";
import { answerChallenge, answerRedirect, Challenges, challengeResponse, redirectResponse } from "../tls/edge.ts";
import { watchFiles } from "../plugins/watch.ts";
import type { StoreSet } from "../stores/set.ts";
import type { Logging } from "../telemetry/log.ts";
import { throttle } from "../lib/throttle.ts";

export interface RunningServer {
  /** The first listener of `listen`. */
  readonly listener: Listener;
  /** Every listener, in the order of `listen` (a list: plain, TLS and redirect listeners). */
  readonly listeners: readonly Listener[];
  /** The TLS listeners' certificates, and every listener's request and handshake counts. */
  readonly tls: TlsManager;
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
  /** ACME http-01 challenges in progress, answered on every plain listener (a worker's, filled by its primary). */
  challenges?: Challenges;
}

/** A listener's HTTP/2 settings from its `http2` (defaults for a listener written as an address). */
function http2Settings(l: ListenerConfig): Http2Settings {
  const h = l.http2;
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
  // Certificates first: a bad one is a config problem, and nothing listens.
  const tls = new TlsManager(config, configDir(config, runtime.cwd()), deps.logging.logger.getChild("tls"));
  const plugins = await loadPlugins(config, { runtime, registry: deps.registry, fresh: false });
  const storeLog = deps.logging.logger.getChild("stores");
  const openStores = async (c: Config, previous: StoreSet | undefined) => {
    if (previous === undefined && (!c.stores || Object.keys(c.stores).length === 0)) return undefined;
    // Loaded only for a config with stores (with the Redis client: ~5 MB).
    const { openConfigStores } = await import("../stores/open.ts");
    return await openConfigStores(
      c.stores,
      { warning: (m, p) => storeLog.warning(m, p ?? {}), info: (m, p) => storeLog.info(m, p ?? {}) },
      previous,
    );
  };
  deps = { ...deps, openStores };
  const stores = deps.stores ?? (await openStores(config, undefined));
  let current: ServingState = {
    config,
    gateway: buildGateway(config, { ...deps, stores, registry: plugins.registry }),
    files: plugins.files,
    stores,
  };
  current.gateway.activate();
  // Discovered pools get their first members before the port opens (bounded: core/discovery/runner.ts).
  if (!deps.worker) await Promise.all([...current.gateway.pools.values()].map((p) => p.discovery?.start()));
  await deps.beforeListen?.(current.gateway);
  const challenges = deps.challenges ?? new Challenges();
  // Read `current` per request: a reload swaps it atomically; requests already in flight keep
  // the gateway (pools, strategy, middleware) they started with.
  const listeners = await listenAll(runtime, config, tls, { ...deps, challenges }, {
    fetch: (request, clientIp) => current.gateway.fetch(request, clientIp),
    raw: (exchange) => void current.gateway.handle(exchange),
  });
  const listener = listeners[0]!;
  const certWatch = config.plugins.watch && tls.listeners.length ? watchFiles(tls.files(), () => void tls.reload()) : undefined;
  // ACME once the plain listeners answer challenges; with workers the primary runs it for all.
  // Loaded only for ACME names (its defaults come from the schema, which a worker does not load).
  const acme = deps.worker || tls.acmeNames().length === 0
    ? undefined
    : (await import("../tls/acme.ts")).startAcmeFor(config, tls, deps.logging.logger.getChild("acme"), (token, keyAuthorization) => {
      if (keyAuthorization === null) challenges.delete(token);
      else challenges.set(token, keyAuthorization);
    });
  const checks = !deps.worker;
  if (checks) { for (const pool of current.gateway.pools.values()) pool.start(); }
  let stopping: Promise<void> | undefined;
  // Gateways replaced by a reload whose requests have not all finished yet.
  const retiring = new Set<Gateway>();
  const server: RunningServer = {
    listener,
    listeners,
    tls,
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
        // Rotated certificate files: new handshakes get them; a bad one is refused (the old keeps serving).
        return Promise.resolve(tls.reload());
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
        certWatch?.close();
        acme?.stop();
        // close() stops accepting, closes idle connections and resolves once the responses in
        // flight have been written out; drained() also covers bodies still streaming from us.
        const closing = Promise.all(listeners.map((l) => l.close()));
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timedOut = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), current.config.shutdown_timeout)));
        const finished = Promise.all([...gateways.map((g) => g.drained()), closing]).then(() => false);
        const expired = await Promise.race([finished, timedOut]);
        clearTimeout(timer);
        if (expired) {
          log.warning("shutdown timeout reached; closing in-flight requests", { inflight: inflight() });
          await Promise.all(listeners.map((l) => l.forceClose()));
        }
        for (const g of gateways) g.close();
        await current.stores?.close();
        log[deps.worker ? "debug" : "info"]("stopped");
      })();
      return stopping;
    },
  };
  return server;
}

/**
 * An error thrown inside the listener or a request's handling (a bug: that request got a 500 or
 * its connection was closed): logged with its stack, at most once per 10 s with the count of
 * those not logged, so that one failing on every request cannot flood the log.
 */
function reportInternalErrors(logger: Logging["logger"]): (e: unknown) => void {
  const throttled = throttle(10_000);
  let total = 0;
  return (e) => {
    total++;
    throttled((suppressed) =>
      logger.error("internal error while serving: {error}", {
        error: e instanceof Error ? e.message : String(e),
        stack: e instanceof Error ? e.stack : undefined,
        suppressed,
        total,
      })
    );
  };
}

/**
 * Bind every listener of `listen`: plain ones serve the gateway (and answer ACME challenges), TLS
 * ones the same gateway over TLS (the same request path), `redirect_https` ones a 308. A port
 * that cannot be bound closes the ones already bound.
 */
async function listenAll(
  runtime: Runtime,
  config: Config,
  tls: TlsManager,
  deps: ServerDeps,
  serve: { fetch: (request: Request, clientIp: string) => Promise<Response>; raw: (exchange: RawExchange) => void },
): Promise<Listener[]> {
  const out: Listener[] = [];
  const challenges = deps.challenges;
  const onError = reportInternalErrors(deps.logging.logger);
  try {
    for (const [i, l] of listenersOf(config.listen).entries()) {
      const stats = tls.stats[i]!;
      const secure = tls.listeners.find((x) => x.index === i);
      const port = l.redirect_https;
      let raw: (exchange: RawExchange) => void;
      let fetch: (request: Request, clientIp: string) => Response | Promise<Response>;
      if (secure) {
        raw = (ex) => {
          stats.requests++;
          serve.raw(ex);
        };
        fetch = (request, clientIp) => {
          stats.requests++;
          return serve.fetch(request, clientIp);
        };
      } else if (port !== undefined) {
        raw = (ex) => {
          stats.requests++;
          if (!answerChallenge(ex, challenges)) answerRedirect(ex, port);
        };
        fetch = (request) => {
          stats.requests++;
          return challengeResponse(request, challenges) ?? redirectResponse(request, port);
        };
      } else {
        raw = (ex) => {
          stats.requests++;
          if (!answerChallenge(ex, challenges)) serve.raw(ex);
        };
        fetch = (request, clientIp) => {
          stats.requests++;
          return challengeResponse(request, challenges) ?? serve.fetch(request, clientIp);
        };
      }
      out.push(
        await runtime.serve({
          hostname: l.hostname,
          port: l.port,
          fetch,
          raw,
          maxRequestBodySize: config.limits.max_request_body || Number.MAX_SAFE_INTEGER,
          idleTimeoutSeconds: Math.round(config.limits.client_idle_timeout / 1000),
          reusePort: deps.reusePort,
          ...(secure ? { tls: tls.serveTls(secure) } : {}),
          // HTTP/2: h2c on a plain listener; on a TLS one, by ALPN (its tls.alpn, h2 by default).
          h2c: l.h2c === true,
          http2: http2Settings(l),
          onWarning: (message, properties) => deps.logging.logger.warning(message, properties),
          onError,
        }),
      );
    }
  } catch (e) {
    await Promise.all(out.map((l) => l.forceClose()));
    throw e;
  }
  return out;
}

/** `scheme://host:port` of every listener of `server` (https for TLS ones). */
export function listenerUrls(server: RunningServer): string[] {
  const tls = new Set(server.tls.listeners.map((l) => l.index));
  return server.listeners.map((l, i) =>
    `${tls.has(i) ? "https" : "http"}://${l.hostname.includes(":") ? `[${l.hostname}]` : l.hostname}:${l.port}`
  );
}

/**
 * The gateway: a validated config wired into pools with their strategies, routes as Hono apps
 * with their middleware, and the access log. core/proxy/server.ts puts it behind a listener.
 */
import { TUNNEL_IDLE_DEFAULT, type Config, type RouteConfig } from "../config/schema.ts";
import { ConfigError, configSource } from "../config/load.ts";
import type { Logging } from "../telemetry/log.ts";
import type { Middleware } from "../plugins/api.ts";
import { FailureReporter, isolateMiddleware, isolateStrategy } from "../plugins/isolate.ts";
// deno-lint-ignore no-unused-vars -- named in the doc comments
import type { loadPlugins } from "../plugins/load.ts";
import type { Registry } from "../plugins/registry.ts";
import { Backend, Pool } from "../pool/pool.ts";
import { realClock, type Clock } from "../lib/clock.ts";
import type { RawExchange } from "../runtime/types.ts";
import type { UpstreamTls } from "../upstream/client.ts";
import type { Observer } from "../telemetry/observer.ts";
import type { GatewayMetrics } from "../telemetry/metrics.ts";
import { HTTPException } from "hono/http-exception";
import { proxyToPool } from "./proxy.ts";
import { RawIncoming, RequestRecord } from "./exchange.ts";
import { errorResponse, type ProxyResult } from "./response.ts";
import { hostRank, makeRoute, matchRoute } from "./routes.ts";
import { pluginApi } from "./plugin-context.ts";
import { type BackendUpdate, carryOperatorState, reuseBackend } from "./reuse.ts";
import { allowedUpgrade, openTunnel } from "./tunnel.ts";
import type { Env } from "./routes.ts";
import { readBackendTls } from "../tls/backend.ts";
import { dirname, resolve } from "node:path";
import type { StoreSet } from "../stores/set.ts";

export interface Gateway {
  readonly pools: ReadonlyMap<string, Pool>;
  /** Handle one request from a client at `clientIp`. */
  fetch(request: Request, clientIp: string): Promise<Response>;
  /** Handle one request from the runtime's own listener, answering through it. */
  handle(raw: RawExchange): Promise<void>;
  /** Requests being served right now (including bodies still streaming). */
  inflight(): number;
  /** Resolves when no request is in flight. */
  drained(): Promise<void>;
  close(): void;
  /** After a reload: close the backends that `successor` did not take over. */
  retire(successor: Gateway): void;
  /** Go live: take over the backends kept from the gateway this one replaces. Call before serving. */
  activate(): void;
}

export interface GatewayDeps {
  /** Built-ins, plus the config's user plugins once {@link loadPlugins} has run. */
  registry: Registry;
  logging: Logging;
  /** Time source for health checks, breakers and budgets; tests pass a manual one. */
  clock?: Clock;
  /** The gateway being replaced on reload: its backends with the same pool and id are reused. */
  previous?: Gateway;
  /** Tracing and metrics hooks (core/telemetry/observer.ts); omitted when both are off. */
  observer?: Observer;
  /** Counters other parts increment (rate limiting, plugin errors); see core/telemetry/metrics.ts. */
  metrics?: GatewayMetrics;
  /** Called after an active health check flips a backend (the primary broadcasts it to workers). */
  onHealthChange?: (pool: Pool, backend: Backend) => void;
  /** In a worker: how many worker processes share the port (they split the retry budget's reserve). */
  workers?: number;
  /** The config's `stores`, opened by the server (core/stores/); a rate limit with `store` uses them. */
  stores?: StoreSet;
}

/**
 * Build pools and routes from a config whose plugins are loaded ({@link loadPlugins}). Throws
 * {@link ConfigError} if a strategy or middleware cannot be created. User plugins are wrapped
 * for isolation; built-ins are not (they are part of the binary and tested as such).
 */
export function buildGateway(config: Config, deps: GatewayDeps): Gateway {
  const { registry, logging } = deps;
  const source = configSource(config);
  const problems: string[] = [];
  const pools = new Map<string, Pool>();
  const reused = new Set<Backend>();
  // Weight and label changes of kept backends, applied only when this gateway goes live.
  const updates = new Map<string, Map<Backend, BackendUpdate>>();
  const failureLog = logging.logger.getChild("plugins");
  const failures = (name: string) =>
    new FailureReporter(name, { error: (m, p) => failureLog.error(m, p) }, undefined, undefined, deps.metrics?.pluginErrors.child(name));
  for (const [name, pc] of Object.entries(config.pools)) {
    let tls: UpstreamTls | undefined;
    try {
      tls = readBackendTls(pc.tls, dirname(resolve(source.file)));
    } catch (e) {
      problems.push(`${source.at(["pools", name, "tls"])}: pools.${name}.tls: ${(e as Error).message}`);
      continue;
    }
    const strategyName = pc.strategy.name;
    const label = `pools.${name}.strategy: ${pc.strategy.plugin !== undefined ? `plugin ${pc.strategy.plugin}` : strategyName}`;
    try {
      if (strategyName === undefined) throw new Error("the plugin was not loaded (call loadPlugins first)");
      const api = pluginApi(registry, logging, strategyName, deps.observer);
      let strategy = registry.createStrategy(strategyName, pc.strategy.options, api);
      if (!registry.isBuiltin("strategy", strategyName)) {
        strategy = isolateStrategy(strategy, registry.createStrategy("round-robin", {}, api), failures(strategyName));
      }
      const poolUpdates = new Map<Backend, BackendUpdate>();
      const backends = pc.backends.map((b) => {
        const old = reuseBackend(deps.previous?.pools.get(name), b, pc, tls);
        if (!old) return new Backend(b, pc, tls);
        reused.add(old);
        poolUpdates.set(old, { weight: b.weight, labels: Object.freeze({ ...b.labels }) });
        return old;
      });
      updates.set(name, poolUpdates);
      pools.set(
        name,
        new Pool(name, pc, backends, strategy, strategyName, {
          clock: deps.clock ?? realClock,
          logger: logging.logger,
          onHealthChange: deps.onHealthChange,
          workers: deps.workers,
        }),
      );
    } catch (e) {
      problems.push(`${source.at(["pools", name, "strategy"])}: ${label}: ${(e as Error).message}`);
    }
  }

  const routeConfigs: RouteConfig[] = config.routes ?? [
    {
      match: { path: "/" },
      pool: [...pools.keys()][0]!,
      middleware: [],
      retry_non_idempotent: false,
      websocket: true,
      upgrade: [],
      timeouts: { tunnel_idle: TUNNEL_IDLE_DEFAULT },
    },
  ];
  deps.stores?.useMetrics(deps.metrics?.storeErrors);
  const chains = routeConfigs.map((rc, i) =>
    rc.middleware.map((m, j) => {
      const name = m.name!;
      try {
        const mw = registry.createMiddleware(name, m.options, pluginApi(registry, logging, name, deps.observer, deps.stores));
        if (registry.isBuiltin("middleware", name)) return mw;
        return isolateMiddleware(mw, failures(name), (e) => e instanceof HTTPException);
      } catch (e) {
        const label = `routes[${i}].middleware[${j}]: ${m.plugin !== undefined ? `plugin ${m.plugin}` : name}`;
        problems.push(`${source.at(["routes", i, "middleware", j])}: ${label}: ${(e as Error).message}`);
        return undefined;
      }
    })
  );
  if (problems.length) {
    // Backends taken over from the running gateway stay open: it keeps serving.
    for (const p of pools.values()) for (const b of p.backends) if (!reused.has(b)) b.close();
    throw new ConfigError(problems);
  }
  const routes = routeConfigs.map((rc, i) =>
    makeRoute(rc, pools.get(rc.pool)!, logging, chains[i] as Middleware[], config.limits.client_body_timeout)
  );
  // Most specific first: an exact host before a wildcard before none, then the longest path.
  routes.sort((a, b) => hostRank(b) - hostRank(a) || b.path.length - a.path.length);

  let inflight = 0;
  let waiters: (() => void)[] = [];
  const access = logging.access;
  const observer = deps.observer;
  const rateLimited = deps.metrics?.rateLimited;
  const finish = (ex: RequestRecord) => {
    inflight--;
    // One clock read for the metrics and the access log.
    const durationMs = performance.now() - ex.start;
    const ids = observer?.requestEnd(ex, durationMs);
    // A 429 that never reached a backend came from rate limiting on the route.
    if (rateLimited && ex.status === 429 && ex.attempts === 0) rateLimited.child(ex.route).inc();
    if (access) access.write(ex, durationMs, ids);
    if (inflight === 0 && waiters.length) {
      for (const w of waiters) w();
      waiters = [];
    }
  };

  async function fetch(request: Request, clientIp: string): Promise<Response> {
    inflight++;
    const url = request.url;
    const pathStart = url.indexOf("/", url.indexOf("//") + 2);
    const queryStart = url.indexOf("?", pathStart);
    const path = pathStart < 0 ? "/" : url.slice(pathStart, queryStart < 0 ? undefined : queryStart);
    const ex = new RequestRecord(finish, performance.now(), request.method, path, clientIp, observer);
    if (url.startsWith("https:")) ex.scheme = "https";
    let response: Response;
    try {
      const route = matchRoute(routes, request.headers.get("host"), path);
      if (observer) {
        if (route) ex.route = route.name;
        observer.requestStart(ex, request);
      }
      if (!route) {
        ex.status = 404;
        response = errorResponse(404, "no route for this host and path");
      } else {
        ex.route = route.name;
        response = await route.app.fetch(request, { ex });
        // What the client gets: a middleware may have answered or replaced the backend's response.
        if (ex.status !== 499) ex.status = response.status;
      }
    } catch (e) {
      response = failed(ex, e);
    }
    settle(ex, response);
    return response;
  }

  /** After the route answered: end the request now, or when its streamed body ends. */
  function settle(ex: RequestRecord, response: Response | undefined): void {
    const upstream = ex.upstreamBody;
    if (response !== undefined && ex.streaming && upstream !== undefined && response.body !== upstream) {
      // A middleware replaced the proxied response (or failed after it): nobody will read the
      // backend's body, so cancel it; that releases the backend and ends the request.
      upstream.cancel().catch(() => {});
    } else if (!ex.streaming) ex.done();
  }

  function failed(ex: RequestRecord, e: unknown): Response {
    logging.logger.error("request failed", { error: String(e), path: ex.path });
    ex.status = 500;
    ex.error = String(e);
    return errorResponse(500, "internal error");
  }

  async function handle(raw: RawExchange): Promise<void> {
    inflight++;
    const target = raw.target;
    const q = target.indexOf("?");
    const path = q < 0 ? target : target.slice(0, q);
    const ex = new RequestRecord(finish, performance.now(), raw.method, path, raw.clientIp, observer);
    // The access log names the protocol when it is not HTTP/1.1.
    const version = raw.httpVersion ?? (raw.minor === 0 ? "1.0" : undefined);
    if (version !== undefined) ex.protocol = version;
    if (raw.scheme === "https") ex.scheme = "https";
    const incoming = new RawIncoming(raw);
    let response: Response | undefined;
    try {
      const route = matchRoute(routes, raw.host, path);
      if (observer) {
        if (route) ex.route = route.name;
        observer.requestStart(ex, incoming);
      }
      if (!route) {
        ex.status = 404;
        response = errorResponse(404, "no route for this host and path");
      } else {
        ex.route = route.name;
        // An Upgrade the route passes through (a WebSocket) becomes a tunnel after the backend's 101.
        const upgrade = raw.upgrade;
        if (upgrade !== undefined && raw.bodyLength === 0 && raw.switchProtocols !== undefined) {
          incoming.upgrade = allowedUpgrade(upgrade, route.options);
        }
        if (route.direct) {
          const result: ProxyResult = await proxyToPool(route.pool, incoming, ex, route.options);
          if (result instanceof Response) response = result;
          else if (result.upgraded !== undefined) return openTunnel(raw, result.upgraded, ex, route.options.tunnelIdleMs);
          else {
            raw.respond(result.status, result.statusText, result.block ?? result.headers, result.body, result.length);
            return settle(ex, undefined);
          }
        } else {
          const env: Env["Bindings"] = { ex, raw, upgrade: incoming.upgrade };
          response = await route.app.fetch(incoming.toRequest(), env);
          const up = env.upgraded;
          if (up !== undefined) {
            if (response === env.tunnelAnswer) return openTunnel(raw, up, ex, route.options.tunnelIdleMs);
            // A middleware answered in place of the backend's 101: that backend connection is not used.
            ex.status = response.status;
            up.backend.destroy();
            up.done(0);
          }
        }
        // What the client gets: a middleware may have answered or replaced the backend's response.
        if (ex.status !== 499) ex.status = response.status;
      }
    } catch (e) {
      response = failed(ex, e);
    }
    raw.respondWith(response);
    settle(ex, response);
  }

  return {
    pools,
    fetch,
    handle,
    inflight: () => inflight,
    drained: () => (inflight === 0 ? Promise.resolve() : new Promise<void>((r) => waiters.push(r))),
    close() {
      for (const p of pools.values()) p.close();
    },
    activate() {
      for (const [name, p] of pools) {
        // Drains and admin weights of the gateway being replaced, as they are at the swap.
        carryOperatorState(deps.previous?.pools.get(name), p, updates.get(name), logging.logger);
        p.activate(updates.get(name));
      }
    },
    retire(successor) {
      const kept = new Set<Backend>();
      for (const p of successor.pools.values()) for (const b of p.backends) kept.add(b);
      for (const p of pools.values()) for (const b of p.backends) if (!kept.has(b)) b.close();
    },
  };
}

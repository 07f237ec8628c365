/**
 * The gateway: a validated config wired into pools with their strategies, routes as Hono apps
 * with their middleware, and the access log. core/proxy/server.ts puts it behind a listener.
 */
import type { Config, RouteConfig } from "../config/schema.ts";
import { TUNNEL_IDLE_DEFAULT } from "../config/defaults.ts";
import { ConfigError, configSource } from "../config/source.ts";
import type { Logging } from "../telemetry/log.ts";
import { isRateLimitDenial } from "../middleware/rate-limit.ts";
import type { Middleware, Transform } from "../plugins/api.ts";
import { FailureReporter, isolateMiddleware, isolateStrategy, isolateTransform, PluginFailure } from "../plugins/isolate.ts";
import { isTransform } from "../plugins/registry.ts";
// deno-lint-ignore no-unused-vars -- named in the doc comments
import type { loadPlugins } from "../plugins/load.ts";
import type { Registry } from "../plugins/registry.ts";
import { Backend, Pool } from "../pool/pool.ts";
import { realClock, type Clock } from "../lib/clock.ts";
import type { RawExchange } from "../runtime/types.ts";
import type { UpstreamTls } from "../upstream/client.ts";
import type { Observer } from "../telemetry/observer.ts";
import type { GatewayMetrics } from "../telemetry/metrics.ts";
import { proxyToPool } from "./proxy.ts";
import { RawIncoming, RequestRecord } from "./exchange.ts";
import { countedBody, errorResponse, type ProxyResult, respondRaw } from "./response.ts";
import { isHttpException, makeRoute, routeLabel } from "./routes.ts";
import { byPrecedence, matchRoute, type RouteRequest, unreachableRoutes } from "./route-match.ts";
import { EditedIncoming, editedHead, RequestEdit, ResponseEdit, runRequestHooks, runResponseHooks } from "./transform.ts";
import { pluginApi } from "./plugin-context.ts";
import { type BackendUpdate, carryOperatorState, retireBackend, reuseBackend } from "./reuse.ts";
import { allowedUpgrade, openTunnel } from "./tunnel.ts";
import { attachDiscovery, carriedMembers, dropRemoved } from "./discovered.ts";
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
  /** Called after a pool's discovery changed its members or weights (the primary tells its workers). */
  onMembersChange?: (pool: Pool) => void;
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
      const previous = deps.previous?.pools.get(name);
      const backends = pc.discovery ? carriedMembers(previous, pc, tls, reused) : pc.backends.map((b) => {
        const old = reuseBackend(previous, b, pc, tls);
        if (!old) return new Backend(b, pc, tls);
        reused.add(old);
        poolUpdates.set(old, { weight: b.weight, labels: Object.freeze({ ...b.labels }) });
        return old;
      });
      updates.set(name, poolUpdates);
      const clock = deps.clock ?? realClock;
      const pool = new Pool(name, pc, backends, strategy, strategyName, {
        clock,
        logger: logging.logger,
        onHealthChange: deps.onHealthChange,
        workers: deps.workers,
        onBackendGone: deps.observer ? (p, id) => deps.observer!.backendGone(p, id) : undefined,
      });
      pools.set(name, pool);
      const d = pc.discovery;
      if (d) {
        try {
          const user = d.name !== undefined && !registry.isBuiltin("discovery", d.name);
          attachDiscovery(pool, { ...deps, clock, previous, tls, failures: user ? failures(d.name!) : undefined });
        } catch (e) {
          const what = d.plugin !== undefined ? `plugin ${d.plugin}` : "dns";
          problems.push(`${source.at(["pools", name, "discovery"])}: pools.${name}.discovery: ${what}: ${(e as Error).message}`);
        }
      }
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
  const chains = routeConfigs.map((rc, i) =>
    rc.middleware.map((m, j) => {
      const name = m.name!;
      try {
        const mw = registry.createMiddleware(name, m.options, pluginApi(registry, logging, name, deps.observer, deps.stores));
        if (registry.isBuiltin("middleware", name)) return mw;
        if (isTransform(mw)) return isolateTransform(mw, failures(name));
        return isolateMiddleware(mw, failures(name), isHttpException);
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
    // Sources created for this config are never started: abort their signals all the same.
    for (const p of pools.values()) p.discovery?.stop();
    throw new ConfigError(problems);
  }
  const routes = routeConfigs.map((rc, i) =>
    makeRoute(rc, i, pools.get(rc.pool)!, logging, chains[i] as (Middleware | Transform)[], config.limits.client_body_timeout)
  );
  // Most specific first (route-match.ts, docs/routing.md).
  routes.sort(byPrecedence);
  for (const [i, why] of unreachableRoutes(routes)) {
    logging.logger.warn("route can never match", { route: `routes[${i}] ${routeLabel(routeConfigs[i]!.match)}`, why });
  }

  let inflight = 0;
  let waiters: (() => void)[] = [];
  const access = logging.access;
  // What the access log's format reads beyond the default line (combined: the request line and two headers).
  const needsTarget = access?.needs?.target === true;
  const needsHeaders = access?.needs?.headers === true;
  const observer = deps.observer;
  const rateLimited = deps.metrics?.rateLimited;
  const finish = (ex: RequestRecord) => {
    inflight--;
    // One clock read for the metrics and the access log.
    const durationMs = performance.now() - ex.start;
    const ids = observer?.requestEnd(ex, durationMs);
    // A 429 that never reached a backend came from rate limiting on the route (not a `respond`).
    if (rateLimited && ex.status === 429 && ex.attempts === 0 && !ex.transformAnswered) rateLimited.child(ex.route).inc();
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
    if (needsTarget) ex.target = pathStart < 0 ? "/" : url.slice(pathStart);
    if (needsHeaders) {
      ex.referer = request.headers.get("referer");
      ex.userAgent = request.headers.get("user-agent");
    }
    let response: Response;
    try {
      const headers = request.headers;
      const by: RouteRequest = { method: request.method, header: (n) => headers.get(n) };
      const route = matchRoute(routes, headers.get("host"), path, by, queryStart < 0 ? "" : url.slice(queryStart + 1));
      if (observer) {
        if (route) ex.route = route.name;
        observer.requestStart(ex, request);
      }
      if (!route) {
        ex.status = 404;
        response = errorResponse(404, "no route for this host and path");
      } else {
        ex.route = route.name;
        ex.pool = route.pool.name;
        ex.hold();
        response = await (route.chain.app ?? await route.chain.load()).fetch(request, { ex });
        // What the client gets: a middleware may have answered or replaced the backend's response.
        if (ex.status !== 499) ex.status = response.status;
      }
    } catch (e) {
      response = failed(ex, e);
    }
    response = settle(ex, response);
    return response;
  }

  /**
   * After the route answered: end the request now, or when its streamed body ends. A body that
   * is not the backend's as it came (a middleware's answer, a compressed body) is counted as it
   * goes to the client: the access log gets its real bytes, and the request ends with it.
   */
  function settle(ex: RequestRecord, response: Response): Response {
    const upstream = ex.upstreamBody;
    const body = response.body;
    if (body === null || body === upstream) {
      ex.release();
      if (ex.streaming && upstream !== undefined && body === null) upstream.cancel().catch(() => {});
      else if (!ex.streaming) ex.done();
      return response;
    }
    // Nobody reads the backend's body unless a middleware took it (a locked stream): cancel it;
    // that releases the backend and ends its side of the request.
    if (ex.streaming && upstream !== undefined && !upstream.locked) upstream.cancel().catch(() => {});
    ex.hold();
    const counted = countedBody(body, (bytes) => ex.release(bytes));
    if (!ex.streaming) ex.done();
    return new Response(counted, response);
  }

  function failed(ex: RequestRecord, e: unknown): Response {
    // A user plugin's failure was already counted and logged (rate-limited) by its wrapper.
    if (!(e instanceof PluginFailure)) logging.logger.error("request failed", { error: String(e), path: ex.path });
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
    if (needsTarget) ex.target = target;
    if (needsHeaders) {
      ex.referer = raw.header("referer");
      ex.userAgent = raw.header("user-agent");
    }
    // The access log names the protocol when it is not HTTP/1.1.
    const version = raw.httpVersion ?? (raw.minor === 0 ? "1.0" : undefined);
    if (version !== undefined) ex.protocol = version;
    if (raw.scheme === "https") ex.scheme = "https";
    const incoming = new RawIncoming(raw);
    let response: Response;
    try {
      const route = matchRoute(routes, raw.host, path, raw, q < 0 ? "" : target.slice(q + 1));
      if (observer) {
        if (route) ex.route = route.name;
        observer.requestStart(ex, incoming);
      }
      if (!route) {
        ex.status = 404;
        response = errorResponse(404, "no route for this host and path");
      } else {
        ex.route = route.name;
        ex.pool = route.pool.name;
        // An Upgrade the route passes through (a WebSocket) becomes a tunnel after the backend's 101.
        const upgrade = raw.upgrade;
        if (upgrade !== undefined && raw.bodyLength === 0 && raw.switchProtocols !== undefined) {
          incoming.upgrade = allowedUpgrade(upgrade, route.options);
        }
        const tf = route.transforms;
        if (tf !== undefined) {
          // Transforms only: still the direct path, with their edits (transform.ts).
          const edit = RequestEdit.of(ex, target, raw.host, (n) => raw.header(n));
          const { answer, ran } = runRequestHooks(tf, edit);
          edit.record(ex);
          if (answer !== undefined) ex.transformAnswered = !isRateLimitDenial(answer);
          const result = answer ?? await proxyToPool(route.pool, new EditedIncoming(incoming, edit), ex, route.options);
          if (result instanceof Response) {
            const res = new ResponseEdit(result);
            runResponseHooks(tf, ran, res, edit);
            response = res.response;
          } else if (result.upgraded !== undefined) return openTunnel(raw, result.upgraded, ex, route.options.tunnelIdleMs);
          else {
            let headers = result.block ?? result.headers;
            if (route.editsResponses) headers = editedHead(tf, ran, edit, result.status, result.block, () => result.headers);
            respondRaw(raw, result, headers);
            if (!ex.streaming) ex.done();
            return;
          }
        } else if (route.direct) {
          const result: ProxyResult = await proxyToPool(route.pool, incoming, ex, route.options);
          if (result instanceof Response) response = result;
          else if (result.upgraded !== undefined) return openTunnel(raw, result.upgraded, ex, route.options.tunnelIdleMs);
          else {
            respondRaw(raw, result, result.block ?? result.headers);
            if (!ex.streaming) ex.done();
            return;
          }
        } else {
          const env: Env["Bindings"] = { ex, raw, upgrade: incoming.upgrade };
          ex.hold();
          response = await (route.chain.app ?? await route.chain.load()).fetch(incoming.toRequest(), env);
          const up = env.upgraded;
          if (up !== undefined) {
            if (response === env.tunnelAnswer) {
              ex.release();
              return openTunnel(raw, up, ex, route.options.tunnelIdleMs);
            }
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
    raw.respondWith(settle(ex, response));
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
      // The stores count failures in this gateway's metrics from now (not on a build a failed reload drops).
      deps.stores?.useMetrics(deps.metrics?.storeErrors);
      for (const [name, p] of pools) {
        // Drains and admin weights of the gateway being replaced, as they are at the swap.
        carryOperatorState(deps.previous?.pools.get(name), p, updates.get(name), logging.logger);
        p.activate(updates.get(name));
        dropRemoved(p);
      }
    },
    retire(successor) {
      const kept = new Set<Backend>();
      for (const p of successor.pools.values()) for (const b of p.backends) kept.add(b);
      for (const p of pools.values()) for (const b of p.backends) if (!kept.has(b)) retireBackend(p, b, successor.pools, deps.observer);
    },
  };
}

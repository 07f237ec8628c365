/**
 * Wires a validated config into a running gateway: pools with their strategies, routes as Hono
 * apps, the listener, the access log and graceful shutdown.
 */
import { Hono } from "hono";
import type { Config, RouteConfig } from "./config/schema.ts";
import { ConfigError } from "./config/load.ts";
import type { Logging } from "./log.ts";
import type { PluginApi, PluginLogger } from "./plugin-api.ts";
import { Backend, Pool } from "./pool.ts";
import { realClock, type Clock } from "./clock.ts";
import { errorResponse, proxyToPool, type Exchange } from "./proxy.ts";
import type { Registry } from "./registry.ts";
import type { Listener, Runtime } from "./runtime/types.ts";
import { NOOP_PLUGIN_TRACER, type Observer } from "./observer.ts";
import type { GatewayMetrics } from "./metrics.ts";
import type { SpanHandle } from "./telemetry.ts";

type Env = { Bindings: { ex: Exchange } };

interface Route {
  /** Low-cardinality name for logs and spans: `host/path → pool`. */
  readonly name: string;
  readonly host: string | undefined;
  /** `*.example.com` stored as `.example.com`. */
  readonly hostSuffix: string | undefined;
  readonly path: string;
  readonly pool: Pool;
  readonly app: Hono<Env>;
}

export interface Gateway {
  readonly pools: ReadonlyMap<string, Pool>;
  /** Handle one request from a client at `clientIp`. */
  fetch(request: Request, clientIp: string): Promise<Response>;
  /** Requests being served right now (including bodies still streaming). */
  inflight(): number;
  /** Resolves when no request is in flight. */
  drained(): Promise<void>;
  close(): void;
}

export interface GatewayDeps {
  registry: Registry;
  logging: Logging;
  /** Time source for health checks, breakers and budgets; tests pass a manual one. */
  clock?: Clock;
  /** Tracing and metrics hooks (core/observer.ts); omitted when both are off. */
  observer?: Observer;
  /** Counters other parts increment (rate limiting, plugin errors); see core/metrics.ts. */
  metrics?: GatewayMetrics;
}

class RequestRecord implements Exchange {
  route = "";
  pool = "";
  backend = "";
  status = 0;
  bytes = 0;
  attempts = 0;
  retryReason: string | undefined = undefined;
  streaming = false;
  error: string | undefined = undefined;
  span: SpanHandle | undefined = undefined;
  #finished = false;

  constructor(
    private readonly finish: (ex: RequestRecord) => void,
    readonly start: number,
    readonly method: string,
    readonly path: string,
    readonly clientIp: string,
    readonly observer: Observer | undefined,
  ) {}

  done(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.finish(this);
  }
}

function pluginLogger(logging: Logging, name: string): PluginLogger {
  const l = logging.logger.getChild(["plugin", name]);
  return {
    debug: (m, p) => l.debug(m, p ?? {}),
    info: (m, p) => l.info(m, p ?? {}),
    warn: (m, p) => l.warn(m, p ?? {}),
    error: (m, p) => l.error(m, p ?? {}),
  };
}

/** Build pools and routes from a config. Throws {@link ConfigError} if a strategy cannot be created. */
export function buildGateway(config: Config, deps: GatewayDeps): Gateway {
  const { registry, logging } = deps;
  const problems: string[] = [];
  const pools = new Map<string, Pool>();
  for (const [name, pc] of Object.entries(config.pools)) {
    const strategyName = pc.strategy.name ?? pc.strategy.plugin!;
    const api: PluginApi = {
      strategy: (n, options) => registry.createStrategy(n, options ?? {}, api),
      log: pluginLogger(logging, strategyName),
      tracer: deps.observer?.pluginTracer(strategyName) ?? NOOP_PLUGIN_TRACER,
    };
    try {
      if (pc.strategy.plugin !== undefined) throw new Error("strategy plugins from files are not supported yet");
      const strategy = registry.createStrategy(strategyName, pc.strategy.options, api);
      const backends = pc.backends.map((b) => new Backend(b, pc));
      pools.set(name, new Pool(name, pc, backends, strategy, strategyName, { clock: deps.clock ?? realClock, logger: logging.logger }));
    } catch (e) {
      problems.push(`pools.${name}.strategy: ${(e as Error).message}`);
    }
  }
  if (problems.length) {
    for (const p of pools.values()) p.close();
    throw new ConfigError(problems);
  }

  const routeConfigs: RouteConfig[] = config.routes ?? [
    { match: { path: "/" }, pool: [...pools.keys()][0]!, retry_non_idempotent: false },
  ];
  const routes = routeConfigs.map((rc) => makeRoute(rc, pools.get(rc.pool)!, logging));
  // Most specific first: an exact host before a wildcard before none, then the longest path.
  routes.sort((a, b) => hostRank(b) - hostRank(a) || b.path.length - a.path.length);

  let inflight = 0;
  let waiters: (() => void)[] = [];
  const access = logging.access;
  const observer = deps.observer;
  const finish = (ex: RequestRecord) => {
    inflight--;
    const ids = observer?.requestEnd(ex);
    if (access) {
      access.info("access", {
        method: ex.method,
        path: ex.path,
        status: ex.status,
        route: ex.route,
        pool: ex.pool,
        backend: ex.backend,
        duration_ms: Math.round((performance.now() - ex.start) * 1000) / 1000,
        bytes: ex.bytes,
        attempts: ex.attempts,
        client_ip: ex.clientIp,
        ...(ex.retryReason ? { retry_reason: ex.retryReason } : {}),
        ...(ex.error ? { error: ex.error } : {}),
        ...ids,
      });
    }
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
        if (!ex.status) ex.status = response.status;
      }
    } catch (e) {
      logging.logger.error("request failed", { error: String(e), path });
      ex.status = 500;
      ex.error = String(e);
      ex.streaming = false;
      response = errorResponse(500, "internal error");
    }
    if (!ex.streaming) ex.done();
    return response;
  }

  return {
    pools,
    fetch,
    inflight: () => inflight,
    drained: () => (inflight === 0 ? Promise.resolve() : new Promise<void>((r) => waiters.push(r))),
    close() {
      for (const p of pools.values()) p.close();
    },
  };
}

function makeRoute(rc: RouteConfig, pool: Pool, logging: Logging): Route {
  const host = rc.match.host?.toLowerCase();
  const app = new Hono<Env>();
  app.onError((err, c) => {
    logging.logger.error("route failed", { route: c.env.ex.route, error: String(err) });
    c.env.ex.error = String(err);
    return errorResponse(500, "internal error");
  });
  const options = { retryNonIdempotent: rc.retry_non_idempotent };
  app.all("*", (c) => proxyToPool(pool, c.req.raw, c.env.ex, options));
  return {
    name: `${host ?? "*"}${rc.match.path} → ${pool.name}`,
    host: host?.startsWith("*.") ? undefined : host,
    hostSuffix: host?.startsWith("*.") ? host.slice(1) : undefined,
    path: rc.match.path,
    pool,
    app,
  };
}

function hostRank(r: Route): number {
  return r.host ? 2 : r.hostSuffix ? 1 : 0;
}

function matchRoute(routes: readonly Route[], hostHeader: string | null, path: string): Route | undefined {
  let host = hostHeader?.toLowerCase() ?? "";
  const colon = host.lastIndexOf(":");
  if (colon > 0 && host.indexOf("]", colon) < 0) host = host.slice(0, colon);
  for (const r of routes) {
    if (r.host !== undefined && r.host !== host) continue;
    if (r.hostSuffix !== undefined && !host.endsWith(r.hostSuffix)) continue;
    if (pathMatches(r.path, path)) return r;
  }
  return undefined;
}

/** `/api` matches `/api` and `/api/x` but not `/apix`; a prefix ending in `/` matches anything below it. */
function pathMatches(prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  return prefix.endsWith("/") || path.length === prefix.length || path.charCodeAt(prefix.length) === 47;
}

export interface RunningServer {
  readonly listener: Listener;
  readonly gateway: Gateway;
  /** Stop accepting, let in-flight requests finish up to the config's `shutdown_timeout`, then close. */
  shutdown(): Promise<void>;
}

/** Start listening with a built gateway. */
export async function startServer(runtime: Runtime, config: Config, deps: GatewayDeps): Promise<RunningServer> {
  const gateway = buildGateway(config, deps);
  const listener = await runtime.serve({
    hostname: config.listen.hostname,
    port: config.listen.port,
    fetch: gateway.fetch,
    maxRequestBodySize: config.limits.max_request_body || Number.MAX_SAFE_INTEGER,
    idleTimeoutSeconds: Math.round(config.limits.client_idle_timeout / 1000),
  });
  for (const pool of gateway.pools.values()) pool.start();
  let stopping: Promise<void> | undefined;
  return {
    listener,
    gateway,
    shutdown() {
      stopping ??= (async () => {
        const log = deps.logging.logger;
        log.info("shutting down", { inflight: gateway.inflight() });
        // close() stops accepting, closes idle connections and resolves once the responses in
        // flight have been written out; drained() also covers bodies still streaming from us.
        const closing = listener.close();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timedOut = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), config.shutdown_timeout)));
        const finished = Promise.all([gateway.drained(), closing]).then(() => false);
        const expired = await Promise.race([finished, timedOut]);
        clearTimeout(timer);
        if (expired) {
          log.warning("shutdown timeout reached; closing in-flight requests", { inflight: gateway.inflight() });
          await listener.forceClose();
        }
        gateway.close();
        log.info("stopped");
      })();
      return stopping;
    },
  };
}

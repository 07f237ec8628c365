/**
 * The gateway: a validated config wired into pools with their strategies, routes as Hono apps
 * with their middleware, and the access log. core/proxy/server.ts puts it behind a listener.
 */
import { Hono, type MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { Config, RouteConfig } from "../config/schema.ts";
import { ConfigError, configSource } from "../config/load.ts";
import type { Logging } from "../telemetry/log.ts";
import type { Middleware, PluginApi, PluginLogger } from "../plugins/api.ts";
import { FailureReporter, isolateMiddleware, isolateStrategy, PluginFailure } from "../plugins/isolate.ts";
import type { loadPlugins } from "../plugins/load.ts";
import { reuseBackend } from "./reload.ts";
import { Backend, Pool } from "../pool/pool.ts";
import { realClock, type Clock } from "../lib/clock.ts";
import { errorResponse, proxyToPool, requestIncoming, toResponse, type Exchange, type Incoming, type ProxyResult, type RouteOptions } from "./proxy.ts";
import { upstreamHeadersBlock, upstreamHeadersRaw } from "../http1/headers.ts";
import type { HeaderBlock } from "../http1/bytes.ts";
import type { RawExchange } from "../runtime/types.ts";
import type { Registry } from "../plugins/registry.ts";
import { NOOP_PLUGIN_TRACER, type ObservedRequest, type Observer } from "../telemetry/observer.ts";
import type { GatewayMetrics } from "../telemetry/metrics.ts";
import type { SpanHandle } from "../telemetry/tracing.ts";

type Env = { Bindings: { ex: Exchange; raw?: RawExchange } };

interface Route {
  /** Low-cardinality name for logs and spans: `host/path → pool`. */
  readonly name: string;
  readonly host: string | undefined;
  /** `*.example.com` stored as `.example.com`. */
  readonly hostSuffix: string | undefined;
  readonly path: string;
  readonly pool: Pool;
  readonly app: Hono<Env>;
  /** No middleware: the raw listener's requests go straight to the proxy, no Request/Response made. */
  readonly direct: boolean;
  readonly options: RouteOptions;
}

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
  upstreamBody: ReadableStream<Uint8Array> | undefined = undefined;
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

/**
 * {@link Incoming} over the raw listener's request. Headers are built only when something reads
 * them (a strategy plugin, tracing); the observer reads `method`, `url` and `headers` only.
 */
class RawIncoming implements Incoming, ObservedRequest {
  #headers: Headers | undefined;
  #keyed: WeakMap<Headers, unknown> | undefined;
  #keyedValue: unknown;
  constructor(readonly raw: RawExchange) {}
  header(name: string): string | null {
    return this.raw.header(name);
  }
  keyByHeaders<T>(map: WeakMap<Headers, T>, value: T): void {
    this.#keyed = map as WeakMap<Headers, unknown>;
    this.#keyedValue = value;
    if (this.#headers !== undefined) map.set(this.#headers, value);
  }
  /** The web Request for middleware; its Headers (a copy of ours) is keyed as well, so `c.req.raw` finds the span too. */
  toRequest(): Request {
    const request = this.raw.toRequest();
    this.#keyed?.set(request.headers, this.#keyedValue);
    return request;
  }
  get method() {
    return this.raw.method;
  }
  get target() {
    return this.raw.target;
  }
  get host() {
    return this.raw.host;
  }
  get proto(): "http" {
    return "http";
  }
  get bodyLength() {
    return this.raw.bodyLength;
  }
  get body() {
    return this.raw.body;
  }
  get signal() {
    return this.raw.signal;
  }
  get url() {
    return `http://${this.raw.host || "localhost"}${this.raw.target}`;
  }
  get headers(): Headers {
    if (this.#headers === undefined) {
      const h = (this.#headers = new Headers());
      const raw = this.raw.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) h.append(raw[i]!, raw[i + 1]!);
      this.#keyed?.set(h, this.#keyedValue);
    }
    return this.#headers;
  }
  forwardHeaders(clientIp: string): Record<string, string> {
    return upstreamHeadersRaw(this.raw.rawHeaders, { clientIp, proto: "http", hostOverride: undefined });
  }
  forwardBlock(clientIp: string, tracing: boolean): { headers: Record<string, string>; block: HeaderBlock } | undefined {
    const f = this.raw.forward;
    if (f === undefined || (tracing && f.traceContext)) return undefined;
    return { headers: upstreamHeadersBlock(f.hostLine, f.forwardedFor, f.contentLength, { clientIp, proto: "http", hostOverride: undefined }), block: f.block };
  }
  bodyFault(): number {
    return this.raw.bodyFault();
  }
  wholeBody(): Uint8Array | undefined {
    return this.raw.wholeBody?.();
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

/** The `api` argument of a plugin's create(): other plugins by name, and a logger with its name. */
export function pluginApi(registry: Registry, logging: Logging, name: string, observer?: Observer): PluginApi {
  const api: PluginApi = {
    strategy: (n, options) => registry.createStrategy(n, options ?? {}, api),
    key: (n, options) => registry.createKey(n, options ?? {}, api),
    log: pluginLogger(logging, name),
    tracer: observer?.pluginTracer(name) ?? NOOP_PLUGIN_TRACER,
  };
  return api;
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
  const updates = new Map<string, Map<Backend, { weight: number; labels: Readonly<Record<string, string>> }>>();
  const failureLog = logging.logger.getChild("plugins");
  const failures = (name: string) =>
    new FailureReporter(name, { error: (m, p) => failureLog.error(m, p) }, undefined, undefined, deps.metrics?.pluginErrors.child(name));
  for (const [name, pc] of Object.entries(config.pools)) {
    const strategyName = pc.strategy.name;
    const label = `pools.${name}.strategy: ${pc.strategy.plugin !== undefined ? `plugin ${pc.strategy.plugin}` : strategyName}`;
    try {
      if (strategyName === undefined) throw new Error("the plugin was not loaded (call loadPlugins first)");
      const api = pluginApi(registry, logging, strategyName, deps.observer);
      let strategy = registry.createStrategy(strategyName, pc.strategy.options, api);
      if (!registry.isBuiltin("strategy", strategyName)) {
        strategy = isolateStrategy(strategy, registry.createStrategy("round-robin", {}, api), failures(strategyName));
      }
      const poolUpdates = new Map<Backend, { weight: number; labels: Readonly<Record<string, string>> }>();
      const backends = pc.backends.map((b) => {
        const old = reuseBackend(deps.previous?.pools.get(name), b, pc);
        if (!old) return new Backend(b, pc);
        reused.add(old);
        poolUpdates.set(old, { weight: b.weight, labels: Object.freeze({ ...b.labels }) });
        return old;
      });
      updates.set(name, poolUpdates);
      pools.set(name, new Pool(name, pc, backends, strategy, strategyName, { clock: deps.clock ?? realClock, logger: logging.logger, onHealthChange: deps.onHealthChange }));
    } catch (e) {
      problems.push(`${source.at(["pools", name, "strategy"])}: ${label}: ${(e as Error).message}`);
    }
  }

  const routeConfigs: RouteConfig[] = config.routes ?? [
    { match: { path: "/" }, pool: [...pools.keys()][0]!, middleware: [], retry_non_idempotent: false },
  ];
  const chains = routeConfigs.map((rc, i) =>
    rc.middleware.map((m, j) => {
      const name = m.name!;
      try {
        const mw = registry.createMiddleware(name, m.options, pluginApi(registry, logging, name, deps.observer));
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
  const routes = routeConfigs.map((rc, i) => makeRoute(rc, pools.get(rc.pool)!, logging, chains[i] as Middleware[], config.limits.client_body_timeout));
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
        if (route.direct) {
          const result: ProxyResult = await proxyToPool(route.pool, incoming, ex, route.options);
          if (result instanceof Response) response = result;
          else {
            raw.respond(result.status, result.statusText, result.block ?? result.headers, result.body, result.length);
            return settle(ex, undefined);
          }
        } else response = await route.app.fetch(incoming.toRequest(), { ex, raw });
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
      for (const [name, p] of pools) p.activate(updates.get(name));
    },
    retire(successor) {
      const kept = new Set<Backend>();
      for (const p of successor.pools.values()) for (const b of p.backends) kept.add(b);
      for (const p of pools.values()) for (const b of p.backends) if (!kept.has(b)) b.close();
    },
  };
}

function makeRoute(rc: RouteConfig, pool: Pool, logging: Logging, middleware: readonly Middleware[], bodyTimeoutMs: number): Route {
  const host = rc.match.host?.toLowerCase();
  const app = new Hono<Env>();
  app.onError((err, c) => {
    // A middleware's deliberate answer (401, 403, 429, …).
    if (err instanceof HTTPException) return err.getResponse();
    // A user plugin's failure was already counted and logged (rate-limited) by its wrapper.
    if (!(err instanceof PluginFailure)) logging.logger.error("route failed", { route: c.env.ex.route, error: String(err) });
    c.env.ex.error = String(err);
    return errorResponse(500, "internal error");
  });
  // No middleware, no extra work: the route is one handler, as before.
  for (const mw of middleware) app.use("*", mw as unknown as MiddlewareHandler<Env>);
  const options: RouteOptions = { retryNonIdempotent: rc.retry_non_idempotent, bodyTimeoutMs, direct: middleware.length === 0 };
  app.all("*", async (c) => toResponse(await proxyToPool(pool, requestIncoming(c.req.raw, c.env.raw), c.env.ex, options), c.env.ex));
  return {
    name: `${host ?? "*"}${rc.match.path} → ${pool.name}`,
    host: host?.startsWith("*.") ? undefined : host,
    hostSuffix: host?.startsWith("*.") ? host.slice(1) : undefined,
    path: rc.match.path,
    pool,
    app,
    direct: middleware.length === 0,
    options,
  };
}

function hostRank(r: Route): number {
  return r.host ? 2 : r.hostSuffix ? 1 : 0;
}

function matchRoute(routes: readonly Route[], hostHeader: string | null, path: string): Route | undefined {
  // The Host is read only if a route asks for one (routes with a host sort first).
  const first = routes[0];
  if (first === undefined || (first.host === undefined && first.hostSuffix === undefined)) {
    for (const r of routes) if (pathMatches(r.path, path)) return r;
    return undefined;
  }
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

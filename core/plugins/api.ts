/**
 * Fulcrum's public plugin API: the only module a strategy or middleware plugin imports, as
 * `import type { StrategyPlugin } from "fulcrum"`. Built-in strategies use exactly these types.
 *
 * Everything here is a type or a `declare`d value: the host supplies the values at run time, so
 * a plugin file next to the compiled binary works without node_modules. `fulcrum types` prints
 * this file as a `.d.ts` (`declare module "fulcrum"`), so it must stay free of imports.
 *
 * @module
 */

/**
 * A backend as a plugin sees it: read-only. The same object is passed on every call while the
 * backend stays in the pool, so a strategy may keep it as a key in a `Map` or `WeakMap`.
 */
export interface BackendView {
  /** Stable id within its pool: `host:port` of the URL unless the config sets `id`. */
  readonly id: string;
  /** Base URL of the backend, e.g. `http://10.0.0.11:8000`. */
  readonly url: string;
  /**
   * Relative weight, a positive integer.
   * @default 1
   */
  readonly weight: number;
  /** Free-form labels from the config, e.g. `{ zone: "a", canary: "true" }`. */
  readonly labels: Readonly<Record<string, string>>;
  /** Whether health checks (and passive checks) currently consider the backend healthy. */
  readonly healthy: boolean;
  /** Requests in flight to this backend right now, counted by the proxy. */
  readonly inflight: number;
  /** Exponentially weighted moving average of the time to response headers, in milliseconds. 0 until the first response. */
  readonly latencyEwma: number;
  /** Failures (connection errors, timeouts, 5xx) among the most recent attempts; decays on success. */
  readonly recentErrors: number;
}

/** What a strategy may read of the request it is choosing a backend for. */
export interface RequestInfo {
  /** HTTP method, upper case. */
  readonly method: string;
  /** Path of the request URL, without the query string. */
  readonly path: string;
  /** The `Host` the client asked for (without port normalisation). */
  readonly host: string;
  /** The client's IP address as seen by the listener (not `X-Forwarded-For`). */
  readonly clientIp: string;
  /** The request headers, as the client sent them. Do not modify. */
  readonly headers: Headers;
}

/** The result of one upstream attempt, passed to {@link Strategy.observe}. */
export interface Outcome {
  /** Response status, or 0 when no response arrived (connection error, timeout). */
  readonly status: number;
  /** Milliseconds from sending the request to receiving the response headers (or to the failure). */
  readonly latencyMs: number;
  /** Set when the attempt failed without a response: `"connect"`, `"reset"`, `"timeout"`. */
  readonly error?: "connect" | "reset" | "timeout";
}

/**
 * A load-balancing strategy for one pool. Created once per pool by {@link StrategyPlugin.create}.
 *
 * @example
 * ```ts
 * const strategy: Strategy = {
 *   pick(backends) { return backends[0]; },
 * };
 * ```
 */
export interface Strategy {
  /**
   * Choose a backend for a request. Called on the hot path: synchronous, and it should not
   * allocate (no `.filter()`/`.map()`); precompute in {@link Strategy.update}.
   *
   * @param backends The available backends (healthy, not drained, circuit not open). Never
   *   empty. The array keeps its identity until membership or health changes.
   * @param request The request being routed.
   * @returns One element of `backends`, or `undefined` to answer 503.
   */
  pick(backends: readonly BackendView[], request: RequestInfo): BackendView | undefined;
  /**
   * Called when the set of available backends changes (and once before the first pick), with
   * the array later passed to {@link Strategy.pick}. Rebuild lookup tables here.
   */
  update?(backends: readonly BackendView[]): void;
  /** Called after every upstream attempt with its outcome, e.g. to keep latency statistics. */
  observe?(backend: BackendView, outcome: Outcome): void;
}

/** Services the host offers to a plugin's `create()`. */
export interface PluginApi {
  /**
   * Create an instance of another registered strategy by name, e.g. as a fallback.
   * @example
   * ```ts
   * const fallback = api.strategy("round-robin");
   * ```
   */
  strategy(name: string, options?: unknown): Strategy;
  /**
   * Create the key function of a registered key plugin by name (the built-in `rate-limit` uses
   * this for `key: { plugin: ./tenant.ts }`).
   */
  key(name: string, options?: unknown): (request: RequestInfo) => string | undefined;
  /** A logger whose records carry the plugin's name. */
  readonly log: PluginLogger;
  /**
   * A tracer for the plugin's own spans, exported with the request's trace when tracing is on
   * (`telemetry.traces`); a no-op that records nothing when it is off. Optional so that a
   * plugin also runs on hosts older than it: use `api.tracer?.startSpan(…)`.
   * @example
   * ```ts
   * const span = api.tracer?.startSpan("lookup-tenant", { parent: request });
   * try { … } finally { span?.end(); }
   * ```
   */
  readonly tracer?: PluginTracer;
}

/** Creates spans for a plugin (see {@link PluginApi.tracer}). */
export interface PluginTracer {
  /**
   * Start a span. End it with {@link PluginSpan.end}.
   * @param name Low-cardinality name, e.g. `"check-api-key"` (not the path or a user id).
   * @param options.parent The request the work is for (a strategy's {@link RequestInfo}, or a
   *   middleware's `c.req.raw`): the span becomes a child of that request's SERVER span. Without
   *   it, or for a request that is not sampled, the span starts a trace of its own.
   * @param options.attributes Initial attributes.
   */
  startSpan(
    name: string,
    options?: { parent?: { readonly headers: Headers }; attributes?: Record<string, string | number | boolean> },
  ): PluginSpan;
}

/** A span started by a plugin: the OpenTelemetry `Span` methods a plugin needs. */
export interface PluginSpan {
  setAttribute(key: string, value: string | number | boolean): this;
  addEvent(name: string, attributes?: Record<string, string | number | boolean>): this;
  /** `code`: 0 unset, 1 ok, 2 error (OpenTelemetry's `SpanStatusCode`). */
  setStatus(status: { code: 0 | 1 | 2; message?: string }): this;
  recordException(exception: Error | string): void;
  /** Ends the span; it is exported in the next batch. Call exactly once. */
  end(): void;
  /** False when tracing is off or the request is not sampled: skip building costly attributes. */
  isRecording(): boolean;
}

/** Structured logger handed to plugins. `props` become JSON fields of the log record. */
export interface PluginLogger {
  debug(message: string, props?: Record<string, unknown>): void;
  info(message: string, props?: Record<string, unknown>): void;
  warn(message: string, props?: Record<string, unknown>): void;
  error(message: string, props?: Record<string, unknown>): void;
}

/**
 * The default export of a strategy plugin file.
 *
 * @typeParam O The shape of `options` from the config.
 * @example
 * ```ts
 * import type { StrategyPlugin } from "fulcrum";
 * export default {
 *   kind: "strategy",
 *   name: "first",
 *   create() {
 *     return { pick: (backends) => backends[0] };
 *   },
 * } satisfies StrategyPlugin;
 * ```
 */
export interface StrategyPlugin<O = Record<string, unknown>> {
  /** Always `"strategy"`. */
  readonly kind: "strategy";
  /** Unique name; configs refer to built-ins by it (`strategy: round-robin`). */
  readonly name: string;
  /**
   * Build a strategy for one pool. Validate `options` here and throw a `TypeError` or
   * `RangeError` naming the option and the value received: the error is shown at start.
   */
  create(options: O, api: PluginApi): Strategy;
}

/**
 * The part of a Hono `Context` a middleware plugin is given, declared here so plugin authors get
 * editor types without installing Hono. At run time it is Hono's full `Context`
 * (https://hono.dev/docs/api/context), so anything Hono documents works.
 */
export interface MiddlewareContext {
  /** The incoming request. `req.raw` is the standard `Request`. */
  readonly req: {
    readonly raw: Request;
    readonly method: string;
    readonly path: string;
    readonly url: string;
    /** One request header, case-insensitive; `undefined` when absent. */
    header(name: string): string | undefined;
  };
  /** The response so far; after `await next()` it is the backend's (headers are mutable). */
  res: Response;
  /** Set a response header (after `await next()`, on the backend's response). */
  header(name: string, value: string, options?: { append?: boolean }): void;
  /** Build a plain-text response, e.g. `return c.text("no", 403)`. */
  text(text: string, status?: number, headers?: Record<string, string>): Response;
  /** Build a JSON response. */
  json(value: unknown, status?: number, headers?: Record<string, string>): Response;
  /** Per-request values shared between middleware: `c.set("tenant", t)`, then `c.get("tenant")`. */
  set(key: string, value: unknown): void;
  get(key: string): unknown;
}

/** Calls the rest of the chain (later middleware, then the proxy). */
export type Next = () => Promise<void>;

/**
 * A standard Hono middleware: return a `Response` to answer without proxying, or `await next()`
 * and then read or change `c.res`. Hono's own middleware (`cors()`, `basicAuth()`, …) fits this
 * type too. Throwing answers this request with 500; the process keeps serving.
 */
// Declared as a method so Hono's MiddlewareHandler (which takes the full Context) is assignable.
export type Middleware = {
  handle(c: MiddlewareContext, next: Next): Response | void | Promise<Response | void>;
}["handle"];

/**
 * The default export of a middleware plugin file. Config:
 * `routes[].middleware: [ { plugin: ./api-key.ts, options: { keys: [...] } } ]`.
 *
 * @typeParam O The shape of `options` from the config.
 * @example
 * ```ts
 * import type { MiddlewarePlugin } from "fulcrum";
 * export default {
 *   kind: "middleware",
 *   name: "deny-delete",
 *   create(options: { status?: number }) {
 *     const status = options.status ?? 405;
 *     return async (c, next) => {
 *       if (c.req.method === "DELETE") return c.text("not here\n", status);
 *       await next();
 *     };
 *   },
 * } satisfies MiddlewarePlugin<{ status?: number }>;
 * ```
 */
export interface MiddlewarePlugin<O = Record<string, unknown>> {
  /** Always `"middleware"`. */
  readonly kind: "middleware";
  /** Unique name; configs refer to built-ins by it (`- rate-limit: { rate: 100/s }`). */
  readonly name: string;
  /**
   * Build the middleware for one route; called once per route that lists it (and again on
   * reload). Validate `options` here and throw a `TypeError`/`RangeError` naming the option.
   * @param options The `options` map from the config.
   * @default options {}
   */
  create(options: O, api: PluginApi): Middleware;
}

/**
 * The default export of a key plugin: computes a string key for a request, e.g. the tenant that
 * the built-in `rate-limit` middleware counts separately
 * (`rate-limit: { rate: 10/s, key: { plugin: ./tenant.ts } }`).
 *
 * @example
 * ```ts
 * import type { KeyPlugin } from "fulcrum";
 * export default {
 *   kind: "key",
 *   name: "tenant",
 *   create: () => (req) => req.headers.get("x-tenant") ?? undefined,
 * } satisfies KeyPlugin;
 * ```
 */
export interface KeyPlugin<O = Record<string, unknown>> {
  /** Always `"key"`. */
  readonly kind: "key";
  /** Unique name. */
  readonly name: string;
  /** Return the key function. `undefined` from it means "no key": the client IP is used. */
  create(options: O, api: PluginApi): (request: RequestInfo) => string | undefined;
}

/** One backend as a discovery source reports it, built like an entry of `pools.<name>.backends`. */
export interface DiscoveredBackend {
  /** Base URL with a host and port, e.g. `http://10.0.0.11:8080`. */
  readonly url: string;
  /** Relative weight, a positive integer. @default 1 */
  readonly weight?: number;
  /** Stable id within the pool; `host:port` of the URL when absent. */
  readonly id?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

/**
 * What a discovery plugin's `create()` returns: each value is the pool's complete backend list at
 * that moment. An async iterable (`async function*` yielding a list on each change), or a
 * subscription calling `update` per list and returning its stop function. An empty list, a throw
 * or `fail()` keeps the pool's last good list (logged, counted); after a failure `create()` is
 * called again with backoff.
 */
export type DiscoverySource =
  | AsyncIterable<readonly DiscoveredBackend[]>
  | { subscribe(update: (backends: readonly DiscoveredBackend[]) => void, fail: (error: unknown) => void): () => void };

/** The `api` of a discovery plugin's `create()`. */
export interface DiscoveryApi extends PluginApi {
  /** The pool the lists are for. */
  readonly pool: string;
  /** Aborted when the pool stops (reload, shutdown): pass it to `fetch` and watches. */
  readonly signal: AbortSignal;
}

/**
 * The default export of a discovery plugin: a pool's backends at run time
 * (`pools.web.discovery: { plugin: ./etcd.ts, options: {...} }`). The built-in `dns` uses it too.
 * @example
 * ```ts
 * import type { DiscoveryPlugin } from "fulcrum";
 * export default {
 *   kind: "discovery",
 *   name: "static",
 *   async *create(options: { urls: string[] }) { yield options.urls.map((url) => ({ url })); },
 * } satisfies DiscoveryPlugin<{ urls: string[] }>;
 * ```
 */
export interface DiscoveryPlugin<O = Record<string, unknown>> {
  readonly kind: "discovery";
  readonly name: string;
  /**
   * Build one pool's source (at start, on reload, after a failure). Validate `options` and throw
   * naming the option. Start network work when iterated, not here: `fulcrum check` calls it too.
   */
  create(options: O, api: DiscoveryApi): DiscoverySource;
}

/** Any plugin a file may export as its default. */
export type Plugin = StrategyPlugin<never> | MiddlewarePlugin<never> | KeyPlugin<never> | DiscoveryPlugin<never>;

// Run-time values of the "fulcrum" module. The host provides them (Bun: a virtual module; Deno:
// an import map), so a plugin next to the compiled binary needs no node_modules.

/**
 * The client's IP address as the listener saw it (the TCP peer, not `X-Forwarded-For`).
 * @example
 * ```ts
 * import { clientIp } from "fulcrum";
 * api.log.info("denied", { ip: clientIp(c) });
 * ```
 */
export declare function clientIp(c: MiddlewareContext): string;

/**
 * Hono's `HTTPException` (the host's copy): throw it from a middleware to answer with its status
 * instead of a 500.
 * @example
 * ```ts
 * import { HTTPException } from "fulcrum";
 * throw new HTTPException(401, { message: "missing token" });
 * ```
 */
export declare class HTTPException extends Error {
  constructor(status?: number, options?: { message?: string; res?: Response; cause?: unknown });
  readonly status: number;
  getResponse(): Response;
}

/** The host's Hono class (https://hono.dev), for plugins that compose a small Hono app. Typed loosely here. */
// deno-lint-ignore no-explicit-any
export declare const Hono: new (options?: Record<string, unknown>) => any;

/** Fulcrum's version, e.g. `"0.1.0"`. */
export declare const version: string;

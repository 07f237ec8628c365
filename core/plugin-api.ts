/**
 * Fulcrum's public plugin API: the only module a strategy or middleware plugin imports, as
 * `import type { StrategyPlugin } from "fulcrum"`. Built-in strategies use exactly these types.
 *
 * Everything here is a type: plugins need no runtime code from this file, so a plugin file
 * next to the compiled binary works without node_modules.
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
  /** A logger whose records carry the plugin's name. */
  readonly log: PluginLogger;
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

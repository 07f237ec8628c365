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

/**
 * Part of Fulcrum's public plugin API (what a strategy sees: backends, the request, outcomes; the logger and tracer handed to plugins); plugins import it from `"fulcrum"`, which is
 * `api.ts`. Types only: `fulcrum types` prints the parts together as one `.d.ts`, dropping the
 * `import type` lines between them.
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
   * Relative weight, a whole number. A backend with weight 0 is never offered to a strategy (it
   * is draining: health checks go on, cookie-sticky clients stay), so strategies see weight >= 1.
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
  /** Path as the client sent it (before a route's strip-prefix or rewrite), without the query string. */
  readonly path: string;
  /** The `Host` the client asked for (without port normalisation). */
  readonly host: string;
  /** The client's IP address as seen by the listener (not `X-Forwarded-For`). */
  readonly clientIp: string;
  /** The request headers, as the client sent them. Do not modify. */
  readonly headers: Headers;
  /**
   * One request header, `name` in lower case; `null` when absent (several lines joined with
   * `", "`). Cheaper than {@link RequestInfo.headers} on Fulcrum's own listener, which builds the
   * `Headers` object only when something reads it. Optional only so that hosts older than it
   * still fit the type; Fulcrum's proxy always provides it.
   * @example
   * ```ts
   * const user = request.header?.("x-user") ?? request.headers.get("x-user");
   * ```
   */
  header?(name: string): string | null;
  /**
   * The client's query string (before a rewrite) without the `?` (`"id=7&x=1"`), `""` when none. Optional only so
   * that hosts older than it still fit the type; Fulcrum's proxy always sets it.
   */
  readonly query?: string;
  /**
   * The backends this request already tried and failed on (a retry), in order; `undefined` or
   * empty on the first attempt. A strategy should pick one not in this list when it can, the way
   * it would choose a fallback: consistent-hash walks on to the next point of its ring, p2c
   * draws from the rest. The host re-asks when a strategy returns a tried backend anyway.
   * @example
   * ```ts
   * pick(backends, request) {
   *   const tried = request.tried;
   *   for (const b of backends) if (!tried?.includes(b)) return b;
   *   return backends[0];
   * }
   * ```
   */
  readonly tried?: readonly BackendView[];
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

/**
 * Part of Fulcrum's public plugin API (the services the host offers to `create()`); plugins import it from `"fulcrum"`, which is
 * `api.ts`. Types only: `fulcrum types` prints the parts together as one `.d.ts`, dropping the
 * `import type` lines between them.
 */
import type { PluginLogger, PluginTracer, RequestInfo, Strategy } from "./api-request.ts";

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

/**
 * Isolation of user plugins: a strategy whose pick() throws or returns a backend that is not
 * available falls back to round robin for that request; a middleware that throws gives its
 * request a 500. Either way the failure is counted, and logged at most once per interval with
 * the plugin's name, so a plugin failing on every request cannot flood the log.
 *
 * What cannot be isolated in-process: an infinite loop or a blocking call in a plugin stalls the
 * whole event loop (JavaScript has no pre-emption), and a plugin can still mutate globals.
 */
import type { BackendView, Middleware, RequestInfo, Strategy, Transform } from "./api.ts";
import { throttle } from "../lib/throttle.ts";

/** Failures of user plugins since start, by plugin name (survives reloads; for metrics). */
export const pluginFailureCounts = new Map<string, number>();

export interface FailureLogger {
  error(message: string, props: Record<string, unknown>): void;
}

/** Thrown on for a middleware failure that was already counted and logged. */
export class PluginFailure extends Error {
  constructor(readonly plugin: string, cause: unknown) {
    super(`plugin "${plugin}" failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = "PluginFailure";
  }
}

/** Counts every failure of one plugin and logs the first of each interval. */
export class FailureReporter {
  readonly #throttled: (emit: (suppressed: number) => void) => void;

  constructor(
    readonly plugin: string,
    private readonly log: FailureLogger,
    intervalMs = 10_000,
    now: () => number = performance.now.bind(performance),
    /** The plugin's `fulcrum_plugin_errors_total` counter, when metrics are on. */
    private readonly counter?: { inc(): void },
  ) {
    this.#throttled = throttle(intervalMs, now);
  }

  report(what: string, error: unknown): void {
    pluginFailureCounts.set(this.plugin, (pluginFailureCounts.get(this.plugin) ?? 0) + 1);
    this.counter?.inc();
    this.#throttled((suppressed) =>
      this.log.error("plugin failed", {
        plugin: this.plugin,
        what,
        error: error instanceof Error ? error.message : String(error),
        // How many failures were counted but not logged since the previous record.
        suppressed,
        total: pluginFailureCounts.get(this.plugin),
      })
    );
  }
}

/**
 * Wrap a user strategy. The wrapper keeps the {@link Strategy} shape, so the proxy still calls
 * `pool.strategy.pick()`; it allocates nothing per pick (membership is a Set built in update()).
 */
export function isolateStrategy(inner: Strategy, fallback: Strategy, failures: FailureReporter): Strategy {
  let members: readonly BackendView[] | undefined;
  let memberSet = new Set<BackendView>();
  const isMember = (b: BackendView, backends: readonly BackendView[]) => backends === members ? memberSet.has(b) : backends.includes(b);

  return {
    pick(backends: readonly BackendView[], request: RequestInfo): BackendView | undefined {
      let picked: BackendView | undefined;
      try {
        picked = inner.pick(backends, request);
      } catch (e) {
        failures.report("pick() threw", e);
        return fallback.pick(backends, request);
      }
      if (picked === undefined || isMember(picked, backends)) return picked;
      failures.report("pick() returned something that is not an available backend", describeBackend(picked));
      return fallback.pick(backends, request);
    },
    update(backends: readonly BackendView[]): void {
      members = backends;
      memberSet = new Set(backends);
      fallback.update?.(backends);
      try {
        inner.update?.(backends);
      } catch (e) {
        failures.report("update() threw", e);
      }
    },
    observe: inner.observe
      ? (backend, outcome) => {
        try {
          inner.observe!(backend, outcome);
        } catch (e) {
          failures.report("observe() threw", e);
        }
      }
      : undefined,
  };
}

function describeBackend(value: unknown): string {
  if (value && typeof value === "object" && "id" in value)
    return `a backend-like object with id ${JSON.stringify((value as { id: unknown }).id)}`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Wrap a user middleware so its failures are counted, logged (rate-limited) and marked. */
export function isolateMiddleware(inner: Middleware, failures: FailureReporter, passThrough: (e: unknown) => boolean): Middleware {
  return async (c, next) => {
    try {
      return await inner(c, next);
    } catch (e) {
      // An HTTPException is a deliberate answer (401, 403, …), not a failure.
      if (passThrough(e)) throw e;
      failures.report("middleware threw", e);
      throw new PluginFailure(failures.plugin, e);
    }
  };
}

/** Wrap a user transform: a throw from either hook is counted, logged (rate-limited) and marked, as for a middleware. */
export function isolateTransform(inner: Transform, failures: FailureReporter): Transform {
  const fail = (what: string, e: unknown): never => {
    failures.report(what, e);
    throw new PluginFailure(failures.plugin, e);
  };
  const request = inner.request;
  const response = inner.response;
  return {
    request: request === undefined ? undefined : (req) => {
      try {
        return request.call(inner, req);
      } catch (e) {
        return fail("request() threw", e);
      }
    },
    response: response === undefined ? undefined : (res, req) => {
      try {
        response.call(inner, res, req);
      } catch (e) {
        fail("response() threw", e);
      }
    },
  };
}

/**
 * The stores a config declares, opened once per process: what the `rate-limit` middleware asks
 * for by name (`store: shared`). Failures are counted per request in
 * `fulcrum_store_errors_total{store,reason}` and logged at most once a minute per store.
 */
import type { StoreConfig } from "../config/stores.ts";
import { type LimiterStore, SharedLimiter } from "./limiter.ts";
import type { RedisConnection } from "./redis.ts";
import { throttle } from "../lib/throttle.ts";

/** The logger a store writes to (the host's, with its category). */
export interface StoreLogger {
  warning(message: string, properties?: Record<string, unknown>): void;
  info(message: string, properties?: Record<string, unknown>): void;
}

/** `fulcrum_store_errors_total`, as core/telemetry/metrics.ts offers it. */
export interface StoreErrorCounter {
  child(store: string, reason: string): { inc(n?: number): void };
}

/** One declared store, as a middleware sees it. */
export interface SharedStore {
  readonly name: string;
  readonly onError: "allow" | "deny";
  /** A limiter whose buckets live in this store; `id` separates limits that must not share buckets. */
  limiter(id: string, options: { ratePerSecond: number; burst: number; maxKeys: number }): SharedLimiter;
}

const LOG_EVERY_MS = 60_000;

type Entry = SharedStore & LimiterStore & { connection: RedisConnection; failedOnce(): boolean; config: string };
type Connect = (config: StoreConfig, onError: (e: Error) => void) => RedisConnection;

export class StoreSet {
  readonly #stores = new Map<string, Entry>();
  /** The metrics failures count in, shared with the sets a reload derives from this one. */
  readonly #sink: { errors?: StoreErrorCounter };

  /**
   * Opens the stores of `configs`; with `previous` (a reload), a store declared with the same
   * settings is previous's, connection and all, and only new or changed ones are opened.
   */
  constructor(
    configs: Record<string, StoreConfig>,
    readonly connect: Connect,
    readonly log: StoreLogger,
    readonly now: () => number = () => Date.now(),
    previous?: StoreSet,
  ) {
    const sink = (this.#sink = previous === undefined ? {} : previous.#sink);
    for (const [name, c] of Object.entries(configs)) {
      const same = previous === undefined ? undefined : previous.#stores.get(name);
      if (same !== undefined && same.config === JSON.stringify(c)) {
        this.#stores.set(name, same);
        continue;
      }
      let down = false;
      const throttled = throttle(LOG_EVERY_MS, this.now);
      const report = (message: string, props: Record<string, unknown>) =>
        throttled((suppressed) => log.warning(message, { store: name, on_error: c.on_error, suppressed_since_last: suppressed, ...props }));
      const connection = connect(c, (e) => {
        down = true;
        report("store {store} unreachable; requests are decided by on_error ({on_error}) until it is back", { error: e.message });
      });
      const store: Entry = {
        name,
        config: JSON.stringify(c),
        onError: c.on_error,
        timeoutMs: c.timeout,
        batch: c.batch,
        connection,
        failedOnce: () => down,
        ready: () => {
          const ok = connection.ready();
          if (ok && down) {
            down = false;
            log.info("store {store} reachable again", { store: name });
          }
          return ok;
        },
        gcra: connection.gcra,
        failed: (reason: "unavailable" | "timeout" | "error", count: number, error?: unknown) => {
          sink.errors?.child(name, reason).inc(count);
          if (reason !== "unavailable")
            report("store {store} failed to answer ({reason}); on_error ({on_error}) decided", { reason, error: String(error ?? reason) });
        },
        limiter: (id: string, o: { ratePerSecond: number; burst: number; maxKeys: number }) =>
          new SharedLimiter(store, { prefix: `${c.prefix}rl:${id}:`, ...o }),
      };
      this.#stores.set(name, store);
    }
  }

  /** The stores of a reloaded config: unchanged ones carried over from this set, the others opened. */
  next(configs: Record<string, StoreConfig>): StoreSet {
    return new StoreSet(configs, this.connect, this.log, this.now, this);
  }

  /** The stores this set opened itself, not carried over from `previous`. */
  openedSince(previous: StoreSet | undefined): string[] {
    return [...this.#stores.values()].filter((s) => previous === undefined || previous.#stores.get(s.name) !== s).map((s) => s.name);
  }

  /** The store declared as `name`, or undefined. */
  get(name: string): SharedStore | undefined {
    return this.#stores.get(name);
  }

  get names(): string[] {
    return [...this.#stores.keys()];
  }

  /** Count failures in these metrics (the current ones: a reload may bring new metrics). */
  useMetrics(errors: StoreErrorCounter | undefined): void {
    this.#sink.errors = errors;
  }

  /** Wait until every store (of `names`, default all) is connected, at most `ms`; returns the names still unreachable. */
  async waitReady(ms: number, names?: readonly string[]): Promise<string[]> {
    const deadline = this.now() + ms;
    const down = () => [...this.#stores.values()].filter((s) => (!names || names.includes(s.name)) && !s.connection.ready());
    // A store that has failed once (connection refused) will not be ready within the wait either.
    while (down().some((s) => !s.failedOnce()) && this.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return down().map((s) => s.name);
  }

  /** Close this set's connections, except those `keep` carries on (the set a reload derived from it). */
  async close(keep?: StoreSet): Promise<void> {
    await Promise.all(
      [...this.#stores.values()].filter((s) => keep === undefined || keep.#stores.get(s.name) !== s).map((s) => s.connection.close()),
    );
  }
}

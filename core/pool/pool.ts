/**
 * Pools: the state strategies choose from (a backend's own state is in backend.ts). The available set is rebuilt only when
 * something changes (health flip, ejection, circuit transition, drain), never per request.
 */
import type { Logger } from "@logtape/logtape";
import type { Outcome, RequestInfo, Strategy } from "../plugins/api.ts";
import type { BackendConfig, PoolConfig } from "../config/schema.ts";
import type { Clock } from "../lib/clock.ts";
import { CircuitBreaker } from "../resilience/breaker.ts";
import { HealthChecker } from "../resilience/health.ts";
import { RetryBudget } from "../resilience/retry.ts";
import { Backend } from "./backend.ts";
import { Sticky } from "./sticky.ts";

export { Backend, type BackendOwner, type BackendStatus } from "./backend.ts";

export interface PoolDeps {
  clock: Clock;
  logger: Logger;
  /** Told after each active health-check flip (with workers, the primary broadcasts it). */
  onHealthChange?: ((pool: Pool, backend: Backend) => void) | undefined;
  /** Worker processes sharing the traffic; each gets this share of the retry budget's reserve. */
  workers?: number | undefined;
  /** A member discovery removed closed after its last request (its metric series can go). */
  onBackendGone?: ((pool: string, id: string) => void) | undefined;
}

/**
 * A pool's discovery source as the pool sees it (core/discovery/ implements it): started and
 * stopped with the pool's background work; it changes membership through
 * {@link Pool.addBackend} and {@link Pool.removeBackend}.
 */
export interface PoolDiscovery {
  /** Begin; resolves once the first list is applied, or the source failed or took too long. */
  start(): Promise<void>;
  stop(): void;
  /** Lists received by result (`applied`, `unchanged`, `empty`, `invalid`, `error`), for metrics. */
  readonly counts: Readonly<Record<string, number>>;
  /** A worker process: take this membership from the primary, whose source runs (core/cluster/). */
  follow(members: readonly BackendConfig[]): void;
  /** The weight the source gave `b` in its last list (what an operator's weight is told from). */
  sourceWeight(b: Backend): number | undefined;
}

export class Pool {
  /** Backends strategies may pick. Same array until something changes. */
  available: readonly Backend[] = [];
  /** True while no backend is available and `panic: true` routes across all of them. */
  panicking = false;
  inflight = 0;
  readonly budget: RetryBudget;
  readonly health: HealthChecker<Backend> | undefined;
  /** Cookie stickiness (`sticky`), when configured. */
  readonly sticky: Sticky<Backend> | undefined;
  /** Where the last-resort scan in {@link Pool.pick} starts; moves on each use so retries spread. */
  #scan = 0;
  readonly #log: Logger;
  readonly #onGone: ((pool: string, id: string) => void) | undefined;
  readonly clock: Clock;
  /** Where members come from at run time (`discovery`); set by the gateway. */
  discovery: PoolDiscovery | undefined;
  /** Background work runs: a member added now is health-checked before it takes traffic. */
  #started = false;

  constructor(
    readonly name: string,
    readonly config: PoolConfig,
    readonly backends: Backend[],
    readonly strategy: Strategy,
    readonly strategyName: string,
    deps: PoolDeps,
  ) {
    this.#log = deps.logger;
    this.#onGone = deps.onBackendGone;
    this.clock = deps.clock;
    this.budget = new RetryBudget(config.retry.budget, deps.clock, deps.workers);
    this.sticky = config.sticky ? new Sticky(config.sticky, name, backends) : undefined;
    // Backends new to this pool are adopted now; ones kept from a running pool only when this
    // pool goes live (activate()), so a reload that is rejected changes nothing of theirs.
    for (const b of backends) if (b.owner === undefined) this.#adopt(b, true);
    if (config.health) {
      this.health = new HealthChecker(() => this.backends, config.health, deps.clock, (b, healthy, r) => {
        const owner = (b.owner as Pool | undefined) ?? this;
        const level = healthy ? "info" : "warning";
        this.#log[level]("backend {backend} is now {state}", {
          pool: name,
          backend: b.id,
          state: healthy ? "healthy" : "unhealthy",
          reason: r.reason,
        });
        owner.refresh();
        deps.onHealthChange?.(this, b);
      });
    }
    this.refresh();
  }

  /**
   * Go live: take over the backends kept from the pool this one replaces (breaker, timers and
   * refreshes now come here) with this config's weight and labels. Called when a reload swaps.
   */
  activate(updates?: ReadonlyMap<Backend, { weight: number; labels: Readonly<Record<string, string>> }>): void {
    for (const b of this.backends) if (b.owner !== this) this.#adopt(b, false);
    if (updates) {
      for (const [b, u] of updates) {
        b.weight = u.weight;
        b.labels = u.labels;
      }
    }
    this.refresh(true);
  }

  #adopt(b: Backend, fresh: boolean): void {
    const cb = this.config.circuit_breaker;
    b.owner = this;
    // A kept backend keeps its breaker (and its state) if the settings did not change.
    if (b.breaker && JSON.stringify(b.breaker.config) !== JSON.stringify(cb)) {
      b.breaker.close();
      b.breaker = undefined;
    }
    if (cb && !b.breaker) {
      b.breaker = new CircuitBreaker(cb, this.clock, (from, to, reason) => {
        const owner = b.owner as Pool;
        if (from !== to) owner.#log.warning("circuit {to} for {backend}", { pool: owner.name, backend: b.id, from, to, reason });
        owner.refresh();
      });
    }
    if (fresh && this.config.health?.initial === "unknown") b.activeHealthy = false;
  }

  /** Start background work (health checks, discovery). Not called for `fulcrum check`. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.health?.start();
    void this.discovery?.start();
  }

  /** Stop background work (a reload replaced this pool, or the process is stopping). */
  stop(): void {
    this.health?.stop();
    this.discovery?.stop();
  }

  /**
   * A member joins at run time (discovery). Once the pool runs with health checks it starts
   * unhealthy and is probed at once: it takes traffic after its first probe passes. Before that
   * (the first list at start) it starts as `health.initial` says, like a listed backend.
   */
  addBackend(b: Backend): void {
    if (this.backends.includes(b)) return;
    this.backends.push(b);
    if (b.owner !== this) this.#adopt(b, true);
    if (this.#started && this.health) {
      b.activeHealthy = false;
      this.health.add(b, 0);
    }
    this.refresh();
  }

  /**
   * A member leaves at run time (discovery): no new requests go to it; those in flight finish,
   * then its connections close ({@link Pool.release}).
   */
  removeBackend(b: Backend): void {
    const i = this.backends.indexOf(b);
    if (i < 0) return;
    this.backends.splice(i, 1);
    b.removed = true;
    this.refresh();
    if (b.inflight === 0) this.#gone(b);
  }

  /** A removed member's last request is done: close it; its series go unless its id is back as a new member. */
  #gone(b: Backend): void {
    b.close();
    if (this.#onGone !== undefined && !this.backends.some((x) => x.id === b.id)) this.#onGone(this.name, b.id);
  }

  /**
   * Recompute the available set and tell the strategy, if it changed. `force` tells it even
   * when the set is the same (a weight changed at run time: weighted strategies rebuild).
   */
  refresh(force = false): void {
    // Weight 0 is a soft drain from the config: still health-checked, never offered to a strategy.
    let next: Backend[] = this.backends.filter((b) => b.isAvailable());
    const panic = next.length === 0 && this.config.panic && this.backends.length > 0;
    if (panic !== this.panicking) {
      this.panicking = panic;
      if (panic) this.#log.warning("pool {pool} has no available backend: panic mode routes across all of them", { pool: this.name });
      else this.#log.info("pool {pool} left panic mode", { pool: this.name });
    }
    // Drained backends stay out even in panic: an operator took them out on purpose.
    if (panic) next = this.backends.filter((b) => !b.draining && b.weight > 0);
    const same = next.length === this.available.length && next.every((b, i) => b === this.available[i]);
    if (same && this.available.length > 0 && !force) return;
    this.available = next;
    this.strategy.update?.(next);
  }

  /**
   * Ask the strategy for a backend for `info`, which carries the backends this request already
   * tried (`info.tried`: built-in strategies skip them), skipping any the strategy offers anyway
   * and ones at `max_inflight.backend`. Re-asking (instead of filtering the array) keeps the
   * strategy's own state and the array identity stable, and allocates nothing.
   */
  pick(info: RequestInfo): Backend | undefined {
    const list = this.available;
    const tried = info.tried as readonly Backend[] | undefined;
    const max = this.config.max_inflight.backend;
    for (let i = 0; i < list.length; i++) {
      const b = this.strategy.pick(list, info) as Backend | undefined;
      if (!b) return undefined;
      if ((tried === undefined || !tried.includes(b)) && (max === 0 || b.inflight < max)) return b;
    }
    // The strategy kept offering excluded backends: take a usable one, else retry a tried one.
    // The scan goes on from where the last one stopped, so such retries take turns.
    const n = list.length;
    for (let pass = 0; pass < 2; pass++) {
      for (let k = 0; k < n; k++) {
        let i = this.#scan + k;
        if (i >= n) i %= n;
        const b = list[i]!;
        if ((pass === 1 || tried === undefined || !tried.includes(b)) && (max === 0 || b.inflight < max)) {
          this.#scan = i + 1 === n ? 0 : i + 1;
          return b;
        }
      }
    }
    return undefined;
  }

  /**
   * `b`, which a sticky cookie names, if it may take this request: available (a weight-0
   * backend still serves its sticky clients, as HAProxy's drain does), not yet tried, and under
   * `max_inflight.backend`. Undefined sends the request to the strategy (and rewrites the cookie).
   */
  stickyUsable(b: Backend, tried: readonly Backend[] | undefined): Backend | undefined {
    if (tried !== undefined && tried.includes(b)) return undefined;
    const max = this.config.max_inflight.backend;
    if (max !== 0 && b.inflight >= max) return undefined;
    if (b.canServe() || (this.panicking && !b.draining)) return b;
    return undefined;
  }

  /** An attempt to `b` starts: count it in flight (released by {@link Pool.release}). */
  acquire(b: Backend): number {
    b.inflight++;
    this.inflight++;
    return b.breaker?.onStart() ?? 0;
  }

  /** An attempt ended with no verdict on the backend (the client went away). */
  abandon(b: Backend, trial: number): void {
    b.breaker?.onAbandon(trial);
  }

  release(b: Backend): void {
    b.inflight--;
    this.inflight--;
    // A member discovery removed closes after its last request.
    if (b.removed && b.inflight === 0) this.#gone(b);
  }

  /** Record an attempt's outcome: latency, breaker, passive health, and the strategy's observe(). */
  record(b: Backend, outcome: Outcome, trial = 0): void {
    const failed = outcome.error !== undefined || outcome.status >= 500;
    b.latencyEwma = b.latencyEwma === 0 ? outcome.latencyMs : b.latencyEwma * 0.7 + outcome.latencyMs * 0.3;
    if (failed) b.recentErrors++;
    else if (b.recentErrors > 0) b.recentErrors--;
    // Only a failure is reported anywhere (breaker, ejection log): no string per good request.
    const reason = failed ? (outcome.error ?? `status ${outcome.status}`) : "";
    if (b.breaker) {
      if (failed) b.breaker.onFailure(reason, trial);
      else b.breaker.onSuccess(trial);
    }
    this.#passive(b, outcome, reason);
    this.strategy.observe?.(b, outcome);
  }

  #passive(b: Backend, outcome: Outcome, reason: string): void {
    const od = this.config.outlier_detection;
    if (!od) return;
    const kind = outcome.error ?? (outcome.status >= 500 ? "5xx" : undefined);
    if (kind === undefined || !od.on.includes(kind)) {
      if (kind === undefined) b.consecutiveFailures = 0;
      return;
    }
    if (++b.consecutiveFailures < od.consecutive_failures || b.ejectedUntil !== 0) return;
    let ejected = 0;
    for (const x of this.backends) if (x.ejectedUntil !== 0) ejected++;
    const cap = Math.max(1, Math.floor((this.backends.length * od.max_ejected_percent) / 100));
    if (ejected + 1 > cap) return;
    const now = this.clock.now();
    // A backend that stayed in long enough starts its ejection time over.
    if (b.lastUnejected && now - b.lastUnejected > od.max_ejection_time) b.ejections = 0;
    b.ejections++;
    const time = Math.min(od.max_ejection_time, od.ejection_time * b.ejections);
    b.ejectedUntil = now + time;
    b.consecutiveFailures = 0;
    this.#log.warning("backend {backend} ejected for {ms}ms", { pool: this.name, backend: b.id, ms: time, reason, ejections: b.ejections });
    b.ejectionTimer = this.clock.setTimeout(() => {
      const owner = b.owner as Pool;
      b.ejectionTimer = undefined;
      b.ejectedUntil = 0;
      b.lastUnejected = owner.clock.now();
      owner.#log.info("backend {backend} returns from ejection", { pool: owner.name, backend: b.id });
      owner.refresh();
    }, time);
    // A request that started before a reload reports to the old pool; the new one serves.
    ((b.owner as Pool | undefined) ?? this).refresh();
  }

  close(): void {
    this.health?.stop();
    this.discovery?.stop();
    for (const b of this.backends) b.close();
  }
}

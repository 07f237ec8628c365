/** A backend with the state the proxy keeps about it: health, ejection, breaker, in-flight, its upstream agent. */
import type { BackendView } from "../plugins/api.ts";
import type { BackendConfig, PoolConfig } from "../config/schema.ts";
import { backendId } from "../config/source.ts";
import type { Clock, Timer } from "../lib/clock.ts";
import { createAgent, type UpstreamAgent, type UpstreamTarget, type UpstreamTls } from "../upstream/client.ts";
import type { CircuitBreaker, CircuitState } from "../resilience/breaker.ts";
import type { ProbeResult } from "../resilience/health.ts";

/** The pool a backend serves in, as the backend needs it (core/pool/pool.ts Pool). */
export interface BackendOwner {
  readonly clock: Clock;
}

/** A backend with the state the proxy keeps about it. Plugins see it through {@link BackendView}. */
export class Backend implements BackendView {
  readonly id: string;
  readonly url: string;
  weight: number;
  labels: Readonly<Record<string, string>>;
  /** Active health-check verdict. */
  activeHealthy = true;
  health = { rise: 0, fall: 0, known: false, probes: [] as ProbeResult[], passed: 0, failed: 0 };
  /** Passive health: ejected until this clock time (0 when not ejected). */
  ejectedUntil = 0;
  ejections = 0;
  lastUnejected = 0;
  consecutiveFailures = 0;
  breaker: CircuitBreaker | undefined;
  ejectionTimer: Timer | undefined;
  /**
   * The pool now serving with this backend. A reload hands a backend that stays to the new
   * pool, so breaker and ejection timers (which outlive one pool) tell the current owner.
   */
  owner: BackendOwner | undefined;
  /** Set by an operator (admin API) to take the backend out of rotation. */
  draining = false;
  /** Left its pool at run time (discovery): closed once its last request ends. */
  removed = false;
  #closed = false;
  inflight = 0;
  /** Tunnels (WebSocket) open to this backend; each also counts in `inflight` until it closes. */
  tunnels = 0;
  latencyEwma = 0;
  recentErrors = 0;
  readonly target: UpstreamTarget;
  readonly agent: UpstreamAgent;
  /** Host header value when the pool sends the backend's host instead of the client's. */
  readonly hostHeader: string;

  /** @param tls How an https:// backend is verified (pools.<name>.tls, read by core/tls/backend.ts). */
  constructor(config: BackendConfig, pool: PoolConfig, tls?: UpstreamTls) {
    this.id = backendId(config);
    this.url = config.url;
    this.weight = config.weight;
    this.labels = Object.freeze({ ...config.labels });
    const u = new URL(config.url);
    this.target = {
      protocol: u.protocol as "http:" | "https:",
      hostname: u.hostname.replace(/^\[|\]$/g, ""),
      port: Number(u.port || (u.protocol === "https:" ? 443 : 80)),
      basePath: u.pathname.replace(/\/+$/, ""),
      ...(u.protocol === "https:" && tls !== undefined ? { tls } : {}),
    };
    this.hostHeader = u.host;
    this.agent = createAgent(this.target, {
      maxIdle: pool.keepalive.max_idle,
      idleTimeoutMs: pool.keepalive.idle_timeout,
    });
  }

  /** Healthy by active checks and not ejected by passive ones. */
  get healthy(): boolean {
    return this.activeHealthy && this.ejectedUntil === 0;
  }

  /** Whether strategies may be offered this backend now (weight 0 drains it from the config). */
  isAvailable(): boolean {
    return this.weight > 0 && this.canServe();
  }

  /** Healthy, not ejected, not drained by an operator, circuit allowing: a sticky client may stay. */
  canServe(): boolean {
    return this.activeHealthy && this.ejectedUntil === 0 && !this.draining && (this.breaker?.allows() ?? true);
  }

  get circuit(): CircuitState {
    return this.breaker?.state ?? "closed";
  }

  /** A snapshot for the admin API, metrics and `fulcrum check`. */
  status() {
    return {
      id: this.id,
      url: this.url,
      weight: this.weight,
      labels: this.labels,
      available: this.isAvailable(),
      healthy: this.healthy,
      active_healthy: this.activeHealthy,
      ejected: this.ejectedUntil !== 0,
      ejections: this.ejections,
      circuit: this.circuit,
      draining: this.draining,
      inflight: this.inflight,
      tunnels: this.tunnels,
      latency_ewma_ms: Math.round(this.latencyEwma * 100) / 100,
      recent_errors: this.recentErrors,
      probes: [...this.health.probes],
    };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.breaker?.close();
    if (this.ejectionTimer !== undefined) this.owner?.clock.clearTimeout(this.ejectionTimer);
    this.agent.destroy();
  }
}

export type BackendStatus = ReturnType<Backend["status"]>;

/** Backends and pools: the state strategies choose from, rebuilt only when membership changes. */
import type http from "node:http";
import type { BackendView, Strategy } from "./plugin-api.ts";
import type { BackendConfig, PoolConfig } from "./config/schema.ts";
import { backendId } from "./config/load.ts";
import { createAgent, type UpstreamTarget } from "./upstream.ts";

/** A backend with the state the proxy keeps about it. Plugins see it through {@link BackendView}. */
export class Backend implements BackendView {
  readonly id: string;
  readonly url: string;
  weight: number;
  labels: Readonly<Record<string, string>>;
  healthy = true;
  /** Set by an operator (admin API) to take the backend out of rotation. */
  draining = false;
  inflight = 0;
  latencyEwma = 0;
  recentErrors = 0;
  readonly target: UpstreamTarget;
  readonly agent: http.Agent;
  /** Host header value when the pool sends the backend's host instead of the client's. */
  readonly hostHeader: string;

  constructor(config: BackendConfig, pool: PoolConfig) {
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
    };
    this.hostHeader = u.host;
    this.agent = createAgent(this.target, {
      maxIdle: pool.keepalive.max_idle,
      idleTimeoutMs: pool.keepalive.idle_timeout,
    });
  }


  /** Record one attempt's latency and whether it failed (EWMA with α = 0.3). */
  record(latencyMs: number, failed: boolean): void {
    this.latencyEwma = this.latencyEwma === 0 ? latencyMs : this.latencyEwma * 0.7 + latencyMs * 0.3;
    if (failed) this.recentErrors++;
    else if (this.recentErrors > 0) this.recentErrors--;
  }

  close(): void {
    this.agent.destroy();
  }
}

export class Pool {
  /** Backends strategies may pick: healthy and not draining. Same array until something changes. */
  available: readonly Backend[] = [];

  constructor(
    readonly name: string,
    readonly config: PoolConfig,
    readonly backends: Backend[],
    readonly strategy: Strategy,
    readonly strategyName: string,
  ) {
    this.refresh();
  }

  /** Recompute the available set after a health or drain change, and tell the strategy. */
  refresh(): void {
    const next = this.backends.filter((b) => b.healthy && !b.draining);
    const same = next.length === this.available.length && next.every((b, i) => b === this.available[i]);
    if (same && this.available.length > 0) return;
    this.available = next;
    this.strategy.update?.(next);
  }

  close(): void {
    for (const b of this.backends) b.close();
  }
}

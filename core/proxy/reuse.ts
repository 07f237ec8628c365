/**
 * Backends across a reload: the ones that stay are the same objects, so in-flight counts, health
 * and latency carry over; and an operator's drain and weight (admin API) carry over to every
 * backend that stays in its pool under the same id, unless the new config changes that weight.
 */
import type { Logger } from "@logtape/logtape";
import { backendId } from "../config/source.ts";
import type { BackendConfig, PoolConfig } from "../config/schema.ts";
import type { Backend, Pool } from "../pool/pool.ts";
import type { UpstreamTls } from "../upstream/client.ts";
import type { Observer } from "../telemetry/observer.ts";

/** The backend of `previous` that `config` describes again (same id, URL and pool settings); else undefined. */
export function reuseBackend(previous: Pool | undefined, config: BackendConfig, pool: PoolConfig, tls?: UpstreamTls): Backend | undefined {
  if (!previous) return undefined;
  const id = backendId(config);
  const old = previous.backends.find((b) => b.id === id);
  if (!old || old.url !== config.url) return undefined;
  // The upstream connection pool is built with these; a change needs a new Backend.
  const ka = previous.config.keepalive;
  if (ka.max_idle !== pool.keepalive.max_idle || ka.idle_timeout !== pool.keepalive.idle_timeout) return undefined;
  // So are its TLS settings (a rotated CA or client certificate file too).
  if (old.target.protocol === "https:" && JSON.stringify(old.target.tls) !== JSON.stringify(tls)) return undefined;
  // Its new weight and labels are applied when the new pool goes live (Pool.activate).
  return old;
}

/** A kept backend's config values, applied when its new pool goes live (Pool.activate). */
export interface BackendUpdate {
  weight: number;
  labels: Readonly<Record<string, string>>;
}

/**
 * Carry the operator state of `previous` (the pool being replaced, read now, as it goes live) into
 * `pool`: a drain, and a weight set through the admin API while the config's weight for that
 * backend stays what it was. A new configured weight wins, and says so. Kept backends get the
 * weight through `updates`; new objects (a changed URL or keepalive) directly.
 */
export function carryOperatorState(
  previous: Pool | undefined,
  pool: Pool,
  updates: Map<Backend, BackendUpdate> | undefined,
  log: Logger,
): void {
  if (!previous) return;
  pool.backends.forEach((b, i) => {
    const from = previous.backends.find((x) => x.id === b.id);
    if (!from) return;
    if (from !== b) b.draining = from.draining;
    const before = previous.config.backends.find((c) => backendId(c) === b.id)?.weight;
    // A discovered pool has no configured weights: its source sets them (core/discovery/runner.ts).
    const configured = pool.config.backends[i]?.weight;
    if (before === undefined || configured === undefined || from.weight === before) return; // no operator weight
    if (configured === before) {
      const u = updates?.get(b);
      if (u) u.weight = from.weight;
      else b.weight = from.weight;
    } else {
      log.info("backend {backend}: the config's new weight {weight} replaces the weight {operator} set through the admin API", {
        pool: pool.name,
        backend: b.id,
        weight: configured,
        operator: from.weight,
      });
    }
  });
}

/**
 * A backend of `pool` that the gateway replacing it did not take over: closed, and its metric
 * series dropped unless the successor serves the same id (a new object, for changed settings).
 */
export function retireBackend(pool: Pool, b: Backend, successor: ReadonlyMap<string, Pool>, observer: Observer | undefined): void {
  b.close();
  if (!successor.get(pool.name)?.backends.some((x) => x.id === b.id)) observer?.backendGone(pool.name, b.id);
}

/**
 * A pool with `discovery`, wired by the gateway: its source created through the registry (a
 * broken plugin is a config problem at start, with its position), the members a reload carries
 * over from the pool it replaces, and the runner (core/discovery/runner.ts) that keeps them current.
 */
import type { BackendConfig, PoolConfig } from "../config/schema.ts";
import type { DiscoveryApi } from "../plugins/api.ts";
import type { FailureReporter } from "../plugins/isolate.ts";
import type { Registry } from "../plugins/registry.ts";
import { Backend, type Pool } from "../pool/pool.ts";
import { DiscoveryRunner } from "../discovery/runner.ts";
import type { Clock } from "../lib/clock.ts";
import type { Logging } from "../telemetry/log.ts";
import type { Observer } from "../telemetry/observer.ts";
import type { UpstreamTls } from "../upstream/client.ts";
import { pluginApi } from "./plugin-context.ts";
import { reuseBackend } from "./reuse.ts";

/**
 * The members a discovered pool starts with: after a reload, those of the pool it replaces (the
 * same objects where keepalive and TLS allow), so nothing changes until the source says so.
 */
export function carriedMembers(previous: Pool | undefined, pc: PoolConfig, tls: UpstreamTls | undefined, reused: Set<Backend>): Backend[] {
  if (!previous) return [];
  return previous.backends.filter((b) => !b.removed).map((b) => {
    const config: BackendConfig = { url: b.url, id: b.id, weight: b.weight, labels: { ...b.labels } };
    const old = reuseBackend(previous, config, pc, tls);
    if (!old) return new Backend(config, pc, tls);
    reused.add(old);
    return old;
  });
}

export interface DiscoveryDeps {
  registry: Registry;
  logging: Logging;
  clock: Clock;
  observer?: Observer | undefined;
  /** A user plugin's failure reporter; undefined for a built-in source. */
  failures?: FailureReporter | undefined;
  previous?: Pool | undefined;
  tls?: UpstreamTls | undefined;
  /** After the source changed the membership or weights (the primary of workers tells them). */
  onMembersChange?: ((pool: Pool) => void) | undefined;
}

/** Create the pool's source now (throws on bad options or a broken plugin) and attach its runner. */
export function attachDiscovery(pool: Pool, deps: DiscoveryDeps): void {
  const d = pool.config.discovery!;
  const name = d.name;
  if (name === undefined) throw new Error("the plugin was not loaded (call loadPlugins first)");
  const controller = new AbortController();
  const api: DiscoveryApi = { ...pluginApi(deps.registry, deps.logging, name, deps.observer), pool: pool.name, signal: controller.signal };
  const options = d.dns ?? d.options;
  const create = () => deps.registry.createDiscovery(name, options, api);
  const previous = deps.previous?.discovery;
  pool.discovery = new DiscoveryRunner(pool, create(), {
    create,
    backend: (c) => new Backend(c, pool.config, deps.tls),
    log: deps.logging.logger.getChild("discovery"),
    clock: deps.clock,
    controller,
    failures: deps.failures,
    previous: previous instanceof DiscoveryRunner ? previous : undefined,
    onChange: deps.onMembersChange,
    emptyAfterMs: d.empty_after,
  });
}

/** At the swap: members the replaced pool's source removed after this pool was built leave too. */
export function dropRemoved(pool: Pool): void {
  if (!pool.discovery) return;
  for (const b of [...pool.backends]) if (b.removed) pool.removeBackend(b);
}

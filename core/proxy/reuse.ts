/** Backends kept across a reload: the same objects, so in-flight counts, health and latency carry over. */
import { backendId } from "../config/load.ts";
import type { BackendConfig, PoolConfig } from "../config/schema.ts";
import type { Backend, Pool } from "../pool/pool.ts";
import type { UpstreamTls } from "../upstream/client.ts";

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

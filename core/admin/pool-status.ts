// A pool's state as /status shows it; apart from admin.ts so a worker (which builds its share of
// the primary's view from it) does not load the admin server and Hono.
import type { Pool } from "../pool/pool.ts";

export function poolStatus(p: Pool) {
  return {
    strategy: p.strategyName,
    inflight: p.inflight,
    available: p.available.length,
    panic: p.panicking,
    health_check: p.health ? { path: p.health.config.path, interval_ms: p.health.config.interval } : null,
    backends: p.backends.map((b) => b.status()),
  };
}

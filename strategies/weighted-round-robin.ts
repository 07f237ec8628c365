import type { BackendView, StrategyPlugin } from "../core/plugins/api.ts";

/**
 * Smooth weighted round robin, nginx's algorithm (ngx_http_upstream_get_peer): weights 5,1,1
 * give a a b a c a a, spreading the heavy backend out instead of sending it bursts.
 */
export default {
  kind: "strategy",
  name: "weighted-round-robin",
  create() {
    let members: readonly BackendView[] = [];
    let current = new Float64Array(0);
    let total = 0;

    function update(backends: readonly BackendView[]) {
      members = backends;
      current = new Float64Array(backends.length);
      total = 0;
      for (const b of backends) total += b.weight;
    }

    return {
      update,
      pick(backends: readonly BackendView[]) {
        if (backends !== members) update(backends);
        let best = -1;
        for (let i = 0; i < backends.length; i++) {
          current[i]! += backends[i]!.weight;
          if (best < 0 || current[i]! > current[best]!) best = i;
        }
        if (best < 0) return undefined;
        current[best]! -= total;
        return backends[best];
      },
    };
  },
} satisfies StrategyPlugin;

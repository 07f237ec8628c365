import type { BackendView, RequestInfo, StrategyPlugin } from "../core/plugins/api.ts";

/**
 * Smooth weighted round robin, nginx's algorithm (ngx_http_upstream_get_peer): weights 5,1,1
 * give a a b a c a a, spreading the heavy backend out instead of sending it bursts. A retry
 * leaves the backends already tried (`request.tried`) out of the round, as nginx does.
 */
export default {
  kind: "strategy",
  name: "weighted-round-robin",
  create() {
    let members: readonly BackendView[] = [];
    let current = new Float64Array(0);

    function update(backends: readonly BackendView[]) {
      members = backends;
      current = new Float64Array(backends.length);
    }

    return {
      update,
      pick(backends: readonly BackendView[], request: RequestInfo) {
        if (backends !== members) update(backends);
        const tried = request.tried;
        const checkTried = tried !== undefined && tried.length > 0;
        let best = -1;
        let total = 0;
        for (let i = 0; i < backends.length; i++) {
          const b = backends[i]!;
          if (checkTried && tried.includes(b)) continue;
          current[i]! += b.weight;
          total += b.weight;
          if (best < 0 || current[i]! > current[best]!) best = i;
        }
        if (best < 0) return backends[0];
        current[best]! -= total;
        return backends[best];
      },
    };
  },
} satisfies StrategyPlugin;

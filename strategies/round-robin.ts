import type { BackendView, RequestInfo, StrategyPlugin } from "../core/plugins/api.ts";

/**
 * Round robin: a counter and a modulo, as Caddy's and Pingora's do it. A retry takes the next
 * backend not yet tried (`request.tried`).
 */
export default {
  kind: "strategy",
  name: "round-robin",
  create() {
    let next = 0;
    return {
      pick(backends: readonly BackendView[], request: RequestInfo) {
        const n = backends.length;
        // Keep the counter small so it never loses integer precision.
        if (next >= n) next = 0;
        const tried = request.tried;
        if (tried === undefined || tried.length === 0) return backends[next++];
        for (let k = 0; k < n; k++) {
          const b = backends[next++]!;
          if (next >= n) next = 0;
          if (!tried.includes(b)) return b;
        }
        return backends[next];
      },
    };
  },
} satisfies StrategyPlugin;

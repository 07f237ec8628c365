import type { BackendView, StrategyPlugin } from "../core/plugins/api.ts";

/** Round robin: a counter and a modulo, as Caddy's and Pingora's do it. */
export default {
  kind: "strategy",
  name: "round-robin",
  create() {
    let next = 0;
    return {
      pick(backends: readonly BackendView[]) {
        // Keep the counter small so it never loses integer precision.
        if (next >= backends.length) next = 0;
        return backends[next++];
      },
    };
  },
} satisfies StrategyPlugin;

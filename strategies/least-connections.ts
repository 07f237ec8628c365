import type { BackendView, StrategyPlugin } from "../core/plugins/api.ts";

/**
 * Weighted least connections: the backend with the fewest in-flight requests per unit of weight.
 * The scan starts one place further on each pick, so ties rotate instead of always going to the
 * first backend in the list.
 */
export default {
  kind: "strategy",
  name: "least-connections",
  create() {
    let start = 0;
    return {
      pick(backends: readonly BackendView[]) {
        const n = backends.length;
        if (n === 0) return undefined;
        if (start >= n) start = 0;
        let best = backends[start]!;
        for (let k = 1; k < n; k++) {
          let i = start + k;
          if (i >= n) i -= n;
          const b = backends[i]!;
          // inflight/weight compared without division: a.in * b.w < b.in * a.w
          if (b.inflight * best.weight < best.inflight * b.weight) best = b;
        }
        start++;
        return best;
      },
    };
  },
} satisfies StrategyPlugin;

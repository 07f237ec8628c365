import type { BackendView, RequestInfo, StrategyPlugin } from "../core/plugins/api.ts";

/**
 * Weighted least connections: the backend with the fewest in-flight requests per unit of weight.
 * The scan starts one place further on each pick, so ties rotate instead of always going to the
 * first backend in the list. A retry only considers backends not yet tried (`request.tried`).
 */
export default {
  kind: "strategy",
  name: "least-connections",
  create() {
    let start = 0;
    return {
      pick(backends: readonly BackendView[], request: RequestInfo) {
        const n = backends.length;
        if (n === 0) return undefined;
        if (start >= n) start = 0;
        const tried = request.tried;
        const checkTried = tried !== undefined && tried.length > 0;
        let best: BackendView | undefined;
        for (let k = 0; k < n; k++) {
          let i = start + k;
          if (i >= n) i -= n;
          const b = backends[i]!;
          if (checkTried && tried.includes(b)) continue;
          // inflight/weight compared without division: a.in * b.w < b.in * a.w
          if (best === undefined || b.inflight * best.weight < best.inflight * b.weight) best = b;
        }
        start++;
        return best ?? backends[start - 1];
      },
    };
  },
} satisfies StrategyPlugin;

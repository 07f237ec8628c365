/**
 * Latency-aware power of two choices: pick two backends at random and send the request to the
 * one with the lower latency EWMA × (in-flight + 1). A backend with no latency yet scores as the
 * fastest, so new backends get traffic and a measurement. A retry draws from the backends not yet
 * tried (`request.tried`).
 *
 * An example of the plugin API. The built-in `p2c-ewma` (strategies/p2c-ewma.ts) is the one to
 * run: it keeps its own peak EWMA, which reacts to a slow backend at once and decays with time.
 *
 *   strategy: { plugin: ./plugins/latency-p2c.ts, options: { seed: 42 } }
 */
import type { BackendView, StrategyPlugin } from "fulcrum";

interface Options {
  /** Seed for the random choices, for reproducible tests. @default a random seed */
  seed?: number;
}

export default {
  kind: "strategy",
  name: "latency-p2c",
  create(options: Options) {
    if (options.seed !== undefined && !Number.isInteger(options.seed)) {
      throw new TypeError(`seed must be an integer, got ${JSON.stringify(options.seed)}`);
    }
    // xorshift32: fast, allocation-free, seedable.
    let state = (options.seed ?? Math.floor(Math.random() * 0x7fffffff)) | 0 || 1;
    const random = (n: number) => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return (state >>> 0) % n;
    };
    const score = (b: BackendView) => b.latencyEwma * (b.inflight + 1);

    return {
      pick(backends, request) {
        const n = backends.length;
        if (n <= 1) return backends[0];
        const tried = request.tried;
        let i = random(n);
        let j = random(n - 1);
        if (j >= i) j++;
        if (tried !== undefined && tried.length > 0) {
          // Step each draw on to a backend not yet tried (no array is built per request).
          for (let k = 0; k < n && tried.includes(backends[i]!); k++) i = (i + 1) % n;
          for (let k = 0; k < n && (j === i || tried.includes(backends[j]!)); k++) j = (j + 1) % n;
          if (j === i || tried.includes(backends[j]!)) return backends[i];
        }
        const a = backends[i]!;
        const b = backends[j]!;
        return score(b) < score(a) ? b : a;
      },
    };
  },
} satisfies StrategyPlugin<Options>;

import type { BackendView, Outcome, StrategyPlugin } from "../core/plugins/api.ts";

/**
 * Power of two choices on peak EWMA latency (Finagle's and Linkerd's default balancer): draw two
 * backends at random and send the request to the one with the lower cost, latency × (in-flight
 * + 1). The latency estimate jumps up to a slow response at once (the "peak") and decays towards
 * faster ones with time constant `decay`, so a backend that slows down loses traffic quickly and
 * wins it back gradually. A backend with no measurement yet costs nothing while idle, so a new
 * backend gets traffic and a measurement; in flight without one, it costs a penalty.
 *
 *   strategy: { name: p2c-ewma, options: { decay: 10s } }
 *
 * On a retry, both draws come from backends not yet tried (`request.tried`).
 */

interface Options {
  /** Time constant of the latency decay, e.g. `10s`, `500ms`, or milliseconds. @default "10s" */
  decay?: string | number;
  /** Seed for the random draws, for reproducible tests. @default a random seed */
  seed?: number;
}

/** Cost of a backend that has requests in flight but no latency yet (Linkerd's penalty). */
const PENALTY_MS = 1_000_000;

function durationMs(v: string | number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v === "number" && v > 0) return v;
  const m = typeof v === "string" ? /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(v.trim()) : null;
  if (m && Number(m[1]) > 0) return Number(m[1]) * (m[2] === "ms" ? 1 : m[2] === "s" ? 1000 : 60_000);
  throw new TypeError(`decay must be a duration like 10s or 500ms, got ${JSON.stringify(v)}`);
}

class Estimate {
  ewma = 0;
  stamp = 0;
}

export default {
  kind: "strategy",
  name: "p2c-ewma",
  create(options: Options) {
    const decay = durationMs(options.decay, 10_000);
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
    // One estimate per backend, kept across updates while the backend stays.
    let estimates = new Map<BackendView, Estimate>();
    let members: readonly BackendView[] | undefined;

    function update(backends: readonly BackendView[]) {
      members = backends;
      const next = new Map<BackendView, Estimate>();
      for (const b of backends) next.set(b, estimates.get(b) ?? new Estimate());
      estimates = next;
    }

    const cost = (b: BackendView) => {
      const e = estimates.get(b);
      const ewma = e === undefined ? 0 : e.ewma;
      if (ewma === 0) return b.inflight === 0 ? 0 : PENALTY_MS + b.inflight;
      return ewma * (b.inflight + 1);
    };

    return {
      update,
      pick(backends, request) {
        if (backends !== members) update(backends);
        const n = backends.length;
        if (n <= 1) return backends[0];
        const tried = request.tried;
        if (tried === undefined || tried.length === 0) {
          const i = random(n);
          let j = random(n - 1);
          if (j >= i) j++;
          const a = backends[i]!;
          const b = backends[j]!;
          return cost(b) < cost(a) ? b : a;
        }
        // A retry: draw among the untried (probe forward from each random start).
        let a: BackendView | undefined;
        let i = random(n);
        for (let k = 0; k < n; k++, i = i + 1 === n ? 0 : i + 1) {
          if (!tried.includes(backends[i]!)) {
            a = backends[i];
            break;
          }
        }
        if (a === undefined) return backends[random(n)];
        let j = random(n);
        for (let k = 0; k < n; k++, j = j + 1 === n ? 0 : j + 1) {
          const b = backends[j]!;
          if (b !== a && !tried.includes(b)) return cost(b) < cost(a) ? b : a;
        }
        return a;
      },
      observe(backend: BackendView, outcome: Outcome) {
        const e = estimates.get(backend);
        if (e === undefined) return;
        const now = performance.now();
        // A failure counts as at least twice the estimate: failing fast must not attract traffic.
        const failed = outcome.error !== undefined || outcome.status >= 500;
        const rtt = failed ? Math.max(outcome.latencyMs, e.ewma * 2, 1) : outcome.latencyMs;
        if (e.ewma === 0 || rtt > e.ewma) e.ewma = rtt;
        else {
          const w = Math.exp(-(now - e.stamp) / decay);
          e.ewma = e.ewma * w + rtt * (1 - w);
        }
        e.stamp = now;
      },
    };
  },
} satisfies StrategyPlugin<Options>;

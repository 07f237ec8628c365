// Round-robin as a user strategy plugin, identical in logic to the built-in, so the benchmark
// measures the cost of the plugin boundary only (target: within 3% of the built-in).
// No `import type ... from "fulcrum"` here: the harness copies this file next to a temp config,
// and the types add nothing at run time.
export default {
  kind: "strategy",
  name: "bench-round-robin",
  create() {
    let next = 0;
    return {
      pick<B>(backends: readonly B[]): B | undefined {
        if (backends.length === 0) return undefined;
        const b = backends[next % backends.length];
        next = (next + 1) % 1_000_000_007;
        return b;
      },
    };
  },
};

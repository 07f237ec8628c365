/**
 * The retry budget on fake time: Finagle's and Linkerd's token budget. Each request deposits
 * `ratio`, each retry withdraws 1, both count for `window`; `min_retries_per_second × window`
 * more are always there, split over the worker processes.
 */
import { describe, expect, test } from "bun:test";
import { ConfigError, parseConfig } from "../../core/config/load.ts";
import { RetryBudget, type RetryConfig } from "../../core/resilience/retry.ts";
import { ManualClock } from "../helpers/clock.ts";

const budget = (b: Partial<RetryConfig["budget"]>, share?: number) => {
  const clock = new ManualClock();
  return { clock, budget: new RetryBudget({ ratio: 0.2, window: 10_000, min_retries_per_second: 10, ...b }, clock, share) };
};

/** Retries granted out of `n` tries. */
const take = (b: RetryBudget, n: number) => {
  let granted = 0;
  for (let i = 0; i < n; i++) if (b.tryRetry()) granted++;
  return granted;
};

describe("retry budget", () => {
  test("the ratio and the reserve add up: ratio × requests + min_retries_per_second × window", () => {
    const { budget: b } = budget({ ratio: 0.2, min_retries_per_second: 1 });
    for (let i = 0; i < 50; i++) b.onRequest();
    // 20% of 50 = 10, plus 1/s × 10 s = 10. (The old budget allowed max(min_retries, 10) = 10.)
    expect(take(b, 100)).toBe(20);
  });

  test("with no traffic at all the reserve still allows min_retries_per_second × window at once", () => {
    const { budget: b } = budget({ min_retries_per_second: 10 });
    expect(take(b, 1_000)).toBe(100);
  });

  test("the reserve refills as withdrawals leave the window: min_retries_per_second in the long run", () => {
    const { clock, budget: b } = budget({ ratio: 0, min_retries_per_second: 10 });
    // A retry storm with no requests counted: 100 tries every 100 ms for 100 s.
    let granted = 0;
    for (let t = 0; t < 100_000; t += 100) {
      granted += take(b, 100);
      clock.advance(100);
    }
    // 10/s × 100 s, give or take one reserve (the first window starts full).
    expect(granted).toBeGreaterThanOrEqual(900);
    expect(granted).toBeLessThanOrEqual(1_100);
  });

  test("a steady trickle of retries within the rate is never refused", () => {
    const { clock, budget: b } = budget({ ratio: 0, min_retries_per_second: 10 });
    let refused = 0;
    for (let t = 0; t < 60_000; t += 125) {
      if (!b.tryRetry()) refused++; // 8 per second
      clock.advance(125);
    }
    expect(refused).toBe(0);
  });

  test("deposits and withdrawals expire after the window (Finagle's ttl)", () => {
    const { clock, budget: b } = budget({ ratio: 0.2, min_retries_per_second: 0 });
    for (let i = 0; i < 100; i++) b.onRequest();
    expect(take(b, 100)).toBe(20);
    clock.advance(5_000);
    // Same window: the deposits are spent, and so no more.
    expect(take(b, 100)).toBe(0);
    clock.advance(5_001);
    // Deposits and withdrawals both left the window: nothing in it, and no reserve.
    expect(take(b, 100)).toBe(0);
    for (let i = 0; i < 10; i++) b.onRequest();
    expect(take(b, 100)).toBe(2);
  });

  test("a retry that a ratio such as 29% allows exactly is granted (no rounding loss)", () => {
    const { budget: b } = budget({ ratio: 0.29, min_retries_per_second: 0 });
    for (let i = 0; i < 100; i++) b.onRequest();
    expect(take(b, 100)).toBe(29);
  });

  test("N workers split the reserve: together they allow what one process would", () => {
    for (const n of [1, 2, 3, 4, 8]) {
      const one = budget({ min_retries_per_second: 12 }).budget;
      for (let i = 0; i < 240; i++) one.onRequest();
      const alone = take(one, 10_000);
      expect(alone).toBe(48 + 120);
      // The same traffic spread over n workers, each with its 1/n of the reserve.
      let together = 0;
      for (let w = 0; w < n; w++) {
        const mine = budget({ min_retries_per_second: 12 }, n).budget;
        for (let i = 0; i < 240 / n; i++) mine.onRequest();
        together += take(mine, 10_000);
      }
      expect(together).toBe(alone);
    }
  });

  test("a worker's share of the reserve is min_retries_per_second × window / N", () => {
    expect(take(budget({ min_retries_per_second: 10 }, 2).budget, 1_000)).toBe(50);
    expect(take(budget({ min_retries_per_second: 10 }, 4).budget, 1_000)).toBe(25);
    expect(take(budget({ min_retries_per_second: 10, window: 2_000 }, 4).budget, 1_000)).toBe(5);
  });
});

describe("retry budget config", () => {
  const parse = (retry: string) =>
    parseConfig(`pools:\n  web:\n    backends: [http://127.0.0.1:1]\n    retry: ${retry}\n`, { file: "f.yaml", env: () => undefined }).pools
      .web!.retry.budget;

  test("defaults: 20% of requests plus 10 retries per second, over 10 s; `budget: 30%` sets only the ratio", () => {
    expect(parse("{}")).toEqual({ ratio: 0.2, window: 10_000, min_retries_per_second: 10 });
    expect(parse("{ budget: 30% }")).toEqual({ ratio: 0.3, window: 10_000, min_retries_per_second: 10 });
    expect(parse("{ budget: { ratio: 10%, window: 5s, min_retries_per_second: 2.5 } }")).toEqual({
      ratio: 0.1,
      window: 5_000,
      min_retries_per_second: 2.5,
    });
  });

  test("the old min_retries (a count per window) is refused with a message naming min_retries_per_second", () => {
    let error: unknown;
    try {
      parse("{ budget: { ratio: 20%, min_retries: 10 } }");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(1);
    expect(problems[0]).toStartWith("f.yaml:4:49: pools.web.retry.budget.min_retries was replaced by min_retries_per_second");
    expect(problems[0]).toContain("got 10");
  });

  test("window must be longer than 0", () => {
    expect(() => parse("{ budget: { window: 0s } }")).toThrow('pools.web.retry.budget.window must be a duration > 0, got "0s"');
  });

  test("min_retries_per_second must be a number >= 0", () => {
    expect(() => parse("{ budget: { min_retries_per_second: -1 } }")).toThrow("must be a number of retries per second >= 0, got -1");
    expect(() => parse("{ budget: { min_retries_per_second: 10/s } }")).toThrow("must be a number of retries per second >= 0");
  });
});

import { describe, expect, test } from "bun:test";
import { CircuitBreaker, type BreakerConfig, type CircuitState } from "../../core/resilience/breaker.ts";
import { backoffDelay, parseRetryAfter } from "../../core/resilience/retry.ts";
import { ManualClock } from "../helpers/clock.ts";

const base: BreakerConfig = { failures: 3, failure_ratio: 0, window: 10_000, min_requests: 10, open_for: 5_000, half_open_requests: 2 };

function breaker(config: Partial<BreakerConfig> = {}) {
  const clock = new ManualClock();
  const transitions: string[] = [];
  const b = new CircuitBreaker({ ...base, ...config }, clock, (from: CircuitState, to: CircuitState) => {
    if (from !== to) transitions.push(`${from}→${to}`);
  });
  return { b, clock, transitions };
}

describe("circuit breaker", () => {
  test("closed → open after N consecutive failures; a success resets the count", () => {
    const { b } = breaker();
    b.onFailure("x");
    b.onFailure("x");
    b.onSuccess();
    b.onFailure("x");
    b.onFailure("x");
    expect(b.state).toBe("closed");
    b.onFailure("x");
    expect(b.state).toBe("open");
    expect(b.allows()).toBe(false);
  });

  test("open → half-open after open_for → closed after K successful trials", () => {
    const { b, clock, transitions } = breaker();
    for (let i = 0; i < 3; i++) b.onFailure("x");
    clock.advance(4_999);
    expect(b.state).toBe("open");
    clock.advance(1);
    expect(b.state).toBe("half-open");
    // K = 2 trial requests are admitted, a third is not.
    expect(b.allows()).toBe(true);
    const t1 = b.onStart();
    expect(b.allows()).toBe(true);
    const t2 = b.onStart();
    expect(b.allows()).toBe(false);
    b.onSuccess(t1);
    expect(b.state).toBe("half-open");
    b.onSuccess(t2);
    expect(b.state).toBe("closed");
    expect(transitions).toEqual(["closed→open", "open→half-open", "half-open→closed"]);
  });

  test("half-open → open again when a trial fails, for another open_for", () => {
    const { b, clock, transitions } = breaker();
    for (let i = 0; i < 3; i++) b.onFailure("x");
    clock.advance(5_000);
    b.onFailure("trial", b.onStart());
    expect(b.state).toBe("open");
    clock.advance(5_000);
    expect(b.state).toBe("half-open");
    expect(transitions).toEqual(["closed→open", "open→half-open", "half-open→open", "open→half-open"]);
  });

  test("opens on a failure ratio over the window once min_requests is reached", () => {
    const { b, clock } = breaker({ failures: 0, failure_ratio: 0.5, min_requests: 10 });
    // 4 failures in 8 requests: ratio 0.5 but under min_requests.
    for (let i = 0; i < 4; i++) {
      b.onSuccess();
      b.onFailure("x");
    }
    expect(b.state).toBe("closed");
    b.onSuccess();
    b.onFailure("x");
    expect(b.state).toBe("open");
    // Old results slide out of the window.
    const { b: b2, clock: c2 } = breaker({ failures: 0, failure_ratio: 0.5, min_requests: 4 });
    b2.onFailure("x");
    b2.onFailure("x");
    c2.advance(11_000);
    b2.onSuccess();
    b2.onSuccess();
    b2.onFailure("x");
    expect(b2.state).toBe("closed");
    void clock;
  });
});

describe("retry policy", () => {
  test("backoff is full jitter within [0, min(max, base·2^(n-1))]", () => {
    const backoff = { base: 50, max: 1000 };
    expect(backoffDelay(1, backoff, () => 0)).toBe(0);
    expect(backoffDelay(1, backoff, () => 0.999999)).toBeCloseTo(50, 2);
    expect(backoffDelay(3, backoff, () => 0.5)).toBe(100);
    expect(backoffDelay(10, backoff, () => 0.999999)).toBeLessThanOrEqual(1000);
    for (let n = 1; n < 8; n++) {
      const d = backoffDelay(n, backoff, Math.random);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(Math.min(1000, 50 * 2 ** (n - 1)));
    }
  });

  test("Retry-After as seconds and as an HTTP date", () => {
    expect(parseRetryAfter("3")).toBe(3000);
    expect(parseRetryAfter(new Date(Date.UTC(2030, 0, 1, 0, 0, 10)).toUTCString(), Date.UTC(2030, 0, 1))).toBe(10_000);
    expect(parseRetryAfter("soon")).toBeUndefined();
  });
});

describe("circuit breaker: abandoned trials", () => {
  test("a half-open trial abandoned by its client frees the slot instead of wedging the circuit", () => {
    const { b, clock } = breaker({ half_open_requests: 1 });
    for (let i = 0; i < 3; i++) b.onFailure("x");
    clock.advance(5_000);
    const trial = b.onStart();
    expect(b.allows()).toBe(false);
    b.onAbandon(trial);
    expect(b.state).toBe("half-open");
    expect(b.allows()).toBe(true);
    b.onSuccess(b.onStart());
    expect(b.state).toBe("closed");
  });

  test("only trials decide in half-open: a request from before the circuit opened neither closes nor frees a slot", () => {
    const { b, clock } = breaker({ half_open_requests: 1 });
    const early = b.onStart(); // started while closed: not a trial
    expect(early).toBe(0);
    for (let i = 0; i < 3; i++) b.onFailure("x");
    clock.advance(5_000);
    const trial = b.onStart();
    b.onSuccess(early);
    expect(b.state).toBe("half-open");
    expect(b.allows()).toBe(false);
    b.onFailure("late", early);
    expect(b.state).toBe("half-open");
    // A trial from an earlier half-open period is stale too.
    b.onFailure("trial", trial);
    expect(b.state).toBe("open");
    clock.advance(5_000);
    b.onSuccess(trial);
    expect(b.state).toBe("half-open");
    b.onSuccess(b.onStart());
    expect(b.state).toBe("closed");
  });
});

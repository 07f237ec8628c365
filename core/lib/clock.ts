/** Time as the resilience code sees it, so tests can drive timers by hand (fake time). */
export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  clearTimeout(timer: Timer): void;
  /** A random number in [0, 1), for jitter. */
  random(): number;
}

/** An opaque timer handle. */
export type Timer = unknown;

export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    // Background timers (health checks, breaker) must not keep the process alive on shutdown.
    (t as { unref?: () => void }).unref?.();
    return t as Timer;
  },
  clearTimeout: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
  random: Math.random,
};

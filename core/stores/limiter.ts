/**
 * A rate limit kept in a store, seen from one instance. Requests for one key that arrive while a
 * decision for that key is on its way to Redis wait for it and go together in the next round
 * trip (`n` tokens asked at once), so a hot key costs one round trip per round-trip time, not
 * one per request, and the decision stays Redis' own: nothing is granted locally, so instances
 * cannot overshoot together. A denial also says when the next token is due; until then this
 * instance denies that key without asking (Redis could only say no).
 *
 * No request waits longer than the store's `timeout` from its arrival: the batch it is in is
 * decided by `on_error` when the answer is late, and whenever the connection is down.
 */
import type { BatchResult } from "./gcra.ts";

/** The answer for one request. */
export interface SharedDecision {
  /** `"error"`: the store could not answer in time; `on_error` decides. */
  outcome: "allowed" | "denied" | "error";
  remaining: number;
  retryAfterMs: number;
  resetMs: number;
}

/** What the limiter needs of a store: the connection, the timeout, and where failures go. */
export interface LimiterStore {
  readonly timeoutMs: number;
  /** One decision per request instead of coalescing (to measure what coalescing saves). */
  readonly batch: boolean;
  ready(): boolean;
  gcra(key: string, intervalMs: number, burst: number, n: number): Promise<BatchResult>;
  /** A decision fell to `on_error` (counted and logged by the store). */
  failed(reason: "unavailable" | "timeout" | "error", count: number, error?: unknown): void;
}

interface Waiter {
  resolve: (d: SharedDecision) => void;
  at: number;
}

interface KeyState {
  queue: Waiter[];
  inflight: boolean;
  /** No token before this time (performance.now() milliseconds). */
  deniedUntil: number;
}

const ERROR: SharedDecision = Object.freeze({ outcome: "error", remaining: 0, retryAfterMs: 0, resetMs: 0 });

export class SharedLimiter {
  readonly #keys = new Map<string, KeyState>();
  readonly #prefix: string;
  readonly #interval: number;
  readonly #burst: number;
  readonly #maxKeys: number;

  constructor(
    readonly store: LimiterStore,
    options: { prefix: string; ratePerSecond: number; burst: number; maxKeys: number },
    readonly now: () => number = () => performance.now(),
  ) {
    this.#prefix = options.prefix;
    this.#interval = 1000 / options.ratePerSecond;
    this.#burst = options.burst;
    this.#maxKeys = options.maxKeys;
  }

  /** Keys with a batch waiting, in flight, or a denial remembered. */
  get size(): number {
    return this.#keys.size;
  }

  take(key: string): SharedDecision | Promise<SharedDecision> {
    const now = this.now();
    let st = this.#keys.get(key);
    if (st !== undefined && st.deniedUntil > now) {
      const wait = st.deniedUntil - now;
      return { outcome: "denied", remaining: 0, retryAfterMs: wait, resetMs: this.#burst * (this.#interval) };
    }
    if (!this.store.ready()) {
      this.store.failed("unavailable", 1);
      return ERROR;
    }
    if (!this.store.batch) return this.#single(key, now);
    if (st === undefined) {
      if (this.#keys.size >= this.#maxKeys) this.#prune(now);
      st = { queue: [], inflight: false, deniedUntil: 0 };
      this.#keys.set(key, st);
    }
    const state = st;
    return new Promise<SharedDecision>((resolve) => {
      state.queue.push({ resolve, at: now });
      if (!state.inflight) this.#flush(key, state);
    });
  }

  /** Without coalescing: one round trip for this request alone. */
  #single(key: string, at: number): Promise<SharedDecision> {
    return new Promise((resolve) => {
      const st: KeyState = { queue: [{ resolve, at }], inflight: false, deniedUntil: 0 };
      this.#flush(key, st, false);
    });
  }

  #flush(key: string, st: KeyState, keep = true): void {
    const batch = st.queue;
    st.queue = [];
    st.inflight = true;
    const started = this.now();
    const budget = batch[0]!.at + this.store.timeoutMs - started;
    let done = false;
    // Set below, after `settle` (which clears it) exists.
    const wait: { timer?: ReturnType<typeof setTimeout> } = {};
    const settle = (r: BatchResult | undefined, reason?: "timeout" | "error", error?: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(wait.timer);
      st.inflight = false;
      if (r === undefined) {
        this.store.failed(reason!, batch.length, error);
        for (const w of batch) w.resolve(ERROR);
      } else {
        const now = this.now();
        if (r.granted < batch.length) st.deniedUntil = now + r.retryAfterMs;
        for (let i = 0; i < batch.length; i++) {
          const allowed = i < r.granted;
          batch[i]!.resolve({
            outcome: allowed ? "allowed" : "denied",
            remaining: allowed ? r.remaining + r.granted - 1 - i : 0,
            retryAfterMs: allowed ? 0 : r.retryAfterMs,
            resetMs: r.resetMs,
          });
        }
      }
      if (!keep) return;
      // Requests that arrived meanwhile go next, unless a denial now answers them locally.
      if (st.queue.length && st.deniedUntil > this.now()) {
        const waiting = st.queue;
        st.queue = [];
        const now = this.now();
        for (const w of waiting) {
          w.resolve({ outcome: "denied", remaining: 0, retryAfterMs: st.deniedUntil - now, resetMs: r?.resetMs ?? 0 });
        }
      }
      if (st.queue.length) this.#flush(key, st);
      else if (st.deniedUntil <= this.now()) this.#keys.delete(key);
    };
    if (budget <= 0) return settle(undefined, "timeout");
    wait.timer = setTimeout(() => settle(undefined, "timeout"), budget);
    this.store.gcra(this.#prefix + key, this.#interval, this.#burst, batch.length).then(
      (r) => settle(r),
      (e) => settle(undefined, "error", e),
    );
  }

  /** At the key cap: forget remembered denials that have passed, then any idle key. */
  #prune(now: number): void {
    for (const [k, st] of this.#keys) {
      if (!st.inflight && st.queue.length === 0 && st.deniedUntil <= now) this.#keys.delete(k);
    }
    if (this.#keys.size < this.#maxKeys) return;
    for (const [k, st] of this.#keys) {
      if (!st.inflight && st.queue.length === 0) this.#keys.delete(k);
      if (this.#keys.size < this.#maxKeys / 2) return;
    }
  }
}

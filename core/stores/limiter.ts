/**
 * A rate limit kept in a store, seen from one instance. Every token comes from Redis (the GCRA
 * script), so instances cannot overshoot together; two things keep Redis off most requests:
 *
 * - Coalescing: requests for one key that arrive while a call for that key is on its way wait
 *   for it and are decided by the next call together (`n` tokens asked at once).
 * - A small local reserve: each call also asks for twice as many tokens as the key used since
 *   the previous call (at most `reserveShare` of the burst), kept here for `reserveMs`. Requests
 *   take them without waiting, and a refill is sent in the background when half is used. Tokens
 *   left unused when the reserve expires are lost, never added: the limit can only be
 *   undershot, by at most the reserve of each instance (docs/fleets.md has the measurements).
 *
 * A denial also says when the next token is due; until then this instance denies that key
 * without asking (Redis could only say no). No request waits longer than the store's `timeout`
 * from its arrival: its batch is decided by `on_error` when the answer is late, and at once
 * whenever the connection is down.
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
  /** Coalesce and reserve (the default); false: one round trip per request (to measure what they save). */
  readonly batch: boolean;
  ready(): boolean;
  gcra(key: string, intervalMs: number, burst: number, n: number): Promise<BatchResult>;
  /** A decision fell to `on_error` (counted and logged by the store). */
  failed(reason: "unavailable" | "timeout" | "error", count: number, error?: unknown): void;
}

export interface LimiterOptions {
  prefix: string;
  ratePerSecond: number;
  burst: number;
  maxKeys: number;
  /** Largest local reserve, as a share of the burst. @default 0.05 */
  reserveShare?: number;
  /** How long reserved tokens stay usable. @default 250 */
  reserveMs?: number;
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
  /** Tokens granted by Redis and not used yet, usable until `reserveUntil`. */
  reserve: number;
  reserveUntil: number;
  /** Requests since the last call was sent: the size of the next reserve. */
  demand: number;
  /** Redis' last answer, for the RateLimit headers of requests served from the reserve. */
  remaining: number;
  resetMs: number;
}

const ERROR: SharedDecision = Object.freeze({ outcome: "error", remaining: 0, retryAfterMs: 0, resetMs: 0 });

export class SharedLimiter {
  readonly #keys = new Map<string, KeyState>();
  readonly #prefix: string;
  readonly #interval: number;
  readonly #burst: number;
  readonly #maxKeys: number;
  readonly #maxReserve: number;
  readonly #reserveMs: number;
  /** Returned for requests served from the reserve (read it before the next call). */
  readonly #allowed: SharedDecision = { outcome: "allowed", remaining: 0, retryAfterMs: 0, resetMs: 0 };

  constructor(
    readonly store: LimiterStore,
    options: LimiterOptions,
    readonly now: () => number = () => performance.now(),
  ) {
    this.#prefix = options.prefix;
    this.#interval = 1000 / options.ratePerSecond;
    this.#burst = options.burst;
    this.#maxKeys = options.maxKeys;
    this.#maxReserve = store.batch ? Math.floor(options.burst * (options.reserveShare ?? 0.05)) : 0;
    this.#reserveMs = options.reserveMs ?? 250;
  }

  /** Keys with a batch waiting, in flight, a reserve or a denial remembered. */
  get size(): number {
    return this.#keys.size;
  }

  take(key: string): SharedDecision | Promise<SharedDecision> {
    const now = this.now();
    let st = this.#keys.get(key);
    if (st !== undefined) {
      if (st.deniedUntil > now) {
        return { outcome: "denied", remaining: 0, retryAfterMs: st.deniedUntil - now, resetMs: st.resetMs };
      }
      st.demand++;
      if (st.reserve > 0 && now < st.reserveUntil) {
        st.reserve--;
        // Half the reserve used: refill in the background, so the next requests need not wait.
        if (!st.inflight && st.reserve <= st.demand && this.store.ready()) this.#flush(key, st);
        const d = this.#allowed;
        d.remaining = Math.max(0, st.remaining - st.demand);
        d.resetMs = st.resetMs;
        return d;
      }
    }
    if (!this.store.ready()) {
      this.store.failed("unavailable", 1);
      return ERROR;
    }
    if (!this.store.batch) return this.#single(key, now);
    if (st === undefined) {
      if (this.#keys.size >= this.#maxKeys) this.#prune(now);
      st = { queue: [], inflight: false, deniedUntil: 0, reserve: 0, reserveUntil: 0, demand: 1, remaining: 0, resetMs: 0 };
      this.#keys.set(key, st);
    }
    const state = st;
    return new Promise<SharedDecision>((resolve) => {
      state.queue.push({ resolve, at: now });
      if (!state.inflight) this.#flush(key, state);
    });
  }

  /** Without batching: one round trip for this request alone. */
  #single(key: string, at: number): Promise<SharedDecision> {
    return new Promise((resolve) => {
      const st: KeyState = {
        queue: [{ resolve, at }],
        inflight: false,
        deniedUntil: 0,
        reserve: 0,
        reserveUntil: 0,
        demand: 0,
        remaining: 0,
        resetMs: 0,
      };
      this.#flush(key, st, false);
    });
  }

  #flush(key: string, st: KeyState, keep = true): void {
    const batch = st.queue;
    st.queue = [];
    st.inflight = true;
    const started = this.now();
    // Ask for the waiting requests plus a reserve of twice the recent demand: refilled at half,
    // a steady demand then needs one call per reserve.
    const extra = Math.min(this.#maxReserve, 2 * Math.max(st.demand, batch.length));
    st.demand = 0;
    // A refill with nobody waiting has no deadline of its own but the timeout.
    const budget = (batch.length ? batch[0]!.at : started) + this.store.timeoutMs - started;
    let done = false;
    // Set below, after `settle` (which clears it) exists.
    const wait: { timer?: ReturnType<typeof setTimeout> } = {};
    const settle = (r: BatchResult | undefined, reason?: "timeout" | "error", error?: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(wait.timer);
      st.inflight = false;
      if (r === undefined) {
        if (batch.length) this.store.failed(reason!, batch.length, error);
        for (const w of batch) w.resolve(ERROR);
      } else this.#grant(st, batch, r, true);
      if (!keep) return;
      // Requests that arrived meanwhile: from what was granted beyond the batch, else the next call
      // (or denied, when that answer said the bucket is empty).
      if (st.queue.length && r !== undefined) st.queue = this.#grant(st, st.queue, { ...r, granted: 0 }, r.retryAfterMs > 0);
      if (st.queue.length) this.#flush(key, st);
      if (!st.inflight && st.queue.length === 0 && st.reserve === 0 && st.deniedUntil <= this.now()) this.#keys.delete(key);
    };
    if (budget <= 0) return settle(undefined, "timeout");
    wait.timer = setTimeout(() => settle(undefined, "timeout"), budget);
    this.store.gcra(this.#prefix + key, this.#interval, this.#burst, batch.length + extra).then(
      (r) => settle(r),
      (e) => settle(undefined, "error", e),
    );
  }

  /**
   * Decide `waiters` from `r.granted` new tokens and the reserve; tokens left over make the new
   * reserve. Those short of a token are denied when `deny` (the bucket is empty: the wait Redis
   * announced is remembered), else returned to be asked for.
   */
  #grant(st: KeyState, waiters: Waiter[], r: BatchResult, deny: boolean): Waiter[] {
    const now = this.now();
    let tokens = r.granted + (now < st.reserveUntil ? st.reserve : 0);
    st.remaining = r.remaining;
    st.resetMs = r.resetMs;
    let i = 0;
    for (; i < waiters.length && tokens > 0; i++) {
      tokens--;
      waiters[i]!.resolve({ outcome: "allowed", remaining: r.remaining + tokens, retryAfterMs: 0, resetMs: r.resetMs });
    }
    st.reserve = tokens;
    if (r.granted > 0) st.reserveUntil = now + this.#reserveMs;
    if (i === waiters.length) return [];
    if (!deny) return waiters.slice(i);
    st.deniedUntil = Math.max(st.deniedUntil, now + r.retryAfterMs);
    for (; i < waiters.length; i++) {
      waiters[i]!.resolve({ outcome: "denied", remaining: 0, retryAfterMs: st.deniedUntil - now, resetMs: r.resetMs });
    }
    return [];
  }

  /** At the key cap: forget keys with nothing pending, reserved or remembered, then any idle key. */
  #prune(now: number): void {
    for (const [k, st] of this.#keys) {
      if (!st.inflight && st.queue.length === 0 && st.deniedUntil <= now && (st.reserve === 0 || now >= st.reserveUntil))
        this.#keys.delete(k);
    }
    if (this.#keys.size < this.#maxKeys) return;
    for (const [k, st] of this.#keys) {
      if (!st.inflight && st.queue.length === 0) this.#keys.delete(k);
      if (this.#keys.size < this.#maxKeys / 2) return;
    }
  }
}

/**
 * Per-backend circuit breaker: closed → open after N consecutive failures, or a failure ratio
 * over a sliding window with a minimum request count; open for `open_for`; then half-open,
 * admitting K trial requests: K successes close it, any failure re-opens it.
 */
import type { Clock, Timer } from "../lib/clock.ts";
import { SlidingCounts } from "./window.ts";

export type CircuitState = "closed" | "open" | "half-open";

export interface BreakerConfig {
  /** Consecutive failures that open the circuit; 0 disables this trigger. */
  failures: number;
  /** Failure ratio (0..1) over `window` that opens the circuit; 0 disables this trigger. */
  failure_ratio: number;
  window: number;
  min_requests: number;
  open_for: number;
  half_open_requests: number;
}

export class CircuitBreaker {
  state: CircuitState = "closed";
  #consecutive = 0;
  #trials = 0;
  #trialSuccesses = 0;
  /** Counts half-open periods, so a trial from an earlier one is recognised as stale. */
  #epoch = 0;
  #timer: Timer | undefined;
  /** Requests (a) and failures (b) over the sliding window. */
  readonly #window: SlidingCounts;

  constructor(
    readonly config: BreakerConfig,
    private readonly clock: Clock,
    /** Called on every state change, and when half-open trial slots fill or free up. */
    private readonly onChange: (from: CircuitState, to: CircuitState, reason: string) => void,
  ) {
    this.#window = new SlidingCounts(config.window, clock);
  }

  /** Whether a new request may go to this backend now. */
  allows(): boolean {
    return this.state === "closed" || (this.state === "half-open" && this.#trials < this.config.half_open_requests);
  }

  /**
   * A request to this backend starts. Returns a trial token (non-zero) when it took a half-open
   * trial slot; pass it back with the outcome, so only real trials of the current half-open
   * period count towards closing (or re-opening) the circuit.
   */
  onStart(): number {
    if (this.state !== "half-open") return 0;
    this.#trials++;
    if (this.#trials === this.config.half_open_requests) this.onChange("half-open", "half-open", "trial slots full");
    return this.#epoch;
  }

  #isTrial(token: number): boolean {
    return token !== 0 && token === this.#epoch && this.state === "half-open";
  }

  /** A request that started gave no verdict (the client left first): free its trial slot. */
  onAbandon(token: number): void {
    if (!this.#isTrial(token) || this.#trials === 0) return;
    this.#trials--;
    this.onChange("half-open", "half-open", "trial slot free");
  }

  onSuccess(token = 0): void {
    this.#consecutive = 0;
    this.#window.add(1, 0);
    if (!this.#isTrial(token)) return;
    this.#trials = Math.max(0, this.#trials - 1);
    if (++this.#trialSuccesses >= this.config.half_open_requests) this.#to("closed", "trial requests succeeded");
    else this.onChange("half-open", "half-open", "trial slot free");
  }

  onFailure(reason: string, token = 0): void {
    this.#consecutive++;
    this.#window.add(1, 1);
    if (this.state === "half-open") {
      // Only a trial decides in half-open; a request from before the circuit opened does not.
      if (this.#isTrial(token)) this.#to("open", `trial request failed: ${reason}`);
      return;
    }
    if (this.state !== "closed") return;
    const c = this.config;
    if (c.failures > 0 && this.#consecutive >= c.failures) {
      this.#to("open", `${this.#consecutive} consecutive failures (last: ${reason})`);
      return;
    }
    if (c.failure_ratio > 0) {
      const req = this.#window.sumA();
      const fail = this.#window.sumB();
      if (req >= c.min_requests && fail / req >= c.failure_ratio) {
        this.#to("open", `failure ratio ${(fail / req).toFixed(2)} over ${req} requests (last: ${reason})`);
      }
    }
  }

  /** Stop the timer (pool removed or process stopping). */
  close(): void {
    if (this.#timer) this.clock.clearTimeout(this.#timer);
  }

  #to(next: CircuitState, reason: string): void {
    const prev = this.state;
    this.state = next;
    if (next === "half-open") this.#epoch++;
    this.#trials = 0;
    this.#trialSuccesses = 0;
    if (this.#timer) this.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (next === "open") {
      this.#timer = this.clock.setTimeout(() => this.#to("half-open", `open for ${this.config.open_for}ms`), this.config.open_for);
    }
    if (next === "closed") {
      this.#consecutive = 0;
      this.#window.reset();
    }
    this.onChange(prev, next, reason);
  }
}

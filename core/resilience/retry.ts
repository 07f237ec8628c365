/**
 * Retry policy: which failures may be retried for which requests, how long to back off
 * (exponential with full jitter), and a budget that caps retries at a share of traffic so a
 * failing pool cannot multiply its own load (Envoy's retry budgets, Finagle's RetryBudget).
 */
import type { Clock } from "../lib/clock.ts";
import { SlidingCounts } from "./window.ts";

/** Methods RFC 9110 §9.2.2 calls idempotent: safe to send twice. */
export const IDEMPOTENT: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]);

export type FailureKind = "connect" | "reset" | "timeout" | "502" | "503" | "504";

export interface RetryConfig {
  /** Total tries including the first; 1 disables retries. */
  attempts: number;
  /** Failures that may be retried. `connect` is retried for any method, the rest only for idempotent ones. */
  on: readonly FailureKind[];
  backoff: { base: number; max: number };
  budget: { ratio: number; window: number; min_retries_per_second: number };
  /** Per-try limit on waiting for response headers; 0 uses `timeouts.response`. */
  per_try_timeout: number;
  /** Bodies up to this many bytes (by Content-Length) are buffered so they can be re-sent. */
  buffer_body_limit: number;
}

/** Delay before retry number `retry` (1-based): uniform in [0, min(max, base·2^(retry-1))]. */
export function backoffDelay(retry: number, backoff: RetryConfig["backoff"], random: () => number): number {
  return random() * Math.min(backoff.max, backoff.base * 2 ** (retry - 1));
}

/** Milliseconds a `Retry-After` value asks for (delta-seconds or an HTTP date), if valid. */
export function parseRetryAfter(value: string | null | undefined, nowEpochMs = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowEpochMs);
}

/**
 * Finagle's and Linkerd's retry budget (Finagle's TokenRetryBudget over a leaky bucket): each
 * request deposits `ratio` of a token, each retry withdraws one, and both count only for
 * `window` (Finagle's ttl). On top, a reserve of `min_retries_per_second × window` tokens is
 * always there, so within any window there are at most `ratio × requests + min_retries_per_second
 * × window` retries; as withdrawals leave the window (in tenths of it) the reserve refills, at
 * `min_retries_per_second` on average. With N worker processes each gets 1/N of the reserve
 * (the ratio part follows each one's own traffic), so together they allow what one process would.
 */
export class RetryBudget {
  /** Requests (a) and retries (b). */
  readonly #counts: SlidingCounts;
  readonly #ratio: number;
  readonly #reserve: number;

  /** `share`: how many processes split the traffic (and so the reserve); 1 without workers. */
  constructor(config: RetryConfig["budget"], clock: Clock, share = 1) {
    this.#counts = new SlidingCounts(config.window, clock);
    this.#ratio = config.ratio;
    this.#reserve = (config.min_retries_per_second * config.window) / 1000 / Math.max(1, share);
  }

  onRequest(): void {
    this.#counts.add(1, 0);
  }

  /** Take one retry from the budget; false when the budget is spent. */
  tryRetry(): boolean {
    // The epsilon keeps 0.29 × 100 = 28.999999999999996 from refusing the 29th retry.
    const allowed = this.#reserve + this.#ratio * this.#counts.sumA() + 1e-9;
    if (this.#counts.sumB() + 1 > allowed) return false;
    this.#counts.add(0, 1);
    return true;
  }
}

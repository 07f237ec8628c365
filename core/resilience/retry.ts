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
  budget: { ratio: number; window: number; min_retries: number };
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

/** Caps retries at `ratio` of requests over a sliding window, always allowing `min_retries`. */
export class RetryBudget {
  /** Requests (a) and retries (b). */
  readonly #counts: SlidingCounts;

  constructor(
    private readonly config: RetryConfig["budget"],
    clock: Clock,
  ) {
    this.#counts = new SlidingCounts(config.window, clock);
  }

  onRequest(): void {
    this.#counts.add(1, 0);
  }

  /** Take one retry from the budget; false when the budget is spent. */
  tryRetry(): boolean {
    const allowed = Math.max(this.config.min_retries, this.config.ratio * this.#counts.sumA());
    if (this.#counts.sumB() + 1 > allowed) return false;
    this.#counts.add(0, 1);
    return true;
  }
}

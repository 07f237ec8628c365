import type { Clock } from "../lib/clock.ts";

const BUCKETS = 10;

/**
 * Two counters over a sliding time window, kept as a ring of 10 buckets so that adding and
 * summing cost O(10) and never allocate. Used for failure ratios and the retry budget.
 */
export class SlidingCounts {
  readonly #a = new Float64Array(BUCKETS);
  readonly #b = new Float64Array(BUCKETS);
  #bucketStart: number;
  #bucket = 0;

  constructor(
    private readonly windowMs: number,
    private readonly clock: Clock,
  ) {
    this.#bucketStart = clock.now();
  }

  add(a: number, b: number): void {
    this.#advance();
    this.#a[this.#bucket]! += a;
    this.#b[this.#bucket]! += b;
  }

  /** Sum of the first counter over the window. */
  sumA(): number {
    this.#advance();
    let s = 0;
    for (let i = 0; i < BUCKETS; i++) s += this.#a[i]!;
    return s;
  }

  sumB(): number {
    this.#advance();
    let s = 0;
    for (let i = 0; i < BUCKETS; i++) s += this.#b[i]!;
    return s;
  }

  reset(): void {
    this.#a.fill(0);
    this.#b.fill(0);
  }

  #advance(): void {
    const width = this.windowMs / BUCKETS;
    let steps = Math.floor((this.clock.now() - this.#bucketStart) / width);
    if (steps <= 0) return;
    this.#bucketStart += steps * width;
    if (steps > BUCKETS) steps = BUCKETS;
    for (let i = 0; i < steps; i++) {
      this.#bucket = (this.#bucket + 1) % BUCKETS;
      this.#a[this.#bucket] = 0;
      this.#b[this.#bucket] = 0;
    }
  }
}

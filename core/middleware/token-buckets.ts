/**
 * Token buckets keyed by string, in bounded memory. Buckets live in flat typed arrays indexed by
 * a slot number, linked in least-recently-used order: a `Map<string, slot>` plus ~24 bytes of
 * arrays per key, no object per bucket. A bucket idle long enough to have refilled completely is
 * the same as no bucket, so such buckets are dropped from the LRU end as new keys arrive; when
 * `maxKeys` are active anyway, the least recently used is evicted (that client starts again
 * with a full bucket: the cap trades exactness under a flood of keys for bounded memory).
 */

export interface TokenBucketOptions {
  /** Tokens added per second. */
  ratePerSecond: number;
  /** Bucket size: the most requests allowed at once after an idle period. */
  burst: number;
  /** Hard cap on the number of keys tracked. */
  maxKeys: number;
  /** Milliseconds from an arbitrary origin; inject a fake clock in tests. */
  now: () => number;
}

/**
 * The outcome of {@link TokenBuckets.take}. The same object is returned by every call (no
 * allocation per request): copy what you need before the next call.
 */
export interface Decision {
  allowed: boolean;
  /** Whole tokens left after this request. */
  remaining: number;
  /** When denied: milliseconds until one token is available. 0 when allowed. */
  retryAfterMs: number;
  /** Milliseconds until the bucket is full again. */
  resetMs: number;
}

const NONE = -1;

export class TokenBuckets {
  readonly #rate: number; // tokens per millisecond
  readonly #burst: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  /** An entry idle this long has refilled completely and can be forgotten. */
  readonly #idleMs: number;
  readonly #index = new Map<string, number>();
  #keys: (string | undefined)[] = [];
  #tokens = new Float64Array(0);
  #stamp = new Float64Array(0);
  #prev = new Int32Array(0);
  #next = new Int32Array(0);
  #head = NONE; // most recently used
  #tail = NONE; // least recently used
  #free = NONE; // free slots, chained through #next
  #used = 0; // slots ever handed out
  readonly #decision: Decision = { allowed: true, remaining: 0, retryAfterMs: 0, resetMs: 0 };
  /** Keys forgotten because of the cap while their bucket was not yet full. */
  evictions = 0;

  constructor(options: TokenBucketOptions) {
    this.#rate = options.ratePerSecond / 1000;
    this.#burst = options.burst;
    this.#maxKeys = options.maxKeys;
    this.#now = options.now;
    this.#idleMs = this.#burst / this.#rate;
    this.#grow(Math.min(1024, this.#maxKeys));
  }

  /** Number of keys tracked right now. */
  get size(): number {
    return this.#index.size;
  }

  /** Take one token for `key`. */
  take(key: string): Decision {
    const now = this.#now();
    let slot = this.#index.get(key);
    let tokens: number;
    if (slot === undefined) {
      this.#expire(now, 2);
      if (this.#index.size >= this.#maxKeys) this.#evictTail();
      slot = this.#alloc();
      this.#keys[slot] = key;
      this.#index.set(key, slot);
      tokens = this.#burst;
    } else {
      this.#unlink(slot);
      const elapsed = now - this.#stamp[slot]!;
      tokens = elapsed > 0 ? Math.min(this.#burst, this.#tokens[slot]! + elapsed * this.#rate) : this.#tokens[slot]!;
    }
    this.#pushHead(slot);
    this.#stamp[slot] = now;
    const d = this.#decision;
    if (tokens >= 1) {
      tokens -= 1;
      d.allowed = true;
      d.retryAfterMs = 0;
    } else {
      d.allowed = false;
      d.retryAfterMs = (1 - tokens) / this.#rate;
    }
    this.#tokens[slot] = tokens;
    d.remaining = Math.floor(tokens);
    d.resetMs = (this.#burst - tokens) / this.#rate;
    return d;
  }

  /** Drop up to `max` buckets from the LRU end that have been idle long enough to be full. */
  #expire(now: number, max: number): void {
    for (let i = 0; i < max && this.#tail !== NONE; i++) {
      if (now - this.#stamp[this.#tail]! < this.#idleMs) return;
      this.#release(this.#tail);
    }
  }

  #evictTail(): void {
    if (this.#tail === NONE) return;
    this.evictions++;
    this.#release(this.#tail);
  }

  #release(slot: number): void {
    this.#unlink(slot);
    this.#index.delete(this.#keys[slot]!);
    this.#keys[slot] = undefined;
    this.#next[slot] = this.#free;
    this.#free = slot;
  }

  #alloc(): number {
    if (this.#free !== NONE) {
      const slot = this.#free;
      this.#free = this.#next[slot]!;
      return slot;
    }
    if (this.#used === this.#tokens.length) this.#grow(Math.min(this.#maxKeys, this.#tokens.length * 2));
    return this.#used++;
  }

  #grow(capacity: number): void {
    const copy = <T extends Float64Array | Int32Array>(old: T, make: (n: number) => T) => {
      const a = make(capacity);
      a.set(old);
      return a;
    };
    this.#tokens = copy(this.#tokens, (n) => new Float64Array(n));
    this.#stamp = copy(this.#stamp, (n) => new Float64Array(n));
    this.#prev = copy(this.#prev, (n) => new Int32Array(n));
    this.#next = copy(this.#next, (n) => new Int32Array(n));
  }

  #unlink(slot: number): void {
    const p = this.#prev[slot]!;
    const n = this.#next[slot]!;
    if (p !== NONE) this.#next[p] = n;
    else if (this.#head === slot) this.#head = n;
    if (n !== NONE) this.#prev[n] = p;
    else if (this.#tail === slot) this.#tail = p;
    this.#prev[slot] = NONE;
    this.#next[slot] = NONE;
  }

  #pushHead(slot: number): void {
    this.#prev[slot] = NONE;
    this.#next[slot] = this.#head;
    if (this.#head !== NONE) this.#prev[this.#head] = slot;
    this.#head = slot;
    if (this.#tail === NONE) this.#tail = slot;
  }
}

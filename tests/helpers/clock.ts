import type { Clock, Timer } from "../../core/lib/clock.ts";

/** A clock that only moves when told to: `advance(ms)` fires due timers in order. */
export class ManualClock implements Clock {
  #now = 0;
  #timers: { at: number; fn: () => void; seq: number }[] = [];
  #seq = 0;
  randomValue = 0.5;

  now(): number {
    return this.#now;
  }
  setTimeout(fn: () => void, ms: number): Timer {
    const t = { at: this.#now + ms, fn, seq: this.#seq++ };
    this.#timers.push(t);
    return t;
  }
  clearTimeout(timer: Timer): void {
    this.#timers = this.#timers.filter((t) => t !== timer);
  }
  random(): number {
    return this.randomValue;
  }
  /** Move time forward, firing every timer that falls due, earliest first. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      this.#timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.#timers[0];
      if (!next || next.at > end) break;
      this.#timers.shift();
      this.#now = next.at;
      next.fn();
    }
    this.#now = end;
  }
}

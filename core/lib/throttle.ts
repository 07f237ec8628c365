/**
 * A log record that something failing on every request cannot flood: `emit` runs at most once per
 * `everyMs`, told how many calls were dropped since it last ran.
 */
export function throttle(everyMs: number, now: () => number = () => performance.now()): (emit: (suppressed: number) => void) => void {
  let last = -Infinity;
  let suppressed = 0;
  return (emit) => {
    const t = now();
    if (t - last < everyMs) return void suppressed++;
    last = t;
    const n = suppressed;
    suppressed = 0;
    emit(n);
  };
}

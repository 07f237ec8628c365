/** Bodies for the streaming tests: large, made on demand, never held whole in memory. */

const CHUNK = new Uint8Array(64 * 1024).fill(97);

/** `total` bytes of `a`, pulled 64 KiB at a time (the same chunk each time: no allocation per pull). */
export function generated(total: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(c) {
      if (sent >= total) return c.close();
      const n = Math.min(CHUNK.length, total - sent);
      c.enqueue(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
      sent += n;
    },
  });
}

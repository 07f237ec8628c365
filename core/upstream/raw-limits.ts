/**
 * Sizes at which the raw client's response reading (raw-response.ts) changes how it hands bytes
 * over; the runtime sets them (core/runtime/bun.ts, deno.ts) before any request.
 */
export const limits = {
  /**
   * A response whose head and body fit this many bytes is read whole and handed over as bytes:
   * the listener writes it with its head in one send(), with no ReadableStream, no promise per
   * piece and no second write. Larger ones are streamed with backpressure.
   *
   * 64 KiB for Fulcrum's own listener (16 KiB GET: ~7% less CPU a request than streaming, median of
   * 10 interleaved rounds). Bun.serve (FULCRUM_BUN_SERVE=1) needs 16 KiB: it writes a response that
   * completes outside the handler in one send() only when it fits its 16 KiB cork buffer; past that,
   * every fragment is its own send() (oven-sh/bun#41341): there a larger one goes as a stream.
   */
  whole: 64 * 1024,
  /**
   * Up to this many bytes a piece of a read is copied; past it, a view. A view of a small chunk
   * makes JSC first move the whole read into an ArrayBuffer of its own (see `part` in
   * raw-response.ts). 0 on Deno, where views are cheap: its reads are in node:buffer's pool and
   * a new Uint8Array costs V8 ~0.7 µs.
   */
  partCopy: 4096,
};

/** The copy limit on Bun; past it a body's head may also go in the read (headroom). */
export const PART_COPY = 4096;

/** Set by the runtime when it serves with Bun.serve (see {@link limits}). */
export function setWholeResponseLimit(bytes: number): void {
  limits.whole = bytes;
}

/** Set by a runtime whose views are cheap (see {@link limits}). */
export function setPartCopyLimit(bytes: number): void {
  limits.partCopy = bytes;
}

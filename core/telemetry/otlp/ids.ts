// Trace and span ids and the trace-id ratio test: the words of the last ids made stay here (live bindings) so RecordedSpan and SpanFactory read them without re-parsing hex.

/**
 * Upper bound of the trace-id ratio test, exactly as the SDK's TraceIdRatioBasedSampler computes it,
 * so that a root span here and a plugin's root span in the SDK decide alike for the same trace id.
 */
export function ratioUpperBound(ratio: number): number {
  const r = typeof ratio !== "number" || Number.isNaN(ratio) ? 0 : ratio >= 1 ? 1 : ratio <= 0 ? 0 : ratio;
  return r === 1 ? 4294967296 : Math.floor(r * 4294967295);
}

/** The SDK's TraceIdRatioBasedSampler test: XOR of the id's four 32-bit words, below the bound. */
export function keepsTraceId(traceId: string, upperBound: number): boolean {
  let acc = 0;
  for (let i = 0; i < 32; i += 8) {
    let part = 0;
    for (let j = 0; j < 8; j++) {
      const c = traceId.charCodeAt(i + j);
      part = (part << 4) | (c < 58 ? c - 48 : c < 71 ? c - 55 : c - 87);
    }
    acc = (acc ^ part) >>> 0;
  }
  return acc < upperBound;
}

// Ids: random 32-bit words (Math.random, as the SDK's generator), hex digits written as bytes
// through a table and decoded once: a flat string. Concatenating two-digit strings made a rope of
// 16 pieces, flattened later where the id was first read (the access log, traceparent): 200 ns
// an id against 60 here (tight loop).
const HEX = new Uint8Array(512);
for (let i = 0; i < 256; i++) {
  const h = (i < 16 ? "0" : "") + i.toString(16);
  HEX[2 * i] = h.charCodeAt(0);
  HEX[2 * i + 1] = h.charCodeAt(1);
}
// `| 0`, not `>>> 0`: a word above 2^31 would be a double, and spans whose ids hold doubles in
// some fields and ints in others made the encoder's compiled code exit and recompile (JSC's
// OSR-exit log: `idWords`). The bits are the same; readers use `>>>` or setUint32.
const word = () => (Math.random() * 4294967296) | 0;
const traceHex = new Uint8Array(32);
const spanHex = new Uint8Array(16);
const ascii = new TextDecoder();
/** `w` as 8 hex digits at `a[p]`. */
function putHex(a: Uint8Array, p: number, w: number): void {
  let b = (w >>> 23) & 510;
  a[p] = HEX[b]!;
  a[p + 1] = HEX[b + 1]!;
  b = (w >>> 15) & 510;
  a[p + 2] = HEX[b]!;
  a[p + 3] = HEX[b + 1]!;
  b = (w >>> 7) & 510;
  a[p + 4] = HEX[b]!;
  a[p + 5] = HEX[b + 1]!;
  b = (w << 1) & 510;
  a[p + 6] = HEX[b]!;
  a[p + 7] = HEX[b + 1]!;
}

// `var` for the same reason as writer.ts's buffer: no temporal-dead-zone check on each read from spans.ts and factory.ts.
/** XOR of the last trace id's four words: the SDK ratio test's accumulator, without re-parsing the hex. */
// deno-lint-ignore no-var
export var lastTraceIdXor = 0;
// The words of the last ids made, kept on recorded spans so the encoder writes bytes, not hex.
// deno-lint-ignore no-var
export var tw0 = 0, tw1 = 0, tw2 = 0, tw3 = 0, sw0 = 0, sw1 = 0;
/** A new trace id's four words (never all zero: invalid per W3C) into tw0..tw3 and lastTraceIdXor, as hex into `hex` at `at`. */
function traceWords(hex: Uint8Array, at: number): void {
  let a: number, b: number, c: number, d: number;
  do {
    a = word();
    b = word();
    c = word();
    d = word();
  } while ((a | b | c | d) === 0);
  lastTraceIdXor = (a ^ b ^ c ^ d) >>> 0;
  tw0 = a;
  tw1 = b;
  tw2 = c;
  tw3 = d;
  putHex(hex, at, a);
  putHex(hex, at + 8, b);
  putHex(hex, at + 16, c);
  putHex(hex, at + 24, d);
}

/** A new span id's two words (never both zero) into sw0, sw1, as hex into `hex` at `at`. */
function spanWords(hex: Uint8Array, at: number): void {
  let a: number, b: number;
  do {
    a = word();
    b = word();
  } while ((a | b) === 0);
  sw0 = a;
  sw1 = b;
  putHex(hex, at, a);
  putHex(hex, at + 8, b);
}

/** 16 random bytes as 32 hex digits, never all zero (invalid per W3C). */
export function newTraceId(): string {
  traceWords(traceHex, 0);
  return ascii.decode(traceHex);
}
/** 8 random bytes as 16 hex digits, never all zero. */
export function newSpanId(): string {
  spanWords(spanHex, 0);
  return ascii.decode(spanHex);
}

/**
 * A new trace and its root span, as W3C's traceparent `00-<trace id>-<span id>-<flags>` (flags 01
 * when the trace-id ratio test keeps it against `bound`, else 00): the ids' hex is written into
 * one buffer and decoded once, and the caller takes the ids as its slices. Two decodes and the
 * traceparent's concatenation at inject cost ~2.5x this (every request makes a root span when
 * tracing is on, sampled or not). Sets the words and lastTraceIdXor as newTraceId and newSpanId do.
 */
export function newRoot(bound: number): string {
  traceWords(rootHex, 3);
  spanWords(rootHex, 36);
  rootHex[54] = lastTraceIdXor < bound ? 49 : 48;
  return ascii.decode(rootHex);
}
/** "00-", 32 hex digits, "-", 16 hex digits, "-0" and the flag's digit. */
const rootHex = new Uint8Array(55);
rootHex.set([48, 48, 45], 0);
rootHex[35] = 45;
rootHex[52] = 45;
rootHex[53] = 48;

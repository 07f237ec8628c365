// The protobuf wire-format writer the OTLP encoders share: one module-level buffer and position (live bindings, moved only through setTarget/setPos), so byte loops read module variables, not an object's fields.
import type { HrTime } from "@opentelemetry/api";

// The scratch buffer: resource and scope fields are encoded here (once each); spans and requests
// are written into their own buffers (EncodedSpans, encodeSpansRequest) by pointing `buf` at them.
// `var`, not `let`: read from messages.ts and request.ts as imported `let`s (temporal-dead-zone
// checks, presumably) they cost ~2% of encoding run from source (bench/otlp-encode-micro.ts, Bun);
// as `var` it measured no slower than before the split. A bundle makes them `var` anyway.
// deno-lint-ignore no-var
export var buf = new Uint8Array(4 * 1024);
// deno-lint-ignore no-var
export var view = new DataView(buf.buffer);
// deno-lint-ignore no-var
export var pos = 0;

/** Points the writer at `b` (`v` its DataView), writing from `p`; callers save and restore the previous target. */
export function setTarget(b: Uint8Array<ArrayBuffer>, v: DataView<ArrayBuffer>, p: number): void {
  buf = b;
  view = v;
  pos = p;
}

/** Moves the position, after an encoder wrote bytes through a local copy of `buf`. */
export function setPos(p: number): void {
  pos = p;
}

/** Room for `n` more bytes at `pos`: grows (and copies) the buffer when short. */
export function ensure(n: number): void {
  if (pos + n <= buf.length) return;
  let size = buf.length * 2;
  while (size < pos + n) size *= 2;
  const next = new Uint8Array(size);
  next.set(buf.subarray(0, pos));
  buf = next;
  view = new DataView(buf.buffer);
}

export function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/** Unsigned 32-bit varint; the caller has ensured room. */
export function u32(v: number): void {
  while (v > 127) {
    buf[pos++] = (v & 127) | 128;
    v >>>= 7;
  }
  buf[pos++] = v;
}

/** int64 varint of any safe integer (negative: ten bytes, two's complement), as the library writes it. */
export function int64(value: number): void {
  ensure(10);
  if (value >= 0 && value <= 4294967295) return u32(value >>> 0);
  let low: number;
  let high: number;
  if (value >= 0) {
    low = value >>> 0;
    high = (value / 4294967296) >>> 0;
  } else {
    const abs = Math.abs(value);
    low = ~(abs >>> 0) >>> 0;
    high = ~((abs / 4294967296) >>> 0) >>> 0;
    low = (low + 1) >>> 0;
    if (low === 0) high = (high + 1) >>> 0;
  }
  while (high > 0 || low > 127) {
    buf[pos++] = (low & 127) | 128;
    low = ((low >>> 7) | (high << 25)) >>> 0;
    high >>>= 7;
  }
  buf[pos++] = low & 127;
}

export function tag(field: number, wire: number): void {
  ensure(5);
  u32((field << 3) | wire);
}

/** Reserves `reserved` bytes for a length; {@link end} writes it and moves the content if it needs fewer or more. */
export function begin(reserved: number): number {
  ensure(reserved);
  const at = pos;
  pos += reserved;
  return at;
}
export function end(at: number, reserved: number): void {
  const len = pos - at - reserved;
  const size = varintSize(len);
  if (size !== reserved) {
    ensure(size - reserved);
    buf.copyWithin(at + size, at + reserved, pos);
    pos += size - reserved;
  }
  const save = pos;
  pos = at;
  u32(len);
  pos = save;
}

export function str(s: string): void {
  const n = s.length;
  ensure(5 + n);
  const at = pos;
  // ASCII (every key and nearly every value here): length known up front, one byte per char.
  u32(n);
  const start = pos;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 127) {
      pos = at;
      return strUtf8(s);
    }
    buf[start + i] = c;
  }
  pos = start + n;
}

/** UTF-8 as TextEncoder writes it (a lone surrogate becomes U+FFFD), without allocating. Route names have "→". */
function strUtf8(s: string): void {
  const n = s.length;
  let len = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) len += 1;
    else if (c < 0x800) len += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < n && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      len += 4;
      i++;
    } else len += 3;
  }
  ensure(5 + len);
  u32(len);
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) buf[pos++] = c;
    else if (c < 0x800) {
      buf[pos++] = 0xc0 | (c >> 6);
      buf[pos++] = 0x80 | (c & 63);
    } else {
      if (c >= 0xd800 && c < 0xe000) {
        const next = i + 1 < n ? s.charCodeAt(i + 1) : 0;
        if (c < 0xdc00 && (next & 0xfc00) === 0xdc00) {
          c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          i++;
          buf[pos++] = 0xf0 | (c >> 18);
          buf[pos++] = 0x80 | ((c >> 12) & 63);
          buf[pos++] = 0x80 | ((c >> 6) & 63);
          buf[pos++] = 0x80 | (c & 63);
          continue;
        }
        c = 0xfffd;
      }
      buf[pos++] = 0xe0 | (c >> 12);
      buf[pos++] = 0x80 | ((c >> 6) & 63);
      buf[pos++] = 0x80 | (c & 63);
    }
  }
}

export function bytes(b: Uint8Array): void {
  ensure(5 + b.length);
  u32(b.length);
  buf.set(b, pos);
  pos += b.length;
}

function nibble(c: number): number {
  return c < 58 ? c - 48 : c < 71 ? c - 55 : c - 87;
}
/** A hex id as a length-delimited bytes field, decoded in place. */
export function hexId(h: string): void {
  const n = h.length >> 1;
  ensure(1 + n);
  buf[pos++] = n;
  for (let i = 0; i < n; i++) buf[pos++] = (nibble(h.charCodeAt(2 * i)) << 4) | nibble(h.charCodeAt(2 * i + 1));
}

/** An id from its 32-bit words (big-endian, as its hex reads) as a length-delimited bytes field. */
export function idWords(n: number, a: number, b: number, c: number, d: number): void {
  ensure(1 + 4 * n);
  buf[pos++] = 4 * n;
  view.setUint32(pos, a);
  view.setUint32(pos + 4, b);
  if (n === 4) {
    view.setUint32(pos + 8, c);
    view.setUint32(pos + 12, d);
  }
  pos += 4 * n;
}

export function fixed32(v: number): void {
  ensure(4);
  view.setUint32(pos, v >>> 0, true);
  pos += 4;
}

/** [seconds, nanoseconds] as fixed64 nanoseconds, with the library's arithmetic (exact above 2^53). */
export function hrTime(t: HrTime): void {
  fixed64Nanos(t[0], t[1]);
}
// x mod 2^32 for an integer 0 ≤ x < 2^53, in doubles. `x >>> 0` gives the same number, but as a
// uint32 it is a double half the time and an int the other half: JSC compiled it as an int and
// threw the code away again and again (OSR exits "Overflow" in the export path).
const mod32 = (x: number) => x - Math.floor(x / 4294967296) * 4294967296;
function fixed64Nanos(seconds: number, nanos: number): void {
  const lo16 = seconds & 0xffff;
  const hiBits = Math.floor(seconds / 65536);
  const fromLo = lo16 * 1e9;
  const fromHi = hiBits * 1e9;
  const low32 = mod32(fromLo) + (fromHi - Math.floor(fromHi / 65536) * 65536) * 65536 + nanos;
  const low = mod32(low32);
  const high = mod32(Math.floor(fromLo / 4294967296) + Math.floor(fromHi / 65536) + Math.floor(low32 / 4294967296));
  ensure(8);
  view.setUint32(pos, low, true);
  view.setUint32(pos + 4, high, true);
  pos += 8;
}
/** Epoch milliseconds as fixed64 nanoseconds: whole seconds and the nanoseconds within, as toHrTime() splits them (no array made). */
export function epochMs(ms: number): void {
  const s = Math.floor(ms / 1000);
  const ns = Math.round((ms - s * 1000) * 1e6);
  if (ns >= 1e9) fixed64Nanos(s + 1, ns - 1e9);
  else fixed64Nanos(s, ns < 0 ? 0 : ns);
}

/** One byte; the caller has ensured room. */
export function byte(v: number): void {
  buf[pos++] = v;
}

/** A double (wire type 1). */
export function double(n: number): void {
  ensure(8);
  view.setFloat64(pos, n, true);
  pos += 8;
}

/** Bytes as they are (a field already encoded). */
export function raw(b: Uint8Array): void {
  ensure(b.length);
  buf.set(b, pos);
  pos += b.length;
}

function utf8Length(s: string): number {
  let len = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) len += 1;
    else if (c < 0x800) len += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      len += 4;
      i++;
    } else len += 3;
  }
  return len;
}
/** Size of a string field (tag, length, UTF-8), or 0 for none. */
export function strFieldSize(s: string | undefined): number {
  if (!s) return 0;
  const n = utf8Length(s);
  return 1 + varintSize(n) + n;
}

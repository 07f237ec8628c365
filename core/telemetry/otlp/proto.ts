// OTLP/protobuf encoding of finished spans (ExportTraceServiceRequest), written straight from
// ReadableSpan into reusable buffers. Measured against @opentelemetry/otlp-transformer's
// ProtobufTraceSerializer on the proxy's spans: it sizes every message in a first pass, then
// writes in a second, allocates each id as a Uint8Array and shifts every message longer than
// 127 bytes; this makes one pass, writes ids and strings in place, encodes the resource and
// scope once, and is several times cheaper per span (bench/telemetry-micro.ts). The output is
// byte-for-byte the library's (tests/otlp.test.ts checks it), and the library still decodes
// the collector's response. The batch processor (core/telemetry/otlp/batch.ts) encodes each span as it ends
// (EncodedSpans) and wraps a batch at export (encodeSpansRequest).
import type { Attributes, HrTime, Link, SpanContext } from "@opentelemetry/api";
import type { ReadableSpan, TimedEvent } from "@opentelemetry/sdk-trace";
import type { Resource } from "@opentelemetry/resources";
import { RecordedSpan } from "./spans.ts";

type Scope = ReadableSpan["instrumentationScope"];

// Span.flags (fixed32): the W3C trace flags, plus "has is_remote" and "is_remote" bits.
const FLAGS_HAS_IS_REMOTE = 0x100;
const FLAGS_IS_REMOTE = 0x200;

const MIN_INT64 = -(2 ** 63);
const MAX_INT64 = 2 ** 63;

// The scratch buffer: resource and scope fields are encoded here (once each); spans and requests
// are written into their own buffers (EncodedSpans, encodeSpansRequest) by pointing `buf` at them.
let buf = new Uint8Array(4 * 1024);
let view = new DataView(buf.buffer);
let pos = 0;

function ensure(n: number): void {
  if (pos + n <= buf.length) return;
  let size = buf.length * 2;
  while (size < pos + n) size *= 2;
  const next = new Uint8Array(size);
  next.set(buf.subarray(0, pos));
  buf = next;
  view = new DataView(buf.buffer);
}

function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/** Unsigned 32-bit varint; the caller has ensured room. */
function u32(v: number): void {
  while (v > 127) {
    buf[pos++] = (v & 127) | 128;
    v >>>= 7;
  }
  buf[pos++] = v;
}

/** int64 varint of any safe integer (negative: ten bytes, two's complement), as the library writes it. */
function int64(value: number): void {
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

function tag(field: number, wire: number): void {
  ensure(5);
  u32((field << 3) | wire);
}

/** Reserves `reserved` bytes for a length; {@link end} writes it and moves the content if it needs fewer or more. */
function begin(reserved: number): number {
  ensure(reserved);
  const at = pos;
  pos += reserved;
  return at;
}
function end(at: number, reserved: number): void {
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

function str(s: string): void {
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

function bytes(b: Uint8Array): void {
  ensure(5 + b.length);
  u32(b.length);
  buf.set(b, pos);
  pos += b.length;
}

function nibble(c: number): number {
  return c < 58 ? c - 48 : c < 71 ? c - 55 : c - 87;
}
/** A hex id as a length-delimited bytes field, decoded in place. */
function hexId(h: string): void {
  const n = h.length >> 1;
  ensure(1 + n);
  buf[pos++] = n;
  for (let i = 0; i < n; i++) buf[pos++] = (nibble(h.charCodeAt(2 * i)) << 4) | nibble(h.charCodeAt(2 * i + 1));
}

/** An id from its 32-bit words (big-endian, as its hex reads) as a length-delimited bytes field. */
function idWords(n: number, a: number, b: number, c: number, d: number): void {
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

function fixed32(v: number): void {
  ensure(4);
  view.setUint32(pos, v >>> 0, true);
  pos += 4;
}

/** [seconds, nanoseconds] as fixed64 nanoseconds, with the library's arithmetic (exact above 2^53). */
function hrTime(t: HrTime): void {
  fixed64Nanos(t[0], t[1]);
}
function fixed64Nanos(seconds: number, nanos: number): void {
  const lo16 = seconds & 0xffff;
  const hiBits = (seconds / 65536) >>> 0;
  const fromLo = lo16 * 1e9;
  const fromHi = hiBits * 1e9;
  const low32 = (fromLo >>> 0) + (((fromHi & 0xffff) * 65536) >>> 0) + nanos;
  const low = low32 >>> 0;
  const high = (Math.floor(fromLo / 4294967296) + ((fromHi / 65536) >>> 0) + Math.floor(low32 / 4294967296)) >>> 0;
  ensure(8);
  view.setUint32(pos, low, true);
  view.setUint32(pos + 4, high, true);
  pos += 8;
}
/** Epoch milliseconds as fixed64 nanoseconds: whole seconds and the nanoseconds within, as toHrTime() splits them (no array made). */
function epochMs(ms: number): void {
  const s = Math.floor(ms / 1000);
  const ns = Math.round((ms - s * 1000) * 1e6);
  if (ns >= 1e9) fixed64Nanos(s + 1, ns - 1e9);
  else fixed64Nanos(s, ns < 0 ? 0 : ns);
}

function anyValue(value: unknown): void {
  const t = typeof value;
  if (t === "string") {
    tag(1, 2);
    str(value as string);
  } else if (t === "boolean") {
    tag(2, 0);
    buf[pos++] = value ? 1 : 0;
  } else if (t === "number") {
    const n = value as number;
    if (Number.isInteger(n) && n >= MIN_INT64 && n < MAX_INT64) {
      tag(3, 0);
      int64(n);
    } else {
      tag(4, 1);
      ensure(8);
      view.setFloat64(pos, n, true);
      pos += 8;
    }
  } else if (value instanceof Uint8Array) {
    tag(7, 2);
    bytes(value);
  } else if (Array.isArray(value)) {
    tag(5, 2);
    const at = begin(1);
    for (const item of value) {
      tag(1, 2);
      const v = begin(1);
      anyValue(item);
      end(v, 1);
    }
    end(at, 1);
  } else if (t === "object" && value !== null) {
    tag(6, 2);
    const at = begin(1);
    const obj = value as Record<string, unknown>;
    for (const k in obj) {
      if (!Object.prototype.hasOwnProperty.call(obj, k)) continue;
      tag(1, 2);
      const kv = begin(1);
      keyValue(k, obj[k]);
      end(kv, 1);
    }
    end(at, 1);
  }
  // null/undefined: an empty AnyValue, as the library writes it.
}

function keyValue(key: string, value: unknown): void {
  tag(1, 2);
  str(key);
  tag(2, 2);
  const at = begin(1);
  anyValue(value);
  end(at, 1);
}

// A KeyValue's key field (tag, length, UTF-8) by key: the request path writes the same few dozen
// keys in every span. Bounded, as plugins may make keys up.
const KEY_FIELDS_MAX = 4096;
const keyFields = new Map<string, Uint8Array>();
function keyField(key: string): Uint8Array {
  let bytes = keyFields.get(key);
  if (bytes !== undefined) return bytes;
  const savedBuf = buf, savedView = view, savedPos = pos;
  buf = new Uint8Array(16 + 3 * key.length);
  view = new DataView(buf.buffer);
  pos = 0;
  try {
    tag(1, 2);
    str(key);
    bytes = buf.slice(0, pos);
  } finally {
    buf = savedBuf;
    view = savedView;
    pos = savedPos;
  }
  if (keyFields.size >= KEY_FIELDS_MAX) keyFields.clear();
  keyFields.set(key, bytes);
  return bytes;
}

function attributes(attrs: Attributes, field: number): void {
  const t = (field << 3) | 2; // every field number here is below 16: a one-byte tag
  for (const k in attrs) {
    if (!Object.prototype.hasOwnProperty.call(attrs, k)) continue;
    const v = attrs[k];
    const key = keyField(k);
    const kl = key.length;
    // Fast paths for what the request path sets, short ASCII strings and small non-negative
    // integers: every length is known before writing, so no length is patched afterwards. The
    // two write their KeyValue head inline: as a shared helper it measured slower (bench/otlp-encode-micro.ts:
    // ~0.8-1.2 against 1.2-1.5 µs a span).
    if (typeof v === "string") {
      const n = v.length;
      const kvLen = kl + 4 + n;
      if (kvLen < 128) {
        ensure(2 + kvLen);
        // Locals rather than the module's variables in the byte loops.
        const b = buf;
        let p = pos;
        b[p++] = t;
        b[p++] = kvLen;
        for (let i = 0; i < kl; i++) b[p++] = key[i]!;
        b[p++] = 0x12; // KeyValue.value
        b[p++] = n + 2;
        b[p++] = 0x0a; // AnyValue.string_value
        b[p++] = n;
        let i = 0;
        for (; i < n; i++) {
          const c = v.charCodeAt(i);
          if (c > 127) break;
          b[p + i] = c;
        }
        if (i === n) {
          pos = p + n;
          continue;
        }
        // Not ASCII: the general path below.
      }
    } else if (typeof v === "number" && v >= 0 && v < 0x200000 && Number.isInteger(v)) {
      const vs = varintSize(v);
      const kvLen = kl + 3 + vs;
      if (kvLen < 128) {
        ensure(2 + kvLen);
        const b = buf;
        let p = pos;
        b[p++] = t;
        b[p++] = kvLen;
        for (let i = 0; i < kl; i++) b[p++] = key[i]!;
        b[p++] = 0x12;
        b[p++] = 1 + vs;
        b[p++] = 0x18; // AnyValue.int_value
        let x = v;
        while (x > 127) {
          b[p++] = (x & 127) | 128;
          x >>>= 7;
        }
        b[p++] = x;
        pos = p;
        continue;
      }
    }
    tag(field, 2);
    const at = begin(1);
    ensure(kl);
    buf.set(key, pos);
    pos += kl;
    tag(2, 2);
    const vat = begin(1);
    anyValue(v);
    end(vat, 1);
    end(at, 1);
  }
}

function flags(traceFlags: number, isRemote: boolean | undefined): number {
  return (traceFlags & 0xff) | FLAGS_HAS_IS_REMOTE | (isRemote ? FLAGS_IS_REMOTE : 0);
}

function event(e: TimedEvent): void {
  const at = begin(1);
  tag(1, 1);
  hrTime(e.time);
  tag(2, 2);
  str(e.name);
  if (e.attributes) attributes(e.attributes, 3);
  tag(4, 0);
  int64(e.droppedAttributesCount || 0);
  end(at, 1);
}

function link(l: Link): void {
  const at = begin(1);
  const c = l.context;
  tag(1, 2);
  hexId(c.traceId);
  tag(2, 2);
  hexId(c.spanId);
  const ts = c.traceState?.serialize();
  if (ts) {
    tag(3, 2);
    str(ts);
  }
  if (l.attributes) attributes(l.attributes, 4);
  tag(5, 0);
  int64(l.droppedAttributesCount || 0);
  tag(6, 5);
  fixed32(flags(c.traceFlags, c.isRemote));
  end(at, 1);
}

function span(s: ReadableSpan): void {
  // Spans are 128 bytes to 16 KiB long: a two-byte length needs no move.
  const at = begin(2);
  const ctx: SpanContext = s.spanContext();
  // Ours keep their ids as words too: no hex to parse (nor rope strings to flatten).
  const own = s instanceof RecordedSpan ? s : undefined;
  tag(1, 2);
  if (own !== undefined && own.t0 >= 0) idWords(4, own.t0, own.t1, own.t2, own.t3);
  else hexId(ctx.traceId);
  tag(2, 2);
  if (own !== undefined) idWords(2, own.s0, own.s1, 0, 0);
  else hexId(ctx.spanId);
  const ts = ctx.traceState?.serialize();
  if (ts) {
    tag(3, 2);
    str(ts);
  }
  const parent = s.parentSpanContext;
  if (parent?.spanId) {
    tag(4, 2);
    if (parent instanceof RecordedSpan) idWords(2, parent.s0, parent.s1, 0, 0);
    else hexId(parent.spanId);
  }
  tag(5, 2);
  str(s.name);
  const kind = s.kind == null ? 0 : s.kind + 1;
  if (kind !== 0) {
    tag(6, 0);
    u32(kind);
  }
  if (own !== undefined) {
    // Ours keeps epoch ms: skip building two HrTime arrays.
    tag(7, 1);
    epochMs(own.startMs);
    tag(8, 1);
    epochMs(own.endMs);
  } else {
    tag(7, 1);
    hrTime(s.startTime);
    tag(8, 1);
    hrTime(s.endTime);
  }
  if (s.attributes) attributes(s.attributes, 9);
  tag(10, 0);
  int64(s.droppedAttributesCount);
  for (const e of s.events) {
    tag(11, 2);
    event(e);
  }
  tag(12, 0);
  int64(s.droppedEventsCount);
  for (const l of s.links) {
    tag(13, 2);
    link(l);
  }
  tag(14, 0);
  int64(s.droppedLinksCount);
  tag(15, 2);
  const st = begin(1);
  if (s.status.message) {
    tag(2, 2);
    str(s.status.message);
  }
  tag(3, 0);
  u32(s.status.code);
  end(st, 1);
  tag(16, 5);
  fixed32(flags(ctx.traceFlags, parent?.isRemote));
  end(at, 2);
}

// Resource and scope messages are the same in every export: encoded once per object.
const resourceCache = new WeakMap<Resource, Uint8Array>();
const scopeCache = new WeakMap<Scope, Uint8Array>();


function resource(r: Resource): void {
  tag(1, 2);
  const at = begin(1);
  if (r.attributes) attributes(r.attributes, 1);
  tag(2, 0);
  u32(0);
  end(at, 1);
}

function scope(sc: Scope): void {
  tag(1, 2);
  const at = begin(1);
  tag(1, 2);
  str(sc.name);
  if (sc.version) {
    tag(2, 2);
    str(sc.version);
  }
  const extra = sc as { attributes?: Attributes; droppedAttributesCount?: number };
  if (extra.attributes) attributes(extra.attributes, 3);
  if (extra.droppedAttributesCount) {
    tag(4, 0);
    u32(extra.droppedAttributesCount);
  }
  end(at, 1);
}


// Group buffers are reused: a batch's grows to a few hundred KiB, and growing a fresh one for
// every batch showed as ~6% of a traced request's CPU in a profile (the growth copies).
const spareBuffers: Uint8Array<ArrayBuffer>[] = [];
const SPARE_BUFFERS_MAX = 8;

/** Spans of one resource and scope, each already written as a ScopeSpans `spans` field. */
class SpanGroup {
  bytes: Uint8Array<ArrayBuffer> = spareBuffers.pop() ?? new Uint8Array(64 * 1024);
  view = new DataView(this.bytes.buffer);
  length = 0;
  constructor(readonly resource: Resource, readonly scope: Scope) {}
}

/**
 * Finished spans encoded as they end, for a batch processor that holds bytes rather than span
 * objects until export: a queue of ReadableSpans keeps every span's attribute objects and strings
 * alive across young-generation collections (measured on Bun: the heap grew ~0.8 MB per eden
 * collection at 1.0 sampling), a few hundred bytes each here cost the collector nothing.
 * {@link encodeSpansRequest} wraps them into an ExportTraceServiceRequest.
 */
export class EncodedSpans {
  /** Spans held. */
  count = 0;
  readonly groups: SpanGroup[] = [];
  #last: SpanGroup | undefined;

  /** Encodes `s` and appends it; the span object is not kept. */
  add(s: ReadableSpan): void {
    let g = this.#last;
    let fresh = false;
    if (g === undefined || g.scope !== s.instrumentationScope || g.resource !== s.resource) {
      g = this.groups.find((x) => x.scope === s.instrumentationScope && x.resource === s.resource);
      if (g === undefined) {
        this.groups.push((g = new SpanGroup(s.resource, s.instrumentationScope)));
        fresh = true;
      }
      this.#last = g;
    }
    // The writers use the module's buffer: point it at the group's for this span.
    const savedBuf = buf, savedView = view, savedPos = pos;
    buf = g.bytes;
    view = g.view;
    pos = g.length;
    let ok = false;
    try {
      tag(2, 2);
      span(s);
      g.bytes = buf;
      g.view = view;
      g.length = pos;
      this.count++;
      ok = true;
    } finally {
      buf = savedBuf;
      view = savedView;
      pos = savedPos;
      // A span that could not be encoded leaves no empty group behind (it would be an empty ScopeSpans).
      if (!ok && fresh) {
        this.groups.pop();
        this.#last = undefined;
        if (spareBuffers.length < SPARE_BUFFERS_MAX) spareBuffers.push(g.bytes);
      }
    }
  }

  /** Gives the buffers back for the next batches; the spans are gone (call once encoded for export). */
  release(): void {
    for (const g of this.groups) {
      if (spareBuffers.length < SPARE_BUFFERS_MAX && g.bytes.length <= 4 * 1024 * 1024) spareBuffers.push(g.bytes);
      g.length = 0;
    }
    this.groups.length = 0;
    this.#last = undefined;
  }
}

/**
 * A resource's or scope's field bytes, encoded once per object; a resource still waiting for async
 * attributes may change, so only settled ones are cached (`cacheable`).
 */
function fieldBytes<K extends object>(cache: WeakMap<K, Uint8Array>, key: K, write: () => void, cacheable: boolean): Uint8Array {
  const hit = cache.get(key);
  if (hit) return hit;
  pos = 0;
  write();
  const out = buf.slice(0, pos);
  if (cacheable) cache.set(key, out);
  return out;
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
function strFieldSize(s: string | undefined): number {
  if (!s) return 0;
  const n = utf8Length(s);
  return 1 + varintSize(n) + n;
}

// Request buffers are reused as well: at 1.0 sampling a fresh ~200 KB array per export (~80 a
// second) cost 4-17% of a traced request's CPU, side by side against reusing them (wrk
// alternating / both processes loaded at once); large arrays likely count towards the garbage
// collector's budget, not measured. The transport gives a request back with releaseRequest()
// once the collector has taken it; one never given back is simply not reused.
const spareRequests: Uint8Array<ArrayBuffer>[] = [];
const ownRequests = new WeakSet<ArrayBuffer>();
const SPARE_REQUESTS_MAX = 4;

function requestBuffer(size: number): Uint8Array<ArrayBuffer> {
  for (let i = 0; i < spareRequests.length; i++) {
    if (spareRequests[i]!.length >= size) return spareRequests.splice(i, 1)[0]!;
  }
  let n = 64 * 1024;
  while (n < size) n *= 2;
  const b = new Uint8Array(n);
  ownRequests.add(b.buffer);
  return b;
}

/**
 * Gives back a request made by {@link encodeSpansRequest} for a later one to be written into: call
 * it once nothing reads the request any more (its send, retries included, has settled). Any
 * other array, or one already given back, is ignored.
 */
export function releaseRequest(data: Uint8Array): void {
  const ab = data.buffer as ArrayBuffer;
  if (!ownRequests.has(ab) || spareRequests.length >= SPARE_REQUESTS_MAX || ab.byteLength > 16 * 1024 * 1024) return;
  for (const b of spareRequests) if (b.buffer === ab) return;
  spareRequests.push(new Uint8Array(ab));
}

/**
 * The ExportTraceServiceRequest of an {@link EncodedSpans}: grouped by resource, then scope, in
 * first-seen order, byte for byte what the library writes for the same spans. Sizes are known up
 * front, so the spans are copied once, into a reused buffer (see {@link releaseRequest}).
 */
export function encodeSpansRequest(batch: EncodedSpans): Uint8Array {
  const resources: Resource[] = [];
  for (const g of batch.groups) if (!resources.includes(g.resource)) resources.push(g.resource);
  const plan = resources.map((res) => {
    const resBytes = fieldBytes(resourceCache, res, () => resource(res), !res.asyncAttributesPending);
    const scopes = batch.groups.filter((g) => g.resource === res).map((g) => {
      const scopeBytes = fieldBytes(scopeCache, g.scope, () => scope(g.scope), true);
      const len = scopeBytes.length + g.length + strFieldSize(g.scope.schemaUrl);
      return { g, scopeBytes, len };
    });
    let len = resBytes.length + strFieldSize(res.schemaUrl);
    for (const s of scopes) len += 1 + varintSize(s.len) + s.len;
    return { res, resBytes, scopes, len };
  });
  let total = 0;
  for (const r of plan) total += 1 + varintSize(r.len) + r.len;
  // A few bytes of slack: the writers ask for room for a whole varint before writing a shorter one.
  const out = requestBuffer(total + 16);
  const savedBuf = buf, savedView = view;
  buf = out;
  view = new DataView(out.buffer);
  pos = 0;
  try {
    for (const r of plan) {
      tag(1, 2);
      u32(r.len);
      out.set(r.resBytes, pos);
      pos += r.resBytes.length;
      for (const s of r.scopes) {
        tag(2, 2);
        u32(s.len);
        out.set(s.scopeBytes, pos);
        pos += s.scopeBytes.length;
        out.set(s.g.bytes.subarray(0, s.g.length), pos);
        pos += s.g.length;
        if (s.g.scope.schemaUrl) {
          tag(3, 2);
          str(s.g.scope.schemaUrl);
        }
      }
      if (r.res.schemaUrl) {
        tag(3, 2);
        str(r.res.schemaUrl);
      }
    }
    if (buf !== out || pos !== total) throw new Error(`OTLP request size: planned ${total} bytes, wrote ${pos}`);
  } finally {
    buf = savedBuf;
    view = savedView;
    pos = 0;
  }
  return out.subarray(0, total);
}

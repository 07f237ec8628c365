// The OTLP message encoders (AnyValue, KeyValue and attributes, Span with its events and links, Resource, InstrumentationScope), written through writer.ts; request.ts frames them into an export request.
import type { Attributes, Link, SpanContext } from "@opentelemetry/api";
import type { ReadableSpan, TimedEvent } from "@opentelemetry/sdk-trace";
import type { Resource } from "@opentelemetry/resources";
import { RecordedSpan } from "./spans.ts";
import {
  begin,
  buf,
  byte,
  bytes,
  double,
  end,
  ensure,
  epochMs,
  fixed32,
  hexId,
  hrTime,
  idWords,
  int64,
  pos,
  raw,
  setPos,
  setTarget,
  str,
  tag,
  u32,
  varintSize,
  view,
} from "./writer.ts";

export type Scope = ReadableSpan["instrumentationScope"];

// Span.flags (fixed32): the W3C trace flags, plus "has is_remote" and "is_remote" bits.
const FLAGS_HAS_IS_REMOTE = 0x100;
const FLAGS_IS_REMOTE = 0x200;

const MIN_INT64 = -(2 ** 63);
const MAX_INT64 = 2 ** 63;

function anyValue(value: unknown): void {
  const t = typeof value;
  if (t === "string") {
    tag(1, 2);
    str(value as string);
  } else if (t === "boolean") {
    tag(2, 0);
    byte(value ? 1 : 0);
  } else if (t === "number") {
    const n = value as number;
    if (Number.isInteger(n) && n >= MIN_INT64 && n < MAX_INT64) {
      tag(3, 0);
      int64(n);
    } else {
      tag(4, 1);
      double(n);
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
  const fresh = new Uint8Array(16 + 3 * key.length);
  setTarget(fresh, new DataView(fresh.buffer), 0);
  try {
    tag(1, 2);
    str(key);
    bytes = buf.slice(0, pos);
  } finally {
    setTarget(savedBuf, savedView, savedPos);
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
          setPos(p + n);
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
        setPos(p);
        continue;
      }
    }
    tag(field, 2);
    const at = begin(1);
    raw(key);
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

export function span(s: ReadableSpan): void {
  // Spans are 128 bytes to 16 KiB long: a two-byte length needs no move.
  const at = begin(2);
  const ctx: SpanContext = s.spanContext();
  // Ours keep their ids as words too: no hex to parse (nor rope strings to flatten).
  const own = s instanceof RecordedSpan ? s : undefined;
  tag(1, 2);
  if (own !== undefined && own.ownTrace) idWords(4, own.t0, own.t1, own.t2, own.t3);
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

export function resource(r: Resource): void {
  tag(1, 2);
  const at = begin(1);
  if (r.attributes) attributes(r.attributes, 1);
  tag(2, 0);
  u32(0);
  end(at, 1);
}

export function scope(sc: Scope): void {
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

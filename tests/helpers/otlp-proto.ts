// A minimal protobuf decoder for the subset of OTLP ExportTraceServiceRequest the tests read
// (opentelemetry/proto/collector/trace/v1). Unknown fields are skipped, as protobuf requires.

export type AttrValue = string | number | boolean | bigint | AttrValue[] | { [k: string]: AttrValue } | Uint8Array | null;

export interface DecodedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  traceState: string;
  name: string;
  kind: number;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: Record<string, AttrValue>;
  events: { name: string; timeUnixNano: bigint; attributes: Record<string, AttrValue> }[];
  status: { code: number; message: string };
}

export interface DecodedResourceSpans {
  resource: Record<string, AttrValue>;
  scopes: { name: string; version: string; spans: DecodedSpan[] }[];
}

class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array, readonly end = buf.length) {}

  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.end) throw new RangeError("protobuf: truncated varint");
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
  }
  uint(): number {
    return Number(this.varint());
  }
  fixed64(): bigint {
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).getBigUint64(0, true);
    this.pos += 8;
    return v;
  }
  double(): number {
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).getFloat64(0, true);
    this.pos += 8;
    return v;
  }
  bytes(): Uint8Array {
    const len = this.uint();
    if (this.pos + len > this.end) throw new RangeError("protobuf: truncated length-delimited field");
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
  string(): string {
    return new TextDecoder().decode(this.bytes());
  }
  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 2) {
      // Read the length first: `this.pos += this.uint()` reads pos before uint() moves it.
      const len = this.uint();
      this.pos += len;
    } else if (wireType === 5) this.pos += 4;
    else throw new RangeError(`protobuf: unsupported wire type ${wireType}`);
  }
  /** Iterates fields: calls fn(fieldNumber, wireType) which must consume the value or return false to skip. */
  fields(fn: (field: number, wire: number) => boolean | void): void {
    while (this.pos < this.end) {
      const tag = this.uint();
      const field = tag >>> 3;
      const wire = tag & 7;
      if (fn(field, wire) === false) this.skip(wire);
    }
  }
}

const sub = (r: Reader): Reader => {
  const b = r.bytes();
  return new Reader(b);
};

export const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

function anyValue(r: Reader): AttrValue {
  let v: AttrValue = null;
  r.fields((f, w) => {
    if (f === 1 && w === 2) v = r.string();
    else if (f === 2 && w === 0) v = r.varint() !== 0n;
    else if (f === 3 && w === 0) v = toSafeInt(BigInt.asIntN(64, r.varint()));
    else if (f === 4 && w === 1) v = r.double();
    else if (f === 5 && w === 2) {
      const arr: AttrValue[] = [];
      const a = sub(r);
      a.fields((af, aw) => (af === 1 && aw === 2 ? void arr.push(anyValue(sub(a))) : false));
      v = arr;
    } else if (f === 6 && w === 2) v = keyValues(sub(r), 1);
    else if (f === 7 && w === 2) v = r.bytes().slice();
    else return false;
  });
  return v;
}

function toSafeInt(n: bigint): number | bigint {
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

function keyValue(r: Reader, into: Record<string, AttrValue>): void {
  let key = "";
  let value: AttrValue = null;
  r.fields((f, w) => {
    if (f === 1 && w === 2) key = r.string();
    else if (f === 2 && w === 2) value = anyValue(sub(r));
    else return false;
  });
  into[key] = value;
}

/** Reads every KeyValue at `field` of the message in `r`. */
function keyValues(r: Reader, field: number): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  r.fields((f, w) => (f === field && w === 2 ? keyValue(sub(r), out) : false));
  return out;
}

function span(r: Reader): DecodedSpan {
  const s: DecodedSpan = {
    traceId: "",
    spanId: "",
    parentSpanId: "",
    traceState: "",
    name: "",
    kind: 0,
    startTimeUnixNano: 0n,
    endTimeUnixNano: 0n,
    attributes: {},
    events: [],
    status: { code: 0, message: "" },
  };
  r.fields((f, w) => {
    if (f === 1 && w === 2) s.traceId = hex(r.bytes());
    else if (f === 2 && w === 2) s.spanId = hex(r.bytes());
    else if (f === 3 && w === 2) s.traceState = r.string();
    else if (f === 4 && w === 2) s.parentSpanId = hex(r.bytes());
    else if (f === 5 && w === 2) s.name = r.string();
    else if (f === 6 && w === 0) s.kind = r.uint();
    else if (f === 7 && w === 1) s.startTimeUnixNano = r.fixed64();
    else if (f === 8 && w === 1) s.endTimeUnixNano = r.fixed64();
    else if (f === 9 && w === 2) keyValue(sub(r), s.attributes);
    else if (f === 11 && w === 2) s.events.push(event(sub(r)));
    else if (f === 15 && w === 2) s.status = status(sub(r));
    else return false;
  });
  return s;
}

function event(r: Reader): DecodedSpan["events"][number] {
  const e = { name: "", timeUnixNano: 0n, attributes: {} as Record<string, AttrValue> };
  r.fields((f, w) => {
    if (f === 1 && w === 1) e.timeUnixNano = r.fixed64();
    else if (f === 2 && w === 2) e.name = r.string();
    else if (f === 3 && w === 2) keyValue(sub(r), e.attributes);
    else return false;
  });
  return e;
}

function status(r: Reader): DecodedSpan["status"] {
  const st = { code: 0, message: "" };
  r.fields((f, w) => {
    if (f === 2 && w === 2) st.message = r.string();
    else if (f === 3 && w === 0) st.code = r.uint();
    else return false;
  });
  return st;
}

function scopeSpans(r: Reader): DecodedResourceSpans["scopes"][number] {
  const out = { name: "", version: "", spans: [] as DecodedSpan[] };
  r.fields((f, w) => {
    if (f === 1 && w === 2) {
      const sc = sub(r);
      sc.fields((sf, sw) => {
        if (sf === 1 && sw === 2) out.name = sc.string();
        else if (sf === 2 && sw === 2) out.version = sc.string();
        else return false;
      });
    } else if (f === 2 && w === 2) out.spans.push(span(sub(r)));
    else return false;
  });
  return out;
}

function resourceSpans(r: Reader): DecodedResourceSpans {
  const out: DecodedResourceSpans = { resource: {}, scopes: [] };
  r.fields((f, w) => {
    if (f === 1 && w === 2) out.resource = keyValues(sub(r), 1);
    else if (f === 2 && w === 2) out.scopes.push(scopeSpans(sub(r)));
    else return false;
  });
  return out;
}

/** Decodes an ExportTraceServiceRequest. */
export function decodeExportTraceServiceRequest(body: Uint8Array): DecodedResourceSpans[] {
  const r = new Reader(body);
  const out: DecodedResourceSpans[] = [];
  r.fields((f, w) => (f === 1 && w === 2 ? void out.push(resourceSpans(sub(r))) : false));
  return out;
}

// OTLP/protobuf ExportTraceServiceRequest framing: spans encoded as they end (EncodedSpans) are wrapped per batch, grouped by resource and scope, into reused buffers.
//
// The encoding of finished spans (this file, messages.ts, writer.ts), written straight from
// ReadableSpan into reusable buffers. Measured against @opentelemetry/otlp-transformer's
// ProtobufTraceSerializer on the proxy's spans: it sizes every message in a first pass, then
// writes in a second, allocates each id as a Uint8Array and shifts every message longer than
// 127 bytes; this makes one pass, writes ids and strings in place, encodes the resource and
// scope once, and is several times cheaper per span (bench/telemetry-micro.ts). The output is
// byte-for-byte the library's (tests/telemetry/otlp.test.ts checks it), and the library still decodes
// the collector's response. The batch processor (core/telemetry/otlp/batch.ts) encodes each span as it ends
// (EncodedSpans) and wraps a batch at export (encodeSpansRequest).
import type { ReadableSpan } from "@opentelemetry/sdk-trace";
import type { Resource } from "@opentelemetry/resources";
import { resource, scope, span, type Scope } from "./messages.ts";
import { buf, pos, setPos, setTarget, str, strFieldSize, tag, u32, varintSize, view } from "./writer.ts";

// Resource and scope messages are the same in every export: encoded once per object.
const resourceCache = new WeakMap<Resource, Uint8Array>();
const scopeCache = new WeakMap<Scope, Uint8Array>();

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
        this.groups.push(g = new SpanGroup(s.resource, s.instrumentationScope));
        fresh = true;
      }
      this.#last = g;
    }
    // The writers use the module's buffer: point it at the group's for this span.
    const savedBuf = buf, savedView = view, savedPos = pos;
    setTarget(g.bytes, g.view, g.length);
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
      setTarget(savedBuf, savedView, savedPos);
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
  setPos(0);
  write();
  const out = buf.slice(0, pos);
  if (cacheable) cache.set(key, out);
  return out;
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
  setTarget(out, new DataView(out.buffer), 0);
  try {
    for (const r of plan) {
      tag(1, 2);
      u32(r.len);
      out.set(r.resBytes, pos);
      setPos(pos + r.resBytes.length);
      for (const s of r.scopes) {
        tag(2, 2);
        u32(s.len);
        out.set(s.scopeBytes, pos);
        setPos(pos + s.scopeBytes.length);
        out.set(s.g.bytes.subarray(0, s.g.length), pos);
        setPos(pos + s.g.length);
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
    setTarget(savedBuf, savedView, 0);
  }
  return out.subarray(0, total);
}

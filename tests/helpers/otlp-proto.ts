// OTLP decoded with the official schema: the opentelemetry-proto .proto files vendored in
// tests/fixtures/opentelemetry-proto/, loaded by protobufjs. Fulcrum's encoder (core/telemetry/otlp/)
// is thus checked against the schema, not against a decoder written from the same assumptions.
// Protobuf bodies are decoded with the schema's types; OTLP/JSON bodies are checked key by key
// against it (an unknown field, or a value of the wrong JSON type, throws) before being read.
import { Root, Type, type Message } from "protobufjs";
import { join } from "node:path";

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

const PROTO_DIR = new URL("../fixtures/opentelemetry-proto/", import.meta.url).pathname;

const root = new Root();
// Imports in the .proto files are relative to the folder that holds `opentelemetry/`.
root.resolvePath = (_origin, target) => join(PROTO_DIR, target);
root.loadSync([
  "opentelemetry/proto/collector/trace/v1/trace_service.proto",
  "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
]);
root.resolveAll();

export const ExportTraceServiceRequest: Type = root.lookupType("opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest");
export const ExportMetricsServiceRequest: Type = root.lookupType(
  "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest",
);

export const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

// deno-lint-ignore no-explicit-any
type Any = any;

/** A protobufjs 64-bit value (a Long, or a number when small) as a bigint. */
const big = (v: Any, unsigned = false): bigint => {
  if (v === undefined || v === null) return 0n;
  if (typeof v === "number") return BigInt(v);
  const n = BigInt(v.toString());
  return unsigned ? BigInt.asUintN(64, n) : n;
};

function toSafeInt(n: bigint): number | bigint {
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

/** An AnyValue message: the one field of its `value` oneof that is set. */
function anyValue(v: Any): AttrValue {
  if (!v) return null;
  switch (v.value) {
    case "stringValue":
      return v.stringValue;
    case "boolValue":
      return v.boolValue;
    case "intValue":
      return toSafeInt(big(v.intValue));
    case "doubleValue":
      return v.doubleValue;
    case "arrayValue":
      return (v.arrayValue.values ?? []).map(anyValue);
    case "kvlistValue":
      return keyValues(v.kvlistValue.values);
    case "bytesValue":
      return new Uint8Array(v.bytesValue);
    default:
      return null;
  }
}

function keyValues(list: Any[] | undefined): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const kv of list ?? []) out[kv.key] = anyValue(kv.value);
  return out;
}

/** Decodes an ExportTraceServiceRequest with the official schema. */
export function decodeExportTraceServiceRequest(body: Uint8Array): DecodedResourceSpans[] {
  const req = ExportTraceServiceRequest.decode(body) as Message & Any;
  return (req.resourceSpans ?? []).map((rs: Any): DecodedResourceSpans => ({
    resource: keyValues(rs.resource?.attributes),
    scopes: (rs.scopeSpans ?? []).map((ss: Any) => ({
      name: ss.scope?.name ?? "",
      version: ss.scope?.version ?? "",
      spans: (ss.spans ?? []).map((s: Any): DecodedSpan => ({
        traceId: hex(s.traceId),
        spanId: hex(s.spanId),
        parentSpanId: hex(s.parentSpanId),
        traceState: s.traceState,
        name: s.name,
        kind: s.kind,
        startTimeUnixNano: big(s.startTimeUnixNano, true),
        endTimeUnixNano: big(s.endTimeUnixNano, true),
        attributes: keyValues(s.attributes),
        events: (s.events ?? []).map((e: Any) => ({
          name: e.name,
          timeUnixNano: big(e.timeUnixNano, true),
          attributes: keyValues(e.attributes),
        })),
        status: { code: s.status?.code ?? 0, message: s.status?.message ?? "" },
      })),
    })),
  }));
}

const INT64 = new Set(["int64", "uint64", "sint64", "fixed64", "sfixed64"]);
const INT32 = new Set(["int32", "uint32", "sint32", "fixed32", "sfixed32"]);

/**
 * Checks an OTLP/JSON object against the schema's `type`, as the OTLP/JSON encoding rules say:
 * field names in lowerCamelCase (no unknown keys), 64-bit integers as decimal strings or numbers,
 * enums as integers, trace and span ids as hex, other bytes as base64. Throws naming the path of
 * the first problem.
 */
export function checkOtlpJson(type: Type, value: unknown, path = type.name): void {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`${path}: expected an object`);
  for (const [key, v] of Object.entries(value)) {
    const field = type.fields[key];
    if (!field) throw new Error(`${path}.${key}: no such field in ${type.fullName}`);
    if (v === null) continue;
    const items = field.repeated ? v : [v];
    if (!Array.isArray(items)) throw new Error(`${path}.${key}: expected an array`);
    items.forEach((item, i) => {
      const at = field.repeated ? `${path}.${key}[${i}]` : `${path}.${key}`;
      const resolved = field.resolve().resolvedType;
      if (resolved instanceof Type) return checkOtlpJson(resolved, item, at);
      if (resolved) {
        if (!Number.isInteger(item)) throw new Error(`${at}: an enum must be an integer in OTLP/JSON, got ${JSON.stringify(item)}`);
        return;
      }
      const t = field.type;
      const ok = INT64.has(t)
        ? (typeof item === "string" && /^-?\d+$/.test(item)) || Number.isInteger(item)
        : INT32.has(t)
        ? Number.isInteger(item)
        : t === "double" || t === "float"
        ? typeof item === "number" || ["NaN", "Infinity", "-Infinity"].includes(item as string)
        : t === "bool"
        ? typeof item === "boolean"
        : t === "string"
        ? typeof item === "string"
        : t === "bytes"
        ? typeof item === "string"
        : false;
      if (!ok) throw new Error(`${at}: ${JSON.stringify(item)} is not a valid ${t}`);
    });
  }
}

/** An OTLP/JSON ExportMetricsServiceRequest, checked against the schema, then read through it. */
export function decodeMetricsJson(json: unknown): Any {
  checkOtlpJson(ExportMetricsServiceRequest, json);
  const message = ExportMetricsServiceRequest.fromObject(json as Record<string, unknown>);
  const problem = ExportMetricsServiceRequest.verify(message);
  if (problem) throw new Error(`ExportMetricsServiceRequest: ${problem}`);
  return ExportMetricsServiceRequest.toObject(message, { longs: String, enums: Number, defaults: false, oneofs: true });
}

/** A metrics export as the tests read it: metric name → its data points (value, attributes). */
export interface DecodedMetric {
  name: string;
  kind: "sum" | "gauge" | "histogram" | "exponentialHistogram" | "summary";
  monotonic: boolean;
  points: { attributes: Record<string, AttrValue>; value: number; count?: number; timeUnixNano: bigint }[];
}

/** Flattens an ExportMetricsServiceRequest (as decodeMetricsJson or the protobuf decoder returns it). */
export function flattenMetrics(req: Any): { resource: Record<string, AttrValue>; metrics: Map<string, DecodedMetric> } {
  const metrics = new Map<string, DecodedMetric>();
  let resource: Record<string, AttrValue> = {};
  for (const rm of req.resourceMetrics ?? []) {
    resource = keyValues(rm.resource?.attributes);
    for (const sm of rm.scopeMetrics ?? []) {
      for (const m of sm.metrics ?? []) {
        const kind = m.data as DecodedMetric["kind"];
        const data = m[kind] ?? {};
        metrics.set(m.name, {
          name: m.name,
          kind,
          monotonic: data.isMonotonic === true,
          points: (data.dataPoints ?? []).map((p: Any) => ({
            attributes: keyValues(p.attributes),
            value: p.value === "asInt" ? Number(p.asInt) : Number(p.asDouble ?? p.sum ?? 0),
            ...(p.count !== undefined ? { count: Number(p.count) } : {}),
            timeUnixNano: BigInt(p.timeUnixNano ?? 0),
          })),
        });
      }
    }
  }
  return { resource, metrics };
}

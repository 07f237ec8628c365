/**
 * The access log's other shapes (log.access_format, log.fields): nginx's `combined` and the
 * `common` log format, which GoAccess, Fail2ban and most log shippers read, and a JSON line with
 * the fields an operator chose. The default JSON line is log.ts's, written as bytes; these are
 * strings (a few hundred nanoseconds more a request).
 */
import type { AccessField } from "../config/schema.ts";

/** What one access-log line says about a request (the gateway's request record has these). */
export interface AccessEntry {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly route: string;
  readonly pool: string;
  readonly backend: string;
  readonly bytes: number;
  readonly attempts: number;
  readonly clientIp: string;
  readonly retryReason: string | undefined;
  readonly error: string | undefined;
  /** "https" on TLS listeners (written only then). */
  readonly scheme?: string;
  /** "2" for HTTP/2 (written as `protocol`); absent for HTTP/1.1. */
  readonly protocol?: string | undefined;
  /** A tunnel (WebSocket): written when it closes, as `upgrade`, `bytes_in` and `closed_by` (`bytes` are those sent to the client). */
  readonly tunnel?: { readonly upgrade: string; readonly bytesIn: number; readonly closedBy: string } | undefined;
  /** The path and query sent to the backend when a middleware rewrote it (`upstream_path`). */
  readonly upstreamPath?: string | undefined;
  /** The request's id (`request_id`), when a middleware set one. */
  readonly requestId?: string | undefined;
  /** Path and query as sent, when the format reads it ({@link AccessLog.needs}). */
  readonly target?: string;
  /** Request headers, when the format reads them ({@link AccessLog.needs}). */
  readonly referer?: string | null;
  readonly userAgent?: string | null;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const two = (n: number) => (n < 10 ? `0${n}` : String(n));

let localSecond = Number.NaN;
let localText = "";
/** nginx's `$time_local`: `06/Dec/2026:03:50:45 +0000`, in the process's time zone (TZ). */
export function timeLocal(now: number): string {
  const second = Math.floor(now / 1000);
  if (second === localSecond) return localText;
  const d = new Date(second * 1000);
  const off = -d.getTimezoneOffset();
  const a = Math.abs(off);
  localSecond = second;
  localText = `${two(d.getDate())}/${MONTHS[d.getMonth()]}/${d.getFullYear()}:${two(d.getHours())}:${two(d.getMinutes())}:${
    two(d.getSeconds())
  } ${off < 0 ? "-" : "+"}${two(Math.floor(a / 60))}${two(a % 60)}`;
  return localText;
}

const utf8 = new TextEncoder();
const HEX = "0123456789ABCDEF";
/** As nginx escapes variables in a log line: `"`, `\`, control characters and non-ASCII bytes as `\xXX`. */
export function escapeNginx(s: string): string {
  let plain = true;
  for (let i = 0; i < s.length && plain; i++) {
    const c = s.charCodeAt(i);
    plain = c >= 0x20 && c <= 0x7e && c !== 34 && c !== 92;
  }
  if (plain) return s;
  let out = "";
  for (const b of utf8.encode(s)) {
    out += b < 0x20 || b > 0x7e || b === 34 || b === 92 ? `\\x${HEX[b >> 4]}${HEX[b & 15]}` : String.fromCharCode(b);
  }
  return out;
}

/** `HTTP/1.1`, `HTTP/1.0`, `HTTP/2.0` as nginx writes `$server_protocol`. */
function protocol(p: string | undefined): string {
  return p === undefined ? "HTTP/1.1" : p === "2" ? "HTTP/2.0" : `HTTP/${p}`;
}

/**
 * One line in nginx's `combined` format,
 * `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`,
 * or the common log format (`combined` false: without the last two).
 */
export function clfLine(e: AccessEntry, combined: boolean, now: number): string {
  const target = e.target || e.path;
  let line = `${escapeNginx(e.clientIp || "-")} - - [${timeLocal(now)}] "${escapeNginx(e.method)} ${escapeNginx(target)} ${
    protocol(e.protocol)
  }" ${e.status} ${e.bytes}`;
  if (combined) line += ` "${e.referer ? escapeNginx(e.referer) : "-"}" "${e.userAgent ? escapeNginx(e.userAgent) : "-"}"`;
  return `${line}\n`;
}

const J = JSON.stringify;
type Ids = { trace_id: string; span_id: string } | undefined;

/**
 * A request's trace ids when it has none (not sampled) but tracing or metrics observe it: an
 * object like real ids rather than undefined, so the code that writes the line sees one type.
 * With undefined for 99 requests of 100, JSC compiled the access log's `write` for it and left
 * that code at every sampled request (its OSR-exit log, bench/osr-exits.ts).
 */
export const NO_IDS: { readonly trace_id: string; readonly span_id: string } = Object.freeze({ trace_id: "", span_id: "" });
/** Each field's `"name":value` fragment, or undefined when the request has none (the field is left out). */
const FIELD: Record<AccessField, (e: AccessEntry, ms: number, ids: Ids, worker: number | undefined, now: number) => string | undefined> = {
  "@timestamp": (_e, _ms, _ids, _w, now) => `"@timestamp":"${new Date(now).toISOString()}"`,
  level: () => `"level":"INFO"`,
  message: () => `"message":"access"`,
  logger: () => `"logger":"fulcrum.access"`,
  method: (e) => `"method":${J(e.method)}`,
  path: (e) => `"path":${J(e.path)}`,
  status: (e) => `"status":${e.status}`,
  route: (e) => `"route":${J(e.route)}`,
  pool: (e) => `"pool":${J(e.pool)}`,
  backend: (e) => `"backend":${J(e.backend)}`,
  duration_ms: (_e, ms) => `"duration_ms":${Math.round(ms * 1000) / 1000}`,
  bytes: (e) => `"bytes":${e.bytes}`,
  attempts: (e) => `"attempts":${e.attempts}`,
  client_ip: (e) => `"client_ip":${J(e.clientIp)}`,
  scheme: (e) => (e.scheme === "https" ? `"scheme":"https"` : undefined),
  retry_reason: (e) => (e.retryReason ? `"retry_reason":${J(e.retryReason)}` : undefined),
  error: (e) => (e.error ? `"error":${J(e.error)}` : undefined),
  protocol: (e) => (e.protocol !== undefined ? `"protocol":${J(e.protocol)}` : undefined),
  upgrade: (e) => (e.tunnel ? `"upgrade":${J(e.tunnel.upgrade)}` : undefined),
  bytes_in: (e) => (e.tunnel ? `"bytes_in":${e.tunnel.bytesIn}` : undefined),
  closed_by: (e) => (e.tunnel ? `"closed_by":${J(e.tunnel.closedBy)}` : undefined),
  upstream_path: (e) => (e.upstreamPath !== undefined ? `"upstream_path":${J(e.upstreamPath)}` : undefined),
  request_id: (e) => (e.requestId !== undefined ? `"request_id":${J(e.requestId)}` : undefined),
  trace_id: (_e, _ms, ids) => (ids ? `"trace_id":"${ids.trace_id}"` : undefined),
  span_id: (_e, _ms, ids) => (ids ? `"span_id":"${ids.span_id}"` : undefined),
  worker: (_e, _ms, _ids, w) => (w !== undefined ? `"worker":${w}` : undefined),
  target: (e) => `"target":${J(e.target || e.path)}`,
  referer: (e) => (e.referer ? `"referer":${J(e.referer)}` : undefined),
  user_agent: (e) => (e.userAgent ? `"user_agent":${J(e.userAgent)}` : undefined),
};

/** A JSON access line with the chosen fields, in the order given. */
export function fieldsLine(
  fields: readonly AccessField[],
  e: AccessEntry,
  durationMs: number,
  ids: Ids,
  worker: number | undefined,
  now: number,
): string {
  let line = "";
  for (const f of fields) {
    const part = FIELD[f](e, durationMs, ids, worker, now);
    if (part !== undefined) line += line === "" ? `{${part}` : `,${part}`;
  }
  return `${line === "" ? "{" : line}}\n`;
}

/** What a format reads of the request beyond the default line, so the gateway reads it only then. */
export function formatNeeds(format: "json" | "combined" | "common", fields: readonly AccessField[] | undefined) {
  if (format === "combined") return { target: true, headers: true };
  if (format === "common") return { target: true, headers: false };
  return {
    target: fields?.includes("target") ?? false,
    headers: (fields?.includes("referer") || fields?.includes("user_agent")) ?? false,
  };
}

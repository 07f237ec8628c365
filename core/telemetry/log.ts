/**
 * Structured JSON-lines logging through LogTape. Operational records go to stdout; access-log
 * records (one a request) go to stdout too, or to `log.access_log_file`.
 */
import type { Logger } from "@logtape/logtape";
import type { ByteSource, Writer } from "../runtime/types.ts";
import { put as putBytes, putInt } from "../http1/bytes.ts";
import type { AccessField } from "../config/schema.ts";
import { type AccessEntry, clfLine, fieldsLine, formatNeeds, NO_IDS } from "./access-formats.ts";

export { type AccessEntry, NO_IDS } from "./access-formats.ts";

export type { Logger };

export interface LogConfig {
  level: "debug" | "info" | "warning" | "error";
  access_log: boolean;
  access_log_file?: string | undefined;
  /** @default "json" */
  access_format?: "json" | "combined" | "common";
  /** The JSON line's fields (access_format json); undefined: the default line. */
  fields?: readonly AccessField[] | undefined;
}

/** Whether the line has any of the fields {@link rareFields} writes. */
const hasRare = (e: AccessEntry) =>
  e.protocol !== undefined || e.tunnel !== undefined || e.upstreamPath !== undefined || e.requestId !== undefined;

const PROTOCOL_2 = `,"protocol":"2"`;
/** The fields only some lines have (HTTP/2, tunnels), as one JSON fragment; "" for a plain HTTP/1.1 request. */
function rareFields(e: AccessEntry): string {
  const t = e.tunnel;
  let protocol = e.protocol === undefined ? "" : e.protocol === "2" ? PROTOCOL_2 : `,"protocol":${J(e.protocol)}`;
  if (e.upstreamPath !== undefined) protocol += `,"upstream_path":${J(e.upstreamPath)}`;
  if (e.requestId !== undefined) protocol += `,"request_id":${J(e.requestId)}`;
  if (t === undefined) return protocol;
  return `${protocol},"upgrade":${J(t.upgrade)},"bytes_in":${t.bytesIn},"closed_by":${J(t.closedBy)}`;
}

/** The access log: one line a request. */
export interface AccessLog {
  write(entry: AccessEntry, durationMs: number, ids: { trace_id: string; span_id: string } | undefined): void;
  /** What the format reads beyond the default JSON line: the target as sent, the Referer and User-Agent. */
  readonly needs?: { readonly target: boolean; readonly headers: boolean };
}

export interface Logging {
  /** Operational logger, category `fulcrum`. */
  logger: Logger;
  /** The access log, or undefined when it is off (so the hot path skips it). */
  access: AccessLog | undefined;
  /** Reopen `log.access_log_file` (after logrotate moved it): lines from now on go to a file at that path. */
  reopen?(): void;
  /**
   * A reload's `log` settings, prepared without touching the running ones: the access log the new
   * gateway writes to (the running one when its settings did not change; a new file opened when
   * its path did). `commit` makes them the running ones (the level at once; the old file closes
   * once the old gateway's requests are done); `abort` closes what was opened.
   */
  stage?(next: LogConfig): StagedLog;
  close(): Promise<void>;
}

export interface StagedLog {
  readonly access: AccessLog | undefined;
  commit(drained: Promise<void>): void;
  abort(): void;
}

let lastMs = Number.NaN;
let lastIso = "";
const J = JSON.stringify;

/**
 * One access line: the same JSON-lines shape as LogTape's records (`@timestamp`, `level`,
 * `message`, `logger`, then the fields), built as one string. Access lines do not go through
 * LogTape's dispatch: at one a request its record, property snapshot and formatter cost ~4 µs
 * against ~1 µs for this (bench/hotpath-micro.ts). Operational records still do.
 */
export function accessLine(
  e: AccessEntry,
  durationMs: number,
  ids: { trace_id: string; span_id: string } | undefined,
  worker?: number,
  now = Date.now(),
): string {
  if (now !== lastMs) {
    lastMs = now;
    lastIso = new Date(now).toISOString();
  }
  let line =
    `{"@timestamp":"${lastIso}","level":"INFO","message":"access","logger":"fulcrum.access","method":${J(e.method)},"path":${J(e.path)},` +
    `"status":${e.status},"route":${J(e.route)},"pool":${J(e.pool)},"backend":${J(e.backend)},"duration_ms":${
      Math.round(durationMs * 1000) / 1000
    },` +
    `"bytes":${e.bytes},"attempts":${e.attempts},"client_ip":${J(e.clientIp)}`;
  if (e.scheme === "https") line += `,"scheme":"https"`;
  if (e.retryReason) line += `,"retry_reason":${J(e.retryReason)}`;
  if (e.error) line += `,"error":${J(e.error)}`;
  if (hasRare(e)) line += rareFields(e);
  if (ids && ids !== NO_IDS) line += `,"trace_id":"${ids.trace_id}","span_id":"${ids.span_id}"`;
  if (worker !== undefined) line += `,"worker":${worker}`;
  return `${line}}\n`;
}

const utf8 = new TextEncoder();
const ascii = (s: string) => utf8.encode(s);
// The constant pieces of an access line, in order (see accessLine).
const K_TIMESTAMP = ascii('{"@timestamp":"');
const K_METHOD = ascii('","level":"INFO","message":"access","logger":"fulcrum.access","method":');
const K_PATH = ascii(',"path":');
const K_STATUS = ascii(',"status":');
const K_ROUTE = ascii(',"route":');
const K_POOL = ascii(',"pool":');
const K_BACKEND = ascii(',"backend":');
const K_DURATION = ascii(',"duration_ms":');
const K_BYTES = ascii(',"bytes":');
const K_ATTEMPTS = ascii(',"attempts":');
const K_CLIENT_IP = ascii(',"client_ip":');
const K_HTTPS = ascii(',"scheme":"https"');
const K_RETRY = ascii(',"retry_reason":');
const K_ERROR = ascii(',"error":');
const K_TRACE = ascii(',"trace_id":"');
const K_SPAN = ascii('","span_id":"');
const K_WORKER = ascii(',"worker":');
const MIDDLE_FIXED = K_STATUS.length + K_ROUTE.length + K_POOL.length + K_BACKEND.length + K_DURATION.length + 32;
/** All constant pieces together, and room for five numbers and the timestamp. */
const FIXED_MAX = K_TIMESTAMP.length + K_METHOD.length + K_PATH.length + K_STATUS.length + K_ROUTE.length + K_POOL.length +
  K_BACKEND.length + K_DURATION.length + K_BYTES.length + K_ATTEMPTS.length + K_CLIENT_IP.length + K_HTTPS.length + K_RETRY.length +
  K_ERROR.length + K_TRACE.length + K_SPAN.length + K_WORKER.length + 6 * 32 + 2;

// The writers below take the buffer and the position and return the new position: locals in the
// caller, where module variables (`let`) cost a scope load and store at every byte.

/** A string as its UTF-8 bytes, unescaped (the ids, the rare fields). */
function raw(b: Uint8Array, q: number, s: string): number {
  const at = q;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7e) return at + utf8.encodeInto(s, b.subarray(at)).written;
    b[q++] = c;
  }
  return q;
}
/** A string as JSON.stringify writes it: printable ASCII is copied, anything else takes JSON.stringify's way. */
function jsonString(b: Uint8Array, q: number, s: string): number {
  const at = q;
  b[q++] = 34;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 34 || c === 92) return at + utf8.encodeInto(JSON.stringify(s), b.subarray(at)).written;
    b[q++] = c;
  }
  b[q++] = 34;
  return q;
}
/** Worst case of {@link jsonString}: "\uXXXX" for every UTF-16 unit, and the quotes. */
const jsonMax = (s: string) => 6 * s.length + 2;
/** Milliseconds rounded to microseconds, as String(Math.round(ms * 1000) / 1000) writes them. */
function millis(b: Uint8Array, q: number, ms: number): number {
  const k = Math.round(ms * 1000);
  if (!(k >= 0 && k < 1e15)) return raw(b, q, String(k / 1000));
  const whole = Math.floor(k / 1000);
  const frac = k - whole * 1000;
  q = putInt(b, q, whole);
  if (frac === 0) return q;
  b[q++] = 46; // "."
  b[q++] = 48 + Math.floor(frac / 100);
  const rest = frac % 100;
  if (rest === 0) return q;
  b[q++] = 48 + Math.floor(rest / 10);
  if (rest % 10 !== 0) b[q++] = 48 + (rest % 10);
  return q;
}

/** The line's bytes from `,"status":` to `,"duration_ms":`, for one status, route, pool and backend. */
class Middle {
  constructor(readonly status: number, readonly route: string, readonly pool: string, readonly bytes: Uint8Array) {}
}
// Route, pool and backend come from the config and the status is one of a few: the same middle
// is written on most lines (a route's name has a non-ASCII arrow, which jsonString() sends the slow
// way), so it is made once and copied. By backend, the few most recent; bounded, as a reload may
// bring new names.
const BACKENDS_MAX = 1024;
const PER_BACKEND = 8;
const middles = new Map<string, Middle[]>();
function middle(e: AccessEntry): Uint8Array {
  let list = middles.get(e.backend);
  if (list === undefined) {
    if (middles.size >= BACKENDS_MAX) middles.clear();
    middles.set(e.backend, list = []);
  }
  for (let i = 0; i < list.length; i++) {
    const m = list[i]!;
    if (m.status === e.status && m.route === e.route && m.pool === e.pool) return m.bytes;
  }
  const b = new Uint8Array(MIDDLE_FIXED + jsonMax(e.route) + jsonMax(e.pool) + jsonMax(e.backend));
  let q = putBytes(b, 0, K_STATUS);
  q = putInt(b, q, e.status);
  q = putBytes(b, q, K_ROUTE);
  q = jsonString(b, q, e.route);
  q = putBytes(b, q, K_POOL);
  q = jsonString(b, q, e.pool);
  q = putBytes(b, q, K_BACKEND);
  q = jsonString(b, q, e.backend);
  q = putBytes(b, q, K_DURATION);
  const m = new Middle(e.status, e.route, e.pool, b.slice(0, q));
  if (list.length >= PER_BACKEND) list.pop();
  list.unshift(m);
  return m.bytes;
}

/**
 * The line's start up to the method, `{"@timestamp":"…","level":…,"method":`, for the current
 * millisecond: remade from toISOString() when the second changes (or the clock is not a whole
 * millisecond), else only its three millisecond digits are rewritten.
 */
class Head {
  bytes = new Uint8Array(0);
  /** The millisecond the bytes say (NaN: none yet), and the start of its second. */
  ms = Number.NaN;
  second = Number.NaN;
  /** Where the millisecond digits are. */
  msAt = 0;

  at(now: number): Uint8Array {
    if (now === this.ms) return this.bytes;
    const second = Math.floor(now / 1000) * 1000;
    const ms = now - second;
    if (second === this.second && ms === Math.floor(ms)) {
      const b = this.bytes;
      const at = this.msAt;
      b[at] = 48 + Math.floor(ms / 100);
      b[at + 1] = 48 + (Math.floor(ms / 10) % 10);
      b[at + 2] = 48 + (ms % 10);
    } else {
      const iso = ascii(new Date(now).toISOString());
      const b = new Uint8Array(K_TIMESTAMP.length + iso.length + K_METHOD.length);
      b.set(K_TIMESTAMP, 0);
      b.set(iso, K_TIMESTAMP.length);
      b.set(K_METHOD, K_TIMESTAMP.length + iso.length);
      this.bytes = b;
      // "…:SS.mmmZ": the digits end one before the Z.
      this.msAt = K_TIMESTAMP.length + iso.length - 4;
      this.second = second;
    }
    this.ms = now;
    return this.bytes;
  }
}

/**
 * An access line written as bytes, the same bytes as {@link accessLine}'s string in UTF-8: one
 * object whose fields are set per request, so a line costs no string, closure or rope.
 */
class AccessLineSource implements ByteSource {
  e: AccessEntry | undefined;
  durationMs = 0;
  ids: { trace_id: string; span_id: string } | undefined;
  now = 0;
  readonly head = new Head();
  constructor(readonly worker: number | undefined) {}

  /** An upper bound of the line's bytes. */
  maxBytes(): number {
    const e = this.e!;
    let n = FIXED_MAX + jsonMax(e.method) + jsonMax(e.path) + jsonMax(e.route) + jsonMax(e.pool) + jsonMax(e.backend) + jsonMax(e.clientIp);
    if (e.retryReason) n += jsonMax(e.retryReason);
    if (e.error) n += jsonMax(e.error);
    if (hasRare(e)) n += 3 * rareFields(e).length;
    const ids = this.ids;
    if (ids !== NO_IDS && ids !== undefined) n += 3 * (ids.trace_id.length + ids.span_id.length);
    return n;
  }

  fill(b: Uint8Array, at: number): number {
    const e = this.e!;
    const head = this.head.at(this.now);
    // ~110 bytes: one native copy (a loop of byte stores was half the line's time).
    b.set(head, at);
    let q = at + head.length;
    q = jsonString(b, q, e.method);
    q = putBytes(b, q, K_PATH);
    q = jsonString(b, q, e.path);
    const mid = middle(e);
    b.set(mid, q);
    q += mid.length;
    q = millis(b, q, this.durationMs);
    q = putBytes(b, q, K_BYTES);
    q = putInt(b, q, e.bytes);
    q = putBytes(b, q, K_ATTEMPTS);
    q = putInt(b, q, e.attempts);
    q = putBytes(b, q, K_CLIENT_IP);
    q = jsonString(b, q, e.clientIp);
    if (e.scheme === "https") q = putBytes(b, q, K_HTTPS);
    if (e.retryReason) {
      q = putBytes(b, q, K_RETRY);
      q = jsonString(b, q, e.retryReason);
    }
    if (e.error) {
      q = putBytes(b, q, K_ERROR);
      q = jsonString(b, q, e.error);
    }
    if (hasRare(e)) q = raw(b, q, rareFields(e));
    const ids = this.ids;
    if (ids !== NO_IDS && ids !== undefined) {
      q = putBytes(b, q, K_TRACE);
      q = raw(b, q, ids.trace_id);
      q = putBytes(b, q, K_SPAN);
      q = raw(b, q, ids.span_id);
      b[q++] = 34;
    }
    if (this.worker !== undefined) {
      q = putBytes(b, q, K_WORKER);
      q = putInt(b, q, this.worker);
    }
    b[q++] = 125; // "}"
    b[q++] = 10;
    return q;
  }
}

/**
 * The access log over a writer. The default JSON line is encoded straight into the writer's
 * buffer; `format` combined or common, or chosen `fields`, are written as strings.
 */
export function accessLog(
  writer: Writer,
  worker?: number,
  clock: () => number = Date.now,
  format: Pick<LogConfig, "access_format" | "fields"> = {},
): AccessLog {
  const kind = format.access_format ?? "json";
  const fields = format.fields;
  const needs = formatNeeds(kind, fields);
  if (kind !== "json") {
    const combined = kind === "combined";
    return { needs, write: (e) => writer.write(clfLine(e, combined, clock())) };
  }
  if (fields !== undefined) {
    return { needs, write: (e, ms, ids) => writer.write(fieldsLine(fields, e, ms, ids === NO_IDS ? undefined : ids, worker, clock())) };
  }
  const source = new AccessLineSource(worker);
  return {
    write(e, durationMs, ids) {
      source.e = e;
      source.durationMs = durationMs;
      source.ids = ids;
      source.now = clock();
      writer.writeBytes(source.maxBytes(), source);
      source.e = undefined;
      source.ids = undefined;
    },
  };
}

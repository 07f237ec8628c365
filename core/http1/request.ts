/**
 * Strict HTTP/1.1 request parsing for the client-facing listener (RFC 9112): request line,
 * header section, and the body framing they imply. Runtime-agnostic, works on bytes.
 *
 * Strict on purpose, as the response parser is: a front that is lenient where the backend is
 * not can be made to see a different message boundary than the backend (request smuggling).
 * Every ambiguity (two lengths, length and chunked, unknown codings, obs-fold, bare CR/LF,
 * control bytes) is an error with the status the client should get.
 */
import type { Buffer } from "node:buffer";
import { connectionTokens, HOP_BY_HOP } from "./headers.ts";
import { decimal, endRun, ownCopy, runsSize, type HeaderBlock } from "./bytes.ts";
import { bytesAre, headerPairs, NameSet } from "./names.ts";

/** The largest request header section accepted (request line, headers, final CRLF). */
export const MAX_REQUEST_HEAD = 64 * 1024;
/** The longest request-target accepted (nginx's default large buffer is 8 KiB; Bun.serve allows ~64 KiB). */
export const MAX_TARGET = 16 * 1024;
/** Header lines accepted in one request. */
export const MAX_HEADERS = 200;

/** A request that cannot be served: `status` is the answer (400, 414, 431, 501, 505). */
export class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "RequestError";
  }
}

/**
 * A parsed request head. Header strings are made only when asked for (`rawHeaders`): what the
 * proxy forwards stays bytes in the buffer the head came in (`runs`, a HeaderBlock).
 */
export class RequestHead {
  #raw: string[] | undefined;
  constructor(
    readonly method: string,
    /** Origin-form path and query (`/p?q`), or `*` for `OPTIONS *`. */
    readonly target: string,
    /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
    readonly minor: number,
    /** The Host header, or the authority of an absolute-form target; "" when neither (HTTP/1.0). */
    readonly host: string,
    /** Content-Length, -1 when absent. */
    readonly contentLength: number,
    readonly chunked: boolean,
    /** The connection stays open after this exchange (HTTP/1.1 without `close`, or 1.0 with `keep-alive`). */
    readonly keepAlive: boolean,
    /** `Expect: 100-continue` was sent. */
    readonly expectContinue: boolean,
    /** The buffer, where the request line starts, and the index just after the head (its final CRLF). */
    public buf: Buffer,
    public from: number,
    public end: number,
    /**
     * The header lines to forward as they came (HeaderBlock): all but the hop-by-hop ones, Host,
     * Content-Length and X-Forwarded-For/-Proto/-Host, which the proxy writes itself (see
     * {@link forwardedFor}, {@link hostLine}). Undefined when Connection names other headers or
     * Cookie comes more than once: those need the strings (headers.ts).
     */
    readonly runs: number[] | undefined,
    readonly size: number,
    /** The Host the proxy forwards: the Host line's value, or an absolute-form target's authority, which replaces it (RFC 9112 §3.2.2); "" when neither. */
    readonly hostLine: string,
    /** The X-Forwarded-For values received, joined with ", " ("" when none). */
    readonly forwardedFor: string,
    /** A trace context header is among the lines (traceparent, tracestate, baggage, B3). */
    readonly traceContext: boolean,
  ) {}

  /**
   * name, value, name, value… with names lower-cased, in order. Host is {@link host}: an
   * absolute-form target's authority replaces the Host line (RFC 9112 §3.2.2) for everything
   * that reads the headers (upstream headers, middleware, strategies, tracing).
   */
  get rawHeaders(): string[] {
    if (this.#raw !== undefined) return this.#raw;
    const raw = headerPairs(this.buf, this.from, this.end);
    if (this.host !== "") {
      let found = false;
      for (let i = 0; i < raw.length; i += 2) {
        if (raw[i] === "host") {
          raw[i + 1] = this.host;
          found = true;
        }
      }
      if (!found) raw.push("host", this.host);
    }
    return (this.#raw = raw);
  }

  /**
   * The value of header `name` (lower-case), several lines joined with ", "; null when absent
   * (Host as in {@link rawHeaders}).
   * Read from the bytes when the strings were not made: tracing looks up a few names a request
   * (its propagators and, for sampled ones, User-Agent), which must not make them all.
   */
  header(name: string): string | null {
    if (name === "host" && this.host !== "") return this.host;
    const raw = this.#raw;
    if (raw !== undefined) {
      let value: string | null = null;
      for (let i = 0; i < raw.length; i += 2) if (raw[i] === name) value = value === null ? raw[i + 1]! : `${value}, ${raw[i + 1]}`;
      return value;
    }
    if (!this.traceContext && TRACE_HEADERS.has(name)) return null;
    const buf = this.buf;
    const last = this.end - 2;
    let i = this.from;
    while (buf[i] !== 10) i++; // past the request line (the head was checked: CRLF ends each line)
    i++;
    let value: string | null = null;
    while (i < last) {
      let colon = i;
      while (buf[colon] !== 58) colon++;
      let eol = colon;
      while (buf[eol] !== 13) eol++;
      if (colon - i === name.length && sameName(buf, i, name)) {
        let vs = colon + 1;
        let ve = eol;
        while (vs < ve && (buf[vs] === 32 || buf[vs] === 9)) vs++;
        while (ve > vs && (buf[ve - 1] === 32 || buf[ve - 1] === 9)) ve--;
        const v = buf.toString("latin1", vs, ve);
        value = value === null ? v : `${value}, ${v}`;
      }
      i = eol + 2;
    }
    return value;
  }

  /** HeaderBlock's flag, for responses only: a request's lines carry no Date the listener adds. */
  readonly hasDate = false;

  /** The lines to forward as bytes, or undefined (see `runs`). */
  get block(): HeaderBlock | undefined {
    return this.runs === undefined ? undefined : (this as HeaderBlock);
  }

  /**
   * Keep a copy of the head's own bytes, not the read it came in: a large read (a body or
   * pipelined requests behind the head) is not held for the whole exchange (as ResponseHead.detach).
   */
  detach(): void {
    this.buf = ownCopy(this.buf, this.from, this.end, this.runs);
    this.end -= this.from;
    this.from = 0;
  }
}

// tchar (RFC 9110 §5.6.2) by byte value.
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;
/** Scratch for one parse: per header line, name start, colon, value start and end (trimmed). */
let marks = new Int32Array(4 * 64);

const isCtl = (c: number) => (c < 32 && c !== 9) || c === 127;

/** The headers of the propagators tracing can use (W3C trace context and baggage, B3). */
const TRACE_NAMES = ["traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-parentspanid", "x-b3-flags"];
/** Names the head's reading looks for; the hop-by-hop ones after them are never forwarded. */
const NAMES = new NameSet([
  "host", "content-length", "transfer-encoding", "connection", "expect", "cookie", "x-forwarded-for",
  // Trace context headers (the propagators tracing may write): forwarded, but counted.
  ...TRACE_NAMES,
  "x-forwarded-proto", "x-forwarded-host",
  ...[...HOP_BY_HOP].filter((n) => n !== "connection" && n !== "transfer-encoding"),
]);
const HOST = 0, CONTENT_LENGTH = 1, TRANSFER_ENCODING = 2, CONNECTION = 3, EXPECT = 4, COOKIE = 5, X_FORWARDED_FOR = 6;
const TRACE_FIRST = 7, TRACE_LAST = TRACE_FIRST + TRACE_NAMES.length - 1;
const TRACE_HEADERS: ReadonlySet<string> = new Set(TRACE_NAMES);

/** Whether the header name at `buf[at]` (token bytes, as long as `lower`) is `lower` in any case. */
function sameName(buf: Buffer, at: number, lower: string): boolean {
  for (let j = 0; j < lower.length; j++) {
    let c = buf[at + j]!;
    if (c >= 65 && c <= 90) c |= 0x20;
    if (c !== lower.charCodeAt(j)) return false;
  }
  return true;
}

/** Methods read without a string made per request (and hashed once, for IDEMPOTENT.has). */
const METHODS = new NameSet(["get", "head", "post", "put", "delete", "options", "patch"]);
const METHOD_NAMES = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];

function isUpper(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (buf[i]! >= 97) return false;
  return true;
}

/** Whether `buf[start, end)` is `HTTP/1.` and a digit; the digit's value, else -1. */
function http1Minor(buf: Buffer, start: number, end: number): number {
  if (end - start !== 8 || buf[start] !== 72 || buf[start + 1] !== 84 || buf[start + 2] !== 84 || buf[start + 3] !== 80) return -1;
  if (buf[start + 4] !== 47 || buf[start + 5] !== 49 || buf[start + 6] !== 46) return -1;
  const d = buf[start + 7]! - 48;
  return d >= 0 && d <= 9 ? d : -1;
}

function more(from: number, n: number): undefined {
  if (n - from >= MAX_REQUEST_HEAD) throw new RequestError(431, `request head larger than ${MAX_REQUEST_HEAD} bytes`);
  return undefined;
}

/**
 * Parse the request head starting at `buf[from]`, or return undefined if it has not all
 * arrived. Throws {@link RequestError}. Empty lines before the request line are skipped
 * (RFC 9112 §2.2: a client may send a CRLF after a POST body).
 */
export function parseRequestHead(buf: Buffer, from: number): RequestHead | undefined {
  const n = buf.length;
  // The empty lines count toward the head's size limit: else a client sending only CRLFs would
  // be buffered without bound (nothing is ever parsed, so nothing is ever refused).
  const start = from;
  while (from + 1 < n && buf[from] === 13 && buf[from + 1] === 10) from += 2;
  const limit = Math.min(n, start + MAX_REQUEST_HEAD);
  let i = from;
  let c = 0;
  // Request line: method SP target SP version CRLF, checked byte by byte.
  for (; i < limit && (c = buf[i]!) !== 32; i++) {
    if (c >= 128 || TCHAR[c] === 0) {
      if (c === 13 || c === 10) throw new RequestError(400, "malformed request line");
      throw new RequestError(400, "invalid method");
    }
  }
  if (i >= limit) return more(start, n);
  const methodEnd = i;
  if (methodEnd === from) throw new RequestError(400, "malformed request line");
  const targetStart = ++i;
  for (; i < limit && (c = buf[i]!) !== 32; i++) {
    // Visible ASCII only: a raw space, control byte or non-ASCII byte does not belong in a URL;
    // nor does a fragment (`#`), which a backend may strip to see a path our routing did not.
    if (c <= 32 || c >= 127 || c === 35) throw new RequestError(400, c === 13 || c === 10 ? "malformed request line" : "invalid character in request target");
    if (i - targetStart >= MAX_TARGET) throw new RequestError(414, `request target longer than ${MAX_TARGET} bytes`);
  }
  if (i >= limit) return more(start, n);
  const targetEnd = i;
  if (targetEnd === targetStart) throw new RequestError(400, "malformed request line");
  const versionStart = ++i;
  for (; i < limit && (c = buf[i]!) !== 13; i++) {
    if (c === 10 || isCtl(c) || c === 32 || c >= 127) throw new RequestError(400, "malformed request line");
  }
  if (i + 1 >= limit) return more(start, n);
  if (buf[i + 1] !== 10) throw new RequestError(400, "bare CR in request head");
  const versionEnd = i;
  i += 2;

  let count = 0;
  let headEnd: number;
  for (;;) {
    if (i >= limit) return more(start, n);
    c = buf[i]!;
    if (c === 13) {
      if (i + 1 >= limit) return more(start, n);
      if (buf[i + 1] !== 10) throw new RequestError(400, "bare CR in request head");
      headEnd = i + 2;
      break;
    }
    if (c === 32 || c === 9) throw new RequestError(400, "obsolete line folding in request header");
    const nameStart = i;
    for (; i < limit && (c = buf[i]!) !== 58; i++) {
      if (c >= 128 || TCHAR[c] === 0) throw new RequestError(400, c === 13 || c === 10 ? "request header line without a colon" : "invalid request header name");
    }
    if (i >= limit) return more(start, n);
    if (i === nameStart) throw new RequestError(400, "empty request header name");
    const colon = i++;
    while (i < limit && ((c = buf[i]!) === 32 || c === 9)) i++;
    const valueStart = i;
    let valueEnd = i;
    for (; i < limit; i++) {
      c = buf[i]!;
      if (c === 13) break;
      if (isCtl(c)) throw new RequestError(400, c === 10 ? "bare LF in request head" : "control character in request header value");
        if (c !== 32 && c !== 9) valueEnd = i + 1;
    }
    if (i + 1 >= limit) return more(start, n);
    if (buf[i + 1] !== 10) throw new RequestError(400, "bare CR in request head");
    if (count >= MAX_HEADERS) throw new RequestError(431, `more than ${MAX_HEADERS} request headers`);
    if (count * 4 + 4 > marks.length) {
      const grown = new Int32Array(marks.length * 2);
      grown.set(marks);
      marks = grown;
    }
    marks[count * 4] = nameStart - from;
    marks[count * 4 + 1] = colon - from;
    marks[count * 4 + 2] = valueStart - from;
    marks[count * 4 + 3] = valueEnd - from;
    count++;
    i += 2;
  }

  // Strings only for the target (latin1, so its bytes are kept as they came), an unknown method,
  // and the few headers read here: the rest are strings only if asked for.
  // Methods are case-sensitive: a known one only in upper case (`| 0x20` in NameSet folds).
  const known = METHODS.indexOf(buf, from, methodEnd);
  const method = known >= 0 && isUpper(buf, from, methodEnd) ? METHOD_NAMES[known]! : buf.toString("latin1", from, methodEnd);
  let target = buf.toString("latin1", targetStart, targetEnd);
  const minor = http1Minor(buf, versionStart, versionEnd);
  if (minor !== 0 && minor !== 1) {
    const version = buf.toString("latin1", versionStart, versionEnd);
    if (/^HTTP\/\d(\.\d)?$/.test(version)) throw new RequestError(505, `HTTP version not supported: ${version}`);
    throw new RequestError(400, "malformed request line");
  }

  let contentLength = -1;
  let te: string | undefined;
  let connection = "";
  let host: string | undefined;
  let expect: string | undefined;
  let xff = "";
  let cookies = 0;
  let traceContext = false;
  // Runs of header lines to forward: a line ends where the next begins (the last before the empty line).
  const runs: number[] = [];
  let runStart = -1;
  for (let k = 0; k < count; k++) {
    const nameStart = from + marks[k * 4]!;
    const id = NAMES.indexOf(buf, nameStart, from + marks[k * 4 + 1]!);
    const vs = from + marks[k * 4 + 2]!, ve = from + marks[k * 4 + 3]!;
    if (id < 0 || id === COOKIE || id === EXPECT || (id >= TRACE_FIRST && id <= TRACE_LAST)) {
      if (id === COOKIE) cookies++;
      else if (id === EXPECT) expect = buf.toString("latin1", vs, ve);
      else if (id >= 0) traceContext = true;
      if (runStart < 0) runStart = nameStart;
      continue;
    }
    runStart = endRun(runs, runStart, nameStart);
    switch (id) {
      case HOST:
        if (host !== undefined) throw new RequestError(400, "more than one Host header");
        host = buf.toString("latin1", vs, ve);
        break;
      case CONTENT_LENGTH:
        // A second Content-Length, even an equal one, or a list is a framing ambiguity: refuse.
        if (contentLength !== -1) throw new RequestError(400, "more than one Content-Length");
        contentLength = decimal(buf, vs, ve);
        if (contentLength < 0) throw new RequestError(400, "invalid Content-Length");
        break;
      case TRANSFER_ENCODING: {
        const value = buf.toString("latin1", vs, ve);
        te = te === undefined ? value : `${te}, ${value}`;
        break;
      }
      case CONNECTION: {
        // What nearly every client sends, without a string.
        const value = bytesAre(buf, vs, ve, "keep-alive") ? "keep-alive" : bytesAre(buf, vs, ve, "close") ? "close" : buf.toString("latin1", vs, ve);
        connection = connection ? `${connection},${value}` : value;
        break;
      }
      case X_FORWARDED_FOR: {
        const value = buf.toString("latin1", vs, ve);
        xff = xff ? `${xff}, ${value}` : value;
        break;
      }
    }
  }
  endRun(runs, runStart, headEnd - 2);
  let chunked = false;
  if (te !== undefined) {
    // RFC 9112 §6.1: chunked must be the final coding, else the length is unknowable (400);
    // other codings we cannot decode (501). With a Content-Length too, refuse (§6.3 allows it).
    if (minor === 0) throw new RequestError(400, "Transfer-Encoding in an HTTP/1.0 request");
    const codings = te.toLowerCase().split(",").map((s) => s.trim());
    if (codings[codings.length - 1] !== "chunked") throw new RequestError(400, "Transfer-Encoding without chunked as the final coding");
    if (codings.length > 1) throw new RequestError(501, `unsupported Transfer-Encoding: ${te.slice(0, 40)}`);
    if (contentLength !== -1) throw new RequestError(400, "both Transfer-Encoding and Content-Length");
    chunked = true;
  }
  let hostLine = host ?? "";
  if (target.charCodeAt(0) !== 47) {
    if (target === "*") {
      if (method !== "OPTIONS") throw new RequestError(400, "asterisk-form target for a method other than OPTIONS");
    } else if (method === "CONNECT") {
      throw new RequestError(501, "CONNECT is not supported");
    } else {
      // Absolute form (RFC 9112 §3.2.2): its authority replaces the Host header.
      const m = /^https?:\/\/([^/?#]+)([^#]*)$/i.exec(target);
      if (m === null) throw new RequestError(400, "invalid request target");
      host = hostLine = m[1]!;
      target = m[2] === "" ? "/" : m[2]!.charCodeAt(0) === 47 ? m[2]! : `/${m[2]}`;
    }
  }
  if (target !== "*") target = normalizeTarget(target);
  if (host === undefined) {
    if (minor === 1) throw new RequestError(400, "missing Host header");
    host = "";
  } else if (!/^[\w.~!$&'()*+,;=:%[\]-]*$/.test(host)) {
    throw new RequestError(400, "invalid Host header");
  }
  let keepAlive = minor === 1;
  if (connection !== "") {
    for (const t of connection.split(",")) {
      const token = t.trim().toLowerCase();
      if (token === "close") keepAlive = false;
      else if (token === "keep-alive" && minor === 0) keepAlive = true;
    }
    // `close` wins over `keep-alive` when both are listed.
    if (/(^|,)\s*close\s*(,|$)/i.test(connection)) keepAlive = false;
  }
  let expectContinue = false;
  if (expect !== undefined) {
    if (expect.toLowerCase() !== "100-continue") throw new RequestError(417, "unsupported Expect");
    expectContinue = minor === 1;
  }
  // Headers named in Connection are dropped by name, and Cookie lines joined: from the strings.
  const forward = cookies <= 1 && connectionTokens(connection.toLowerCase()) === undefined ? runs : undefined;
  return new RequestHead(method, target, minor, host, contentLength, chunked, keepAlive, expectContinue, buf, from, headEnd, forward, runsSize(runs), hostLine, xff, traceContext);
}

const DOT = /^(?:\.|%2e)$/i;
const DOTDOT = /^(?:\.|%2e){2}$/i;

/**
 * The path with `.` and `..` segments resolved (RFC 3986 §5.2.4, and `%2e` as a dot as the WHATWG
 * URL parser does): routing and the backend must see the same path, or `/x/../admin` slips past
 * a route for `/admin`. A backslash in the path is refused, since some backends read it as `/`.
 */
export function normalizeTarget(target: string): string {
  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  if (path.includes("\\")) throw new RequestError(400, "backslash in request path");
  if (!path.includes("/.") && (path.indexOf("%") < 0 || !/%2e/i.test(path))) return target;
  const segments = path.split("/");
  const out: string[] = [];
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i]!;
    const last = i === segments.length - 1;
    if (DOT.test(seg)) {
      if (last) out.push("");
    } else if (DOTDOT.test(seg)) {
      out.pop();
      if (last) out.push("");
    } else out.push(seg);
  }
  const normal = `/${out.join("/")}`;
  return q < 0 ? normal : normal + target.slice(q);
}

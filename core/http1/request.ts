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
import { decimal, endRun, runsSize } from "./bytes.ts";
import { bytesAre, NameSet } from "./names.ts";
import { MAX_HEADERS, MAX_REQUEST_HEAD, MAX_TARGET, RequestError, RequestHead, TRACE_NAMES } from "./request-head.ts";

export { MAX_HEADERS, MAX_REQUEST_HEAD, MAX_TARGET, RequestError, RequestHead } from "./request-head.ts";
import { normalizeTarget } from "./target.ts";
export { normalizeTarget };

const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;
/** Scratch for one parse: per header line, name start, colon, value start and end (trimmed). */
let marks = new Int32Array(4 * 64);

const isCtl = (c: number) => (c < 32 && c !== 9) || c === 127;

/** Names the head's reading looks for; the hop-by-hop ones after them are never forwarded. */
const NAME_LIST = [
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "expect",
  "cookie",
  "x-forwarded-for",
  // Trace context headers (the propagators tracing may write): forwarded, but counted.
  ...TRACE_NAMES,
  "x-forwarded-proto",
  "x-forwarded-host",
  ...[...HOP_BY_HOP].filter((n) => n !== "connection" && n !== "transfer-encoding"),
];
const NAMES = new NameSet(NAME_LIST);
const HOST = 0, CONTENT_LENGTH = 1, TRANSFER_ENCODING = 2, CONNECTION = 3, EXPECT = 4, COOKIE = 5, X_FORWARDED_FOR = 6;
const TRACE_FIRST = 7, TRACE_LAST = TRACE_FIRST + TRACE_NAMES.length - 1;
const UPGRADE = NAME_LIST.indexOf("upgrade");

/**
 * Whether a tab follows a value (in the OWS before the line's CRLF; `next` is where the next line
 * starts). Trailing OWS is not part of a value, but llhttp refuses a tab after Content-Length's
 * digits and after a transfer coding: a parser in a chain that reads `chunked<TAB>` as another
 * coding, or `5<TAB>` as no length, frames the body otherwise. Checked for those two fields only.
 */
function tabAfter(buf: Buffer, ve: number, next: number): boolean {
  for (let j = ve; j < next - 2; j++) if (buf[j] === 9) return true;
  return false;
}

/** `s` without the SP and HTAB around it (OWS, RFC 9110 §5.6.3): not String.trim, which also removes NBSP (0xA0) and more. */
function trimOws(s: string): string {
  let a = 0, b = s.length;
  while (a < b && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
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

/** The Host value of the last request, reused when the next names the same one (nearly always); the last one found valid. */
let lastHost = "";
let validHost = "";

/**
 * `buf[vs, ve)` as a latin1 string: the last Host when the bytes are the same (compared byte for
 * byte, case kept). Making the string was the parser's costliest native call (~8% of the JS time at 100 B).
 */
function hostString(buf: Buffer, vs: number, ve: number): string {
  const last = lastHost;
  if (ve - vs === last.length) {
    let i = 0;
    while (i < last.length && buf[vs + i] === last.charCodeAt(i)) i++;
    if (i === last.length) return last;
  }
  return (lastHost = buf.toString("latin1", vs, ve));
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
    if (c <= 32 || c >= 127 || c === 35)
      throw new RequestError(400, c === 13 || c === 10 ? "malformed request line" : "invalid character in request target");
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
      if (c >= 128 || TCHAR[c] === 0)
        throw new RequestError(400, c === 13 || c === 10 ? "request header line without a colon" : "invalid request header name");
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
  let upgrade = false;
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
        host = hostString(buf, vs, ve);
        break;
      case CONTENT_LENGTH:
        // A second Content-Length, even an equal one, or a list is a framing ambiguity: refuse.
        if (contentLength !== -1) throw new RequestError(400, "more than one Content-Length");
        if (tabAfter(buf, ve, k + 1 < count ? from + marks[(k + 1) * 4]! : headEnd - 2)) {
          throw new RequestError(400, "tab after a Content-Length value");
        }
        contentLength = decimal(buf, vs, ve);
        if (contentLength < 0) throw new RequestError(400, "invalid Content-Length");
        break;
      case TRANSFER_ENCODING: {
        if (tabAfter(buf, ve, k + 1 < count ? from + marks[(k + 1) * 4]! : headEnd - 2)) {
          throw new RequestError(400, "tab after a Transfer-Encoding value");
        }
        const value = buf.toString("latin1", vs, ve);
        te = te === undefined ? value : `${te}, ${value}`;
        break;
      }
      case CONNECTION: {
        // What nearly every client sends, without a string.
        const value = bytesAre(buf, vs, ve, "keep-alive")
          ? "keep-alive"
          : bytesAre(buf, vs, ve, "close")
          ? "close"
          : buf.toString("latin1", vs, ve);
        connection = connection ? `${connection},${value}` : value;
        break;
      }
      case UPGRADE:
        if (ve > vs) upgrade = true;
        break;
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
    const codings = te.toLowerCase().split(",").map(trimOws);
    if (codings[codings.length - 1] !== "chunked") throw new RequestError(400, "Transfer-Encoding without chunked as the final coding");
    if (codings.length > 1) throw new RequestError(501, `unsupported Transfer-Encoding: ${te.slice(0, 40)}`);
    if (contentLength !== -1) throw new RequestError(400, "both Transfer-Encoding and Content-Length");
    chunked = true;
  }
  // RFC 9112 §3.2: an HTTP/1.1 request without a Host line is refused, an absolute-form one too.
  if (host === undefined && minor === 1) throw new RequestError(400, "missing Host header");
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
    host = "";
  } else if (host !== validHost) {
    if (!/^[\w.~!$&'()*+,;=:%[\]-]*$/.test(host)) throw new RequestError(400, "invalid Host header");
    validHost = host;
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
    // An upgrade Fulcrum does not make (Upgrade is hop-by-hop, the backend never sees it): what
    // follows on the connection is not HTTP to a front that tunnels it once it saw the request
    // (llhttp stops parsing there). Serving it as pipelined requests would be a way to smuggle.
    if (upgrade && /(^|,)[ \t]*upgrade[ \t]*(,|$)/i.test(connection)) keepAlive = false;
  }
  let expectContinue = false;
  if (expect !== undefined) {
    if (expect.toLowerCase() !== "100-continue") throw new RequestError(417, "unsupported Expect");
    expectContinue = minor === 1;
  }
  // Headers named in Connection are dropped by name, and Cookie lines joined: from the strings.
  const forward = cookies <= 1 && connectionTokens(connection.toLowerCase()) === undefined ? runs : undefined;
  return new RequestHead(
    method,
    target,
    minor,
    host,
    contentLength,
    chunked,
    keepAlive,
    expectContinue,
    buf,
    from,
    headEnd,
    forward,
    runsSize(runs),
    hostLine,
    xff,
    traceContext,
  );
}

/**
 * Strict HTTP/1.1 response parsing for the upstream client (RFC 9112): the status line and
 * header section, and the message framing they imply. Runtime-agnostic, works on bytes.
 *
 * Strict on purpose: a proxy that is lenient where the next hop is not can be made to see a
 * different message boundary than the backend meant (response smuggling). Anything odd → error.
 */
import type { Buffer } from "node:buffer";

/** The largest response header section accepted (status line, headers, final CRLF). */
export const MAX_HEAD = 64 * 1024;

export class ParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ParseError";
  }
}

export interface ResponseHead {
  status: number;
  statusText: string;
  /** name, value, name, value… with names lower-cased. */
  rawHeaders: string[];
  /** Content-Length, or -1 when absent. */
  contentLength: number;
  chunked: boolean;
  /** The backend will close, or the connection must not be reused (HTTP/1.0, `Connection: close`). */
  close: boolean;
}

/**
 * Index of the CRLFCRLF that ends the head in `buf[from..]`, or -1 if it has not arrived yet.
 * Throws on a bare LF (only CRLF ends a line here) and when the head outgrows {@link MAX_HEAD}.
 */
export function findHeadEnd(buf: Uint8Array, from: number): number {
  const n = buf.length;
  const limit = Math.min(n, from + MAX_HEAD);
  for (let i = from; i < limit; i++) {
    if (buf[i] !== 10) continue;
    if (i === from || buf[i - 1] !== 13) throw new ParseError("bare LF in response head");
    if (i >= from + 3 && buf[i - 2] === 10 && buf[i - 3] === 13) return i - 3;
  }
  if (n - from >= MAX_HEAD) throw new ParseError(`response head larger than ${MAX_HEAD} bytes`);
  return -1;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Control characters other than HTAB; CR and LF are caught by the line split below.
const CTL = /[\x00-\x08\x0a-\x1f\x7f]/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?$/;

function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/** Parse `buf[start..end)` (a head without its final CRLFCRLF, as found by {@link findHeadEnd}). */
export function parseHead(buf: Buffer, start: number, end: number): ResponseHead {
  const text = buf.toString("latin1", start, end);
  let lineEnd = text.indexOf("\r\n");
  if (lineEnd < 0) lineEnd = text.length;
  const m = STATUS_LINE.exec(text.slice(0, lineEnd));
  if (m === null) throw new ParseError(`invalid status line: ${JSON.stringify(text.slice(0, Math.min(lineEnd, 80)))}`);
  const http10 = m[1] === "0";
  const rawHeaders: string[] = [];
  let contentLength = -1;
  let te: string | undefined;
  let connection = "";
  let pos = lineEnd + 2;
  while (pos < text.length) {
    let next = text.indexOf("\r\n", pos);
    if (next < 0) next = text.length;
    const line = text.slice(pos, next);
    pos = next + 2;
    const c0 = line.charCodeAt(0);
    if (c0 === 32 || c0 === 9) throw new ParseError("obsolete line folding in response header");
    const colon = line.indexOf(":");
    if (colon <= 0) throw new ParseError(`invalid response header line: ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new ParseError(`invalid response header name: ${JSON.stringify(name.slice(0, 80))}`);
    const value = trimOws(line.slice(colon + 1));
    if (CTL.test(value) || value.indexOf("\r") >= 0) throw new ParseError(`invalid character in response header ${name}`);
    const lower = name.toLowerCase();
    rawHeaders.push(lower, value);
    if (lower === "content-length") {
      // A second Content-Length, even an equal one, or a list is a framing ambiguity: refuse.
      if (contentLength !== -1) throw new ParseError("duplicate Content-Length in response");
      if (!/^\d{1,15}$/.test(value)) throw new ParseError(`invalid Content-Length: ${JSON.stringify(value.slice(0, 40))}`);
      contentLength = Number(value);
    } else if (lower === "transfer-encoding") {
      te = te === undefined ? value : `${te}, ${value}`;
    } else if (lower === "connection") {
      connection = connection ? `${connection}, ${value.toLowerCase()}` : value.toLowerCase();
    }
  }
  let chunked = false;
  if (te !== undefined) {
    // Only plain `chunked` is accepted: other codings cannot be forwarded (the header is hop-by-hop).
    if (te.toLowerCase() !== "chunked") throw new ParseError(`unsupported Transfer-Encoding: ${JSON.stringify(te.slice(0, 40))}`);
    if (contentLength !== -1) throw new ParseError("response has both Transfer-Encoding and Content-Length");
    chunked = true;
  }
  // HTTP/1.0 keep-alive is rare and ill-defined with a proxy in between: never reuse those.
  const close = http10 || hasToken(connection, "close");
  return { status: Number(m[2]), statusText: m[3] ?? "", rawHeaders, contentLength, chunked, close };
}

function hasToken(list: string, token: string): boolean {
  if (list === "") return false;
  for (const t of list.split(",")) if (t.trim() === token) return true;
  return false;
}

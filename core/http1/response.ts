/**
 * Strict HTTP/1.1 response parsing for the upstream client (RFC 9112): the status line and
 * header section, and the message framing they imply. Runtime-agnostic, works on bytes.
 *
 * Strict on purpose: a proxy that is lenient where the next hop is not can be made to see a
 * different message boundary than the backend meant (response smuggling). Anything odd → error.
 */
import type { Buffer } from "node:buffer";
import { connectionTokens, HOP_BY_HOP } from "./headers.ts";
import { decimal, endRun, ownCopy, runsSize, type HeaderBlock } from "./bytes.ts";
import { bytesAre, headerPairs, NameSet } from "./names.ts";

/** The largest response header section accepted (status line, headers, final CRLF). */
export const MAX_HEAD = 64 * 1024;

export class ParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ParseError";
  }
}

/** Names the head's reading looks for: framing, Date, and the hop-by-hop ones never forwarded. */
const NAMES = new NameSet([
  "content-length",
  "transfer-encoding",
  "connection",
  "date",
  ...[...HOP_BY_HOP].filter((n) => n !== "connection" && n !== "transfer-encoding"),
]);
const CONTENT_LENGTH = 0, TRANSFER_ENCODING = 1, CONNECTION = 2, DATE = 3;

/**
 * A parsed response head. No string is made per header: the lines to forward stay bytes in the
 * buffer they came in ({@link HeaderBlock}), and `rawHeaders` is read from it only when asked for.
 */
export class ResponseHead {
  #raw: string[] | undefined;
  /** Its bytes were written over (BodyInRead.spend, core/http1/bytes.ts). */
  #spent = false;
  constructor(
    readonly status: number,
    readonly statusText: string,
    /** Content-Length, or -1 when absent. */
    readonly contentLength: number,
    readonly chunked: boolean,
    /** The backend will close, or the connection must not be reused (HTTP/1.0, `Connection: close`). */
    readonly close: boolean,
    /** The buffer and the index where the head starts. */
    public buf: Buffer,
    public from: number,
    /** Index in the buffer just after the head (its final CRLF). */
    public end: number,
    /**
     * The header lines to forward (HeaderBlock): all but Content-Length and the hop-by-hop ones.
     * Undefined when `Connection` names other headers: those are dropped by name, from `rawHeaders`.
     */
    readonly runs: number[] | undefined,
    readonly size: number,
    readonly hasDate: boolean,
  ) {}

  /**
   * Keep a copy of the head's own bytes instead of the buffer it came in: a large read (a streamed
   * body's first chunk, up to hundreds of KiB) held for the whole response made 1 MiB responses
   * cost 2x the CPU (4x the page faults: memory the allocator could not reuse).
   */
  detach(): void {
    this.buf = ownCopy(this.buf, this.from, this.end, this.runs);
    this.end -= this.from;
    this.from = 0;
  }

  /** The lines to forward as bytes, or undefined (see `runs`). */
  get block(): HeaderBlock | undefined {
    if (this.#spent) throw new Error("response head read after its bytes were written over");
    return this.runs === undefined ? undefined : (this as HeaderBlock);
  }

  /** name, value, name, value… with names lower-cased, values without surrounding whitespace. */
  get rawHeaders(): string[] {
    if (this.#raw === undefined && this.#spent) throw new Error("response head read after its bytes were written over");
    return (this.#raw ??= headerPairs(this.buf, this.from, this.end));
  }

  /** Its bytes in the read are being written over (the client's head, sent from that read): any later reading throws rather than read them. */
  spend(): void {
    this.#spent = true;
  }
}

// tchar (RFC 9110 §5.6.2) by byte value.
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;
/** Scratch for one parse: per header line, name start, colon, value start and end (trimmed). */
let marks = new Int32Array(4 * 64);

const isCtl = (c: number) => (c < 32 && c !== 9) || c === 127;

/** Out of bytes at `i`: wait for more (undefined), unless the head is already too large. */
function more(from: number, n: number): undefined {
  if (n - from >= MAX_HEAD) throw new ParseError(`response head larger than ${MAX_HEAD} bytes`);
  return undefined;
}

/**
 * Parse the response head starting at `buf[from]`, or return undefined if it has not all
 * arrived. One pass over the bytes checks the framing of every line (CRLF only, no control
 * characters, token header names, no obs-fold) before any string is made.
 */
export function parseHead(buf: Buffer, from: number): ResponseHead | undefined {
  const n = buf.length;
  const limit = Math.min(n, from + MAX_HEAD);
  let i = from;
  let c = 0;
  for (; i < limit; i++) {
    c = buf[i]!;
    if (c === 13) break;
    if (isCtl(c)) throw new ParseError(c === 10 ? "bare LF in response head" : "control character in status line");
  }
  if (i + 1 >= limit) return more(from, n);
  if (buf[i + 1] !== 10) throw new ParseError("bare CR in response head");
  const statusEnd = i;
  i += 2;
  let count = 0;
  let headEnd: number;
  for (;;) {
    if (i >= limit) return more(from, n);
    c = buf[i]!;
    if (c === 13) {
      if (i + 1 >= limit) return more(from, n);
      if (buf[i + 1] !== 10) throw new ParseError("bare CR in response head");
      headEnd = i + 2;
      break;
    }
    if (c === 32 || c === 9) throw new ParseError("obsolete line folding in response header");
    const nameStart = i;
    for (; i < limit && (c = buf[i]!) !== 58; i++) {
      if (c >= 128 || TCHAR[c] === 0)
        throw new ParseError(c === 13 || c === 10 ? "response header line without a colon" : "invalid response header name");
    }
    if (i >= limit) return more(from, n);
    if (i === nameStart) throw new ParseError("empty response header name");
    const colon = i++;
    while (i < limit && ((c = buf[i]!) === 32 || c === 9)) i++;
    const valueStart = i;
    let valueEnd = i;
    for (; i < limit; i++) {
      c = buf[i]!;
      if (c === 13) break;
      if (isCtl(c)) throw new ParseError(c === 10 ? "bare LF in response head" : "control character in response header value");
      if (c !== 32 && c !== 9) valueEnd = i + 1;
    }
    if (i + 1 >= limit) return more(from, n);
    if (buf[i + 1] !== 10) throw new ParseError("bare CR in response head");
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

  // "HTTP/1.x NNN reason", read from the bytes: no regular expression or match array per response.
  const lineLen = statusEnd - from;
  const d0 = buf[from + 9]! - 48, d1 = buf[from + 10]! - 48, d2 = buf[from + 11]! - 48;
  const minor = buf[from + 7]!;
  if (
    lineLen < 12 || !startsWithHttp1(buf, from) || (minor !== 48 && minor !== 49) || buf[from + 8] !== 32 ||
    d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9 || (lineLen > 12 && buf[from + 12] !== 32)
  ) {
    throw new ParseError(`invalid status line: ${JSON.stringify(buf.toString("latin1", from, from + Math.min(lineLen, 80)))}`);
  }
  const http10 = minor === 48;
  const status = d0 * 100 + d1 * 10 + d2;
  // latin1, so obs-text keeps its bytes.
  const statusText = lineLen === 15 && buf[from + 13] === 79 && buf[from + 14] === 75
    ? "OK"
    : lineLen > 13
    ? buf.toString("latin1", from + 13, statusEnd)
    : "";
  let contentLength = -1;
  let te: string | undefined;
  let connection = "";
  let hasDate = false;
  // Runs of header lines to forward: a line ends where the next begins (the last before the empty line).
  const runs: number[] = [];
  let runStart = -1;
  for (let k = 0; k < count; k++) {
    const nameStart = from + marks[k * 4]!;
    const id = NAMES.indexOf(buf, nameStart, from + marks[k * 4 + 1]!);
    if (id < 0 || id === DATE) {
      if (id === DATE) hasDate = true;
      if (runStart < 0) runStart = nameStart;
      continue;
    }
    runStart = endRun(runs, runStart, nameStart);
    const vs = from + marks[k * 4 + 2]!, ve = from + marks[k * 4 + 3]!;
    if (id === CONTENT_LENGTH) {
      // A second Content-Length, even an equal one, or a list is a framing ambiguity: refuse.
      if (contentLength !== -1) throw new ParseError("duplicate Content-Length in response");
      contentLength = decimal(buf, vs, ve);
      if (contentLength < 0)
        throw new ParseError(`invalid Content-Length: ${JSON.stringify(buf.toString("latin1", vs, Math.min(ve, vs + 40)))}`);
    } else if (id === TRANSFER_ENCODING) {
      const value = buf.toString("latin1", vs, ve);
      te = te === undefined ? value : `${te}, ${value}`;
    } else if (id === CONNECTION) {
      // What nearly every backend sends, without a string.
      const value = bytesAre(buf, vs, ve, "keep-alive")
        ? "keep-alive"
        : bytesAre(buf, vs, ve, "close")
        ? "close"
        : buf.toString("latin1", vs, ve).toLowerCase();
      connection = connection ? `${connection}, ${value}` : value;
    }
  }
  endRun(runs, runStart, headEnd - 2);
  let chunked = false;
  if (te !== undefined) {
    // Only plain `chunked` is accepted: other codings cannot be forwarded (the header is hop-by-hop).
    if (te.toLowerCase() !== "chunked") throw new ParseError(`unsupported Transfer-Encoding: ${JSON.stringify(te.slice(0, 40))}`);
    if (contentLength !== -1) throw new ParseError("response has both Transfer-Encoding and Content-Length");
    chunked = true;
  }
  // HTTP/1.0 keep-alive is rare and ill-defined with a proxy in between: never reuse those.
  const close = http10 || (connection !== "keep-alive" && hasToken(connection, "close"));
  // Headers named in Connection are dropped by name (downstreamRaw), from the strings.
  const forward = connectionTokens(connection) === undefined ? runs : undefined;
  return new ResponseHead(status, statusText, contentLength, chunked, close, buf, from, headEnd, forward, runsSize(runs), hasDate);
}

/** "HTTP/1." at `at`. */
function startsWithHttp1(buf: Buffer, at: number): boolean {
  return buf[at] === 72 && buf[at + 1] === 84 && buf[at + 2] === 84 && buf[at + 3] === 80 && buf[at + 4] === 47 && buf[at + 5] === 49 &&
    buf[at + 6] === 46;
}

function hasToken(list: string, token: string): boolean {
  if (list === "") return false;
  for (const t of list.split(",")) if (t.trim() === token) return true;
  return false;
}

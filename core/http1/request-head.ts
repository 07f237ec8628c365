/**
 * A parsed HTTP/1.1 request head and the limits a head must keep (the parser in request.ts makes
 * it). Header strings are made only on demand; the lines to forward stay bytes (a HeaderBlock).
 */
import type { Buffer } from "node:buffer";
import { ownCopy, type HeaderBlock } from "./bytes.ts";
import { headerPairs } from "./names.ts";

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
   * The value of header `name` (lower-case), several lines joined with ", " (Cookie lines with
   * "; ", RFC 6265 §5.4, as they are forwarded); null when absent (Host as in {@link rawHeaders}).
   * Read from the bytes when the strings were not made: tracing looks up a few names a request
   * (its propagators and, for sampled ones, User-Agent), which must not make them all.
   */
  header(name: string): string | null {
    if (name === "host" && this.host !== "") return this.host;
    const raw = this.#raw;
    if (raw !== undefined) {
      let value: string | null = null;
      const sep = name === "cookie" ? "; " : ", ";
      for (let i = 0; i < raw.length; i += 2) if (raw[i] === name) value = value === null ? raw[i + 1]! : value + sep + raw[i + 1];
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
        value = value === null ? v : value + (name === "cookie" ? "; " : ", ") + v;
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

/** The headers of the propagators tracing can use (W3C trace context and baggage, B3). */
export const TRACE_NAMES = [
  "traceparent",
  "tracestate",
  "baggage",
  "b3",
  "x-b3-traceid",
  "x-b3-spanid",
  "x-b3-sampled",
  "x-b3-parentspanid",
  "x-b3-flags",
];
const TRACE_HEADERS: ReadonlySet<string> = new Set(TRACE_NAMES);

/** Whether the header name at `buf[at]` (token bytes, as long as `lower`) is `lower` in any case. */
export function sameName(buf: Buffer, at: number, lower: string): boolean {
  for (let j = 0; j < lower.length; j++) {
    let c = buf[at + j]!;
    if (c >= 65 && c <= 90) c |= 0x20;
    if (c !== lower.charCodeAt(j)) return false;
  }
  return true;
}

/**
 * Chunked transfer coding (RFC 9112 §7.1): writing chunks, and the strict incremental decoder of
 * a chunked body both HTTP/1.1 ends use (see {@link ChunkedDecoder}).
 */
import { Buffer } from "node:buffer";
import { MAX_HEAD, ParseError } from "./response.ts";
import { TCHAR } from "./names.ts";

/** Chunks up to this are framed into one write (one syscall) with their size line and CRLF. */
const COALESCE_LIMIT = 16 * 1024;
const CRLF = Buffer.from("\r\n");
/** The last chunk and the end of the (empty) trailer section. */
export const LAST_CHUNK = Buffer.from("0\r\n\r\n");

/**
 * Write `data` as one chunk of a chunked body through `write` (the upstream client's and the
 * listener's connection writers). Returns what the last write returned (false: wait for drain).
 */
export function writeChunk(write: (data: Uint8Array) => boolean, data: Uint8Array): boolean {
  const prefix = `${data.length.toString(16)}\r\n`;
  if (data.length <= COALESCE_LIMIT) {
    const out = Buffer.allocUnsafe(prefix.length + data.length + 2);
    out.write(prefix, 0, "latin1");
    out.set(data, prefix.length);
    out[out.length - 2] = 13;
    out[out.length - 1] = 10;
    return write(out);
  }
  write(Buffer.from(prefix, "latin1"));
  write(data);
  return write(CRLF);
}

const enum S {
  Size,
  /** After `;`: an extension's name must start. */
  ExtName,
  /** In an extension's name (a token). */
  ExtNameRest,
  /** After `=`: a token or a quoted string must start. */
  ExtValue,
  ExtToken,
  ExtQuoted,
  /** After a backslash in a quoted string. */
  ExtQuotedPair,
  /** After a quoted string's closing quote. */
  ExtQuotedEnd,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  TrailerName,
  TrailerValue,
  TrailerLf,
  EndLf,
  Done,
}

// 13 hex digits = 52 bits: every size stays an exact integer. Leading zeros do not count, but
// every byte of a chunk-size line (zeros, extensions) counts toward MAX_LINE.
const MAX_SIZE_DIGITS = 13;
const MAX_LINE = 4096;

/**
 * Fields refused in a trailer section: framing and routing (RFC 9110 §6.5.1), and Connection. A
 * parser that reads them as if they were in the header section (or a proxy that merges trailers
 * into it) frames, routes or ends the connection otherwise than one that ignores them: llhttp
 * refuses Content-Length and Transfer-Encoding there, and applies a trailer `Connection: close`.
 * Lower case; matched byte by byte as the name arrives.
 */
const FORBIDDEN_TRAILERS = ["content-length", "transfer-encoding", "host", "connection"];
const ALL_FORBIDDEN = (1 << FORBIDDEN_TRAILERS.length) - 1;

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  if (l >= 97 && l <= 102) return l - 87;
  return -1;
}

function isCtl(c: number): boolean {
  return (c < 32 && c !== 9) || c === 127;
}

const isTchar = (c: number) => c < 128 && TCHAR[c] === 1;

/**
 * Strict, incremental decoder of a chunked body (RFC 9112 §7.1), for request bodies (the
 * listener) and response bodies (the upstream client). The syntax is checked as strictly as
 * llhttp checks it, since a lenient reader in a chain is where smuggling starts:
 *
 * - chunk-size: hex digits only, then `;` or CRLF: no whitespace (the RFC's BWS before `;` is
 *   refused, as llhttp does), no sign, no `0x`;
 * - chunk extensions (§7.1.1): `;` name [ `=` ( token / quoted-string ) ], repeated; names are
 *   tokens, quoted strings end and escape as RFC 9110 §5.6.4 says; no whitespace around `;` or
 *   `=`. They are checked and dropped, in at most MAX_LINE bytes a line;
 * - trailer fields (§7.1.2): the field-line grammar of the header section (token name, a colon
 *   with no whitespace before it, no control bytes, no obs-fold), and none of Content-Length,
 *   Transfer-Encoding, Host and Connection. They are checked and dropped (a proxy may drop them).
 *
 * Extensions and trailers cost nothing when absent: their states are reached only from a `;` and
 * from a non-empty trailer line. Nothing is allocated per chunk; data is emitted as views.
 */
export class ChunkedDecoder {
  #state = S.Size;
  #size = 0;
  #digits = 0;
  /** Bytes of the current chunk-size line (size, extensions). */
  #line = 0;
  #trailer = 0;
  /** Length of the trailer field name so far, and which FORBIDDEN_TRAILERS it may still be (bits). */
  #nameLen = 0;
  #nameMay = 0;

  get done(): boolean {
    return this.#state === S.Done;
  }

  /**
   * Decode `buf[off..end)`, giving each run of body data to `sink.push`. Returns the index after
   * the last byte consumed: `end`, or earlier when the body finished there (the rest is not ours).
   */
  feed(buf: Uint8Array, off: number, end: number, sink: { push(data: Uint8Array): unknown }): number {
    let i = off;
    while (i < end) {
      const c = buf[i]!;
      switch (this.#state) {
        case S.Size: {
          const h = hexValue(c);
          if (h >= 0) {
            if (++this.#line > MAX_LINE) throw new ParseError("chunk size line too long");
            if ((h !== 0 || this.#size !== 0) && ++this.#digits > MAX_SIZE_DIGITS) throw new ParseError("chunk size too large");
            this.#size = this.#size * 16 + h;
            i++;
            break;
          }
          if (this.#line === 0) throw new ParseError("invalid chunk size");
          if (c === 13) this.#state = S.SizeLf;
          else if (c === 59) this.#state = S.ExtName;
          else throw new ParseError("invalid chunk size");
          i++;
          break;
        }
        case S.SizeLf:
          if (c !== 10) throw new ParseError("invalid chunk size line ending");
          i++;
          this.#digits = 0;
          this.#line = 0;
          this.#state = this.#size === 0 ? S.TrailerStart : S.Data;
          break;
        case S.Data: {
          const n = Math.min(this.#size, end - i);
          sink.push(buf.subarray(i, i + n));
          i += n;
          this.#size -= n;
          if (this.#size === 0) this.#state = S.DataCr;
          break;
        }
        case S.DataCr:
          if (c !== 13) throw new ParseError("chunk data longer than its size");
          this.#state = S.DataLf;
          i++;
          break;
        case S.DataLf:
          if (c !== 10) throw new ParseError("chunk data not followed by CRLF");
          this.#state = S.Size;
          i++;
          break;
        case S.TrailerStart:
          if (c === 13) this.#state = S.EndLf;
          else if (isTchar(c)) {
            this.#state = S.TrailerName;
            this.#nameLen = 0;
            this.#nameMay = ALL_FORBIDDEN;
            continue; // the name's first byte is matched in TrailerName
          } else if (c === 32 || c === 9) throw new ParseError("obsolete line folding in trailer");
          else throw new ParseError("invalid trailer field name");
          if (++this.#trailer > MAX_HEAD) throw new ParseError("trailer section too large");
          i++;
          break;
        case S.EndLf:
          if (c !== 10) throw new ParseError("invalid chunked body ending");
          this.#state = S.Done;
          return i + 1;
        case S.Done:
          return i;
        default:
          i = this.#rare(c, i);
      }
    }
    return i;
  }

  /** The states of extensions and trailer fields (off the path of a plain chunked body). */
  #rare(c: number, i: number): number {
    switch (this.#state) {
      case S.ExtName:
        if (!isTchar(c)) throw new ParseError("invalid chunk extension name");
        this.#state = S.ExtNameRest;
        break;
      case S.ExtNameRest:
        if (c === 61) this.#state = S.ExtValue;
        else this.#extEnd(c, "invalid chunk extension name");
        break;
      case S.ExtValue:
        if (c === 34) this.#state = S.ExtQuoted;
        else if (isTchar(c)) this.#state = S.ExtToken;
        else throw new ParseError("invalid chunk extension value");
        break;
      case S.ExtToken:
        this.#extEnd(c, "invalid chunk extension value");
        break;
      case S.ExtQuoted:
        // qdtext: HTAB, SP, VCHAR except `"` and `\`, obs-text.
        if (c === 34) this.#state = S.ExtQuotedEnd;
        else if (c === 92) this.#state = S.ExtQuotedPair;
        else if (isCtl(c)) throw new ParseError("invalid character in chunk extension quoted string");
        break;
      case S.ExtQuotedPair:
        if (isCtl(c)) throw new ParseError("invalid character in chunk extension quoted string");
        this.#state = S.ExtQuoted;
        break;
      case S.ExtQuotedEnd:
        if (c === 13) this.#state = S.SizeLf;
        else if (c === 59) this.#state = S.ExtName;
        else throw new ParseError("invalid chunk extension after a quoted string");
        break;
      case S.TrailerName:
        if (c === 58) {
          if (this.#nameMay !== 0) {
            for (let k = 0; k < FORBIDDEN_TRAILERS.length; k++) {
              if ((this.#nameMay & (1 << k)) !== 0 && FORBIDDEN_TRAILERS[k]!.length === this.#nameLen)
                throw new ParseError(`${FORBIDDEN_TRAILERS[k]} in a trailer`);
            }
          }
          this.#state = S.TrailerValue;
        } else if (isTchar(c)) {
          if (this.#nameMay !== 0) this.#matchName(c | 0x20);
          this.#nameLen++;
        } else throw new ParseError(c === 32 || c === 9 ? "whitespace before the colon of a trailer field" : "invalid trailer field");
        if (++this.#trailer > MAX_HEAD) throw new ParseError("trailer section too large");
        return i + 1;
      case S.TrailerValue:
        if (c === 13) this.#state = S.TrailerLf;
        else if (isCtl(c)) throw new ParseError("invalid character in trailer");
        if (++this.#trailer > MAX_HEAD) throw new ParseError("trailer section too large");
        return i + 1;
      case S.TrailerLf:
        if (c !== 10) throw new ParseError("invalid trailer line ending");
        this.#state = S.TrailerStart;
        return i + 1;
    }
    if (++this.#line > MAX_LINE) throw new ParseError("chunk extension too long");
    return i + 1;
  }

  /** In an extension name or token value: a tchar continues it, `;` starts the next, CR ends the line. */
  #extEnd(c: number, message: string): void {
    if (c === 13) this.#state = S.SizeLf;
    else if (c === 59) this.#state = S.ExtName;
    else if (!isTchar(c)) throw new ParseError(message);
  }

  /** Drop the FORBIDDEN_TRAILERS candidates whose next byte is not `lower`. */
  #matchName(lower: number): void {
    const at = this.#nameLen;
    for (let k = 0; k < FORBIDDEN_TRAILERS.length; k++) {
      const name = FORBIDDEN_TRAILERS[k]!;
      if ((this.#nameMay & (1 << k)) !== 0 && (at >= name.length || name.charCodeAt(at) !== lower)) this.#nameMay &= ~(1 << k);
    }
  }
}

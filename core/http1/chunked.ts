/**
 * Incremental, strict decoder of a chunked message body (RFC 9112 §7.1). Data is emitted as
 * views into the input (no copies). Chunk extensions are skipped; trailers are checked for
 * framing and dropped (a proxy may drop them; most clients ignore them anyway).
 */
import { Buffer } from "node:buffer";
import { MAX_HEAD, ParseError } from "./response.ts";

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
  SizeWs,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  TrailerLine,
  TrailerLf,
  EndLf,
  Done,
}

// 13 hex digits = 52 bits: every size stays an exact integer.
const MAX_SIZE_DIGITS = 13;
const MAX_EXT = 4096;

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  if (l >= 97 && l <= 102) return l - 87;
  return -1;
}

function isCtl(c: number): boolean {
  return (c < 32 && c !== 9) || c === 127;
}

export class ChunkedDecoder {
  #state = S.Size;
  #size = 0;
  #digits = 0;
  #ext = 0;
  #trailer = 0;

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
            if (++this.#digits > MAX_SIZE_DIGITS) throw new ParseError("chunk size too large");
            this.#size = this.#size * 16 + h;
            i++;
            break;
          }
          if (this.#digits === 0) throw new ParseError("invalid chunk size");
          this.#state = S.SizeWs;
          break;
        }
        case S.SizeWs:
          if (c === 32 || c === 9) i++;
          else if (c === 59) {
            this.#state = S.Ext;
            i++;
          } else if (c === 13) {
            this.#state = S.SizeLf;
            i++;
          } else throw new ParseError("invalid chunk size");
          break;
        case S.Ext:
          if (c === 13) this.#state = S.SizeLf;
          else if (isCtl(c) || ++this.#ext > MAX_EXT) throw new ParseError("invalid chunk extension");
          i++;
          break;
        case S.SizeLf:
          if (c !== 10) throw new ParseError("invalid chunk size line ending");
          i++;
          this.#digits = 0;
          this.#ext = 0;
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
          else if (c === 32 || c === 9) throw new ParseError("obsolete line folding in trailer");
          else if (isCtl(c)) throw new ParseError("invalid character in trailer");
          else this.#state = S.TrailerLine;
          if (++this.#trailer > MAX_HEAD) throw new ParseError("trailer section too large");
          i++;
          break;
        case S.TrailerLine:
          if (c === 13) this.#state = S.TrailerLf;
          else if (isCtl(c)) throw new ParseError("invalid character in trailer");
          if (++this.#trailer > MAX_HEAD) throw new ParseError("trailer section too large");
          i++;
          break;
        case S.TrailerLf:
          if (c !== 10) throw new ParseError("invalid trailer line ending");
          this.#state = S.TrailerStart;
          i++;
          break;
        case S.EndLf:
          if (c !== 10) throw new ParseError("invalid chunked body ending");
          this.#state = S.Done;
          return i + 1;
        case S.Done:
          return i;
      }
    }
    return i;
  }
}

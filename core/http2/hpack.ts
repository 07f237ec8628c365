/**
 * HPACK (RFC 7541): the decoder for request header blocks (static and dynamic table, Huffman,
 * table size updates), and the encoder for responses. The encoder indexes nothing dynamically
 * (static-table names, literals without indexing, no Huffman): it needs no state shared with the
 * client beyond the static table, and writing bytes as they are costs less than coding them.
 */
import { Buffer } from "node:buffer";
import { huffmanDecode } from "./huffman.ts";

/** RFC 7541 Appendix A. */
export const STATIC: readonly (readonly [string, string])[] = [
  ["", ""],
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ...[
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
  ].map((n) => [n, n === "accept-encoding" ? "gzip, deflate" : ""] as const),
];

/** A block that does not decode: a connection error (COMPRESSION_ERROR, RFC 9113 §4.3). */
export class HpackError extends Error {}

/** The header table size this side allows (SETTINGS_HEADER_TABLE_SIZE, the default: not sent). */
export const TABLE_SIZE = 4096;

export class HpackDecoder {
  /** The dynamic table, oldest first (index 62 is the last). */
  #names: string[] = [];
  #values: string[] = [];
  #size = 0;
  #max = TABLE_SIZE;

  /**
   * Decode `b[start, end)`, calling `field` for each header in order. Every field is decoded
   * even past a size bound, so that the dynamic table stays as the client's encoder has it.
   */
  decode(b: Buffer, start: number, end: number, field: (name: string, value: string) => void): void {
    let p = start;
    let fields = false;
    while (p < end) {
      const c = b[p]!;
      if (c & 0x80) {
        // Indexed field (§6.1).
        const i = int(b, p, end, 7);
        p = pos;
        if (i === 0) throw new HpackError("index 0");
        field(this.#name(i), this.#value(i));
        fields = true;
        continue;
      }
      if ((c & 0xe0) === 0x20) {
        // Dynamic table size update (§6.3): only before the first field of a block.
        const size = int(b, p, end, 5);
        p = pos;
        if (fields) throw new HpackError("table size update after a field");
        if (size > TABLE_SIZE) throw new HpackError("table size update over the limit");
        this.#max = size;
        this.#evict(0);
        continue;
      }
      // Literal: with incremental indexing (01), without (0000) or never indexed (0001).
      const indexing = (c & 0xc0) === 0x40;
      const i = int(b, p, end, indexing ? 6 : 4);
      let name: string;
      if (i === 0) name = str(b, pos, end);
      else name = this.#name(i);
      const value = str(b, pos, end);
      p = pos;
      if (indexing) this.#add(name, value);
      field(name, value);
      fields = true;
    }
  }

  #name(i: number): string {
    if (i < STATIC.length) return STATIC[i]![0];
    const d = this.#names.length - (i - STATIC.length) - 1;
    if (d < 0) throw new HpackError(`index ${i} beyond the table`);
    return this.#names[d]!;
  }

  #value(i: number): string {
    if (i < STATIC.length) return STATIC[i]![1];
    return this.#values[this.#values.length - (i - STATIC.length) - 1]!;
  }

  #add(name: string, value: string): void {
    const size = name.length + value.length + 32;
    this.#evict(size);
    // An entry larger than the table empties it and is not added (§4.4).
    if (size > this.#max) return;
    this.#names.push(name);
    this.#values.push(value);
    this.#size += size;
  }

  /** Evict oldest entries until `room` more bytes fit. */
  #evict(room: number): void {
    let n = 0;
    while (this.#size + room > this.#max && n < this.#names.length) {
      this.#size -= this.#names[n]!.length + this.#values[n]!.length + 32;
      n++;
    }
    if (n > 0) {
      this.#names.splice(0, n);
      this.#values.splice(0, n);
    }
  }

  /** The dynamic table's size in bytes (for tests). */
  get size(): number {
    return this.#size;
  }
}

/** Where the last int() or str() stopped reading (no object per call). */
let pos = 0;

/** Integer with an N-bit prefix (§5.1); bounded to 2^28 (no field or table is that large). Sets {@link pos}. */
function int(b: Uint8Array, p: number, end: number, bits: number): number {
  const max = (1 << bits) - 1;
  let v = b[p++]! & max;
  if (v < max) {
    pos = p;
    return v;
  }
  let shift = 0;
  for (;;) {
    if (p >= end) throw new HpackError("truncated integer");
    const c = b[p++]!;
    v += (c & 0x7f) * 2 ** shift;
    if ((c & 0x80) === 0) break;
    shift += 7;
    if (shift > 21) throw new HpackError("integer too large");
  }
  pos = p;
  return v;
}

/** A string literal (§5.2). Sets {@link pos}. */
function str(b: Buffer, p: number, end: number): string {
  if (p >= end) throw new HpackError("truncated string");
  const huffman = (b[p]! & 0x80) !== 0;
  const n = int(b, p, end, 7);
  const s = pos;
  const e = s + n;
  if (e > end) throw new HpackError("string beyond the block");
  pos = e;
  if (!huffman) return b.toString("latin1", s, e);
  const value = huffmanDecode(b, s, e);
  if (value === undefined) throw new HpackError("invalid Huffman code");
  return value;
}

// ---- encoding (responses) ----

/** The first static index of each name (a literal's indexed name). */
const STATIC_NAME = new Map<string, number>();
for (let i = STATIC.length - 1; i > 0; i--) STATIC_NAME.set(STATIC[i]![0], i);

/** :status values with a static index (§ Appendix A 8–14). */
const STATUS_INDEX: Record<number, number> = { 200: 8, 204: 9, 206: 10, 304: 11, 400: 12, 404: 13, 500: 14 };

/** Header block bytes written into a buffer that grows and is reused per connection. */
export class HpackEncoder {
  buf: Buffer = Buffer.allocUnsafe(4096);
  len = 0;

  reset(): void {
    this.len = 0;
  }

  #room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const b = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(b, 0, 0, this.len);
    this.buf = b;
  }

  status(code: number): void {
    this.#room(8);
    const i = STATUS_INDEX[code];
    if (i !== undefined) {
      this.buf[this.len++] = 0x80 | i;
      return;
    }
    // Literal without indexing, name :status (8), 3 digits.
    this.buf[this.len++] = 0x08;
    this.buf[this.len++] = 3;
    this.len += this.buf.write(String(code), this.len, "latin1");
  }

  /** A field (name lower-case, checked by the caller), as a literal without indexing. */
  field(name: string, value: string): void {
    this.#room(name.length + value.length + 12);
    const i = STATIC_NAME.get(name);
    if (i !== undefined) this.#int(i, 4, 0x00);
    else {
      this.buf[this.len++] = 0x00;
      this.#int(name.length, 7, 0x00);
      this.len += this.buf.write(name, this.len, "latin1");
    }
    this.#int(value.length, 7, 0x00);
    this.len += this.buf.write(value, this.len, "latin1");
  }

  /** A field whose value is `src[start, end)` (a backend's header line, copied as bytes). */
  fieldBytes(name: string, src: Buffer, start: number, end: number): void {
    const n = end - start;
    this.#room(name.length + n + 12);
    const i = STATIC_NAME.get(name);
    if (i !== undefined) this.#int(i, 4, 0x00);
    else {
      this.buf[this.len++] = 0x00;
      this.#int(name.length, 7, 0x00);
      this.len += this.buf.write(name, this.len, "latin1");
    }
    this.#int(n, 7, 0x00);
    (src as Buffer).copy(this.buf, this.len, start, end);
    this.len += n;
  }

  /** A field with a name not in the static table, both given as bytes (the name lower-cased here). */
  rawField(src: Buffer, ns: number, ne: number, vs: number, ve: number): void {
    this.#room(ne - ns + ve - vs + 12);
    const b = this.buf;
    b[this.len++] = 0x00;
    this.#int(ne - ns, 7, 0x00);
    for (let i = ns; i < ne; i++) {
      const c = src[i]!;
      b[this.len++] = c >= 65 && c <= 90 ? c | 0x20 : c;
    }
    this.#int(ve - vs, 7, 0x00);
    src.copy(b, this.len, vs, ve);
    this.len += ve - vs;
  }

  #int(n: number, bits: number, first: number): void {
    const max = (1 << bits) - 1;
    const b = this.buf;
    if (n < max) {
      b[this.len++] = first | n;
      return;
    }
    b[this.len++] = first | max;
    n -= max;
    while (n >= 128) {
      b[this.len++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    b[this.len++] = n;
  }
}

/**
 * Header names as the parsers return them (lower-case), without a string per header for the
 * common ones: `toLowerCase()` of a freshly sliced name costs ~150 ns on Bun, and a response from
 * nginx carries eight capitalised names (measured: bench/hotpath-micro.ts, "header names").
 */

/** Names seen in most requests and responses, lower-case. Only letters, digits and `-`. */
const COMMON = [
  "accept",
  "accept-encoding",
  "accept-language",
  "accept-ranges",
  "access-control-allow-origin",
  "age",
  "alt-svc",
  "authorization",
  "cache-control",
  "connection",
  "content-disposition",
  "content-encoding",
  "content-language",
  "content-length",
  "content-security-policy",
  "content-type",
  "cookie",
  "date",
  "etag",
  "expect",
  "expires",
  "host",
  "if-modified-since",
  "if-none-match",
  "keep-alive",
  "last-modified",
  "link",
  "location",
  "origin",
  "pragma",
  "referer",
  "retry-after",
  "sec-fetch-dest",
  "sec-fetch-mode",
  "sec-fetch-site",
  "server",
  "set-cookie",
  "strict-transport-security",
  "te",
  "traceparent",
  "tracestate",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "upgrade-insecure-requests",
  "user-agent",
  "vary",
  "via",
  "www-authenticate",
  "x-content-type-options",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-frame-options",
  "x-powered-by",
  "x-real-ip",
  "x-request-id",
];

/** By length: the common names of that length, and their bytes. */
const BY_LENGTH: { name: string; bytes: Uint8Array }[][] = [];
const encoder = new TextEncoder();
for (const name of COMMON) (BY_LENGTH[name.length] ??= []).push({ name, bytes: encoder.encode(name) });

/**
 * The lower-case name of the header whose name is `buf[start..end)` (token bytes, already
 * checked), where `text` is the head decoded from `buf[base..]`. A common name is matched
 * case-insensitively on the bytes (`| 0x20` folds only letters here: the names hold letters,
 * digits and `-`, and a byte that folds onto those is a letter, a digit or CR, which a token
 * cannot contain); any other name is sliced, and lower-cased only if it has an upper-case letter.
 */
export function headerName(buf: Uint8Array, start: number, end: number, text: string, base: number): string {
  const len = end - start;
  const list = BY_LENGTH[len];
  if (list !== undefined) {
    outer: for (let k = 0; k < list.length; k++) {
      const known = list[k]!.bytes;
      for (let j = 0; j < len; j++) if ((buf[start + j]! | 0x20) !== known[j]) continue outer;
      return list[k]!.name;
    }
  }
  const name = text.slice(start - base, end - base);
  for (let j = start; j < end; j++) {
    const c = buf[j]!;
    if (c >= 65 && c <= 90) return name.toLowerCase();
  }
  return name;
}

/** tchar (RFC 9110 §5.6.2) by byte value, for the bytes below 128 (none above is one). */
export const TCHAR: Uint8Array = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

/**
 * A few names looked up in bytes, with no string made: {@link NameSet.indexOf} is the index of a
 * header name in the list (matched case-insensitively, as {@link headerName} matches), or -1.
 * The names must be lower-case letters, digits and `-` (see headerName for why `| 0x20` suffices).
 */
export class NameSet {
  readonly #byLength: { index: number; bytes: Uint8Array }[][] = [];
  constructor(names: readonly string[]) {
    names.forEach((name, index) => (this.#byLength[name.length] ??= []).push({ index, bytes: encoder.encode(name) }));
  }
  indexOf(buf: Uint8Array, start: number, end: number): number {
    const len = end - start;
    const list = this.#byLength[len];
    if (list === undefined) return -1;
    outer: for (let k = 0; k < list.length; k++) {
      const known = list[k]!.bytes;
      for (let j = 0; j < len; j++) if ((buf[start + j]! | 0x20) !== known[j]) continue outer;
      return list[k]!.index;
    }
    return -1;
  }
}

/**
 * The header lines of a head already checked by a parser (`buf[from, end)`: start line, header
 * lines, empty line) as name, value, … strings: names lower-cased, values without surrounding
 * spaces and tabs. For the heads whose strings are made only when something asks.
 */
export function headerPairs(
  buf: Uint8Array & { toString(encoding: "latin1", start: number, end: number): string },
  from: number,
  end: number,
): string[] {
  const text = buf.toString("latin1", from, end);
  const out: string[] = [];
  const last = text.length - 2;
  for (let i = text.indexOf("\r\n") + 2; i < last;) {
    const eol = text.indexOf("\r\n", i);
    const colon = text.indexOf(":", i);
    out.push(headerName(buf, from + i, from + colon, text, from));
    let vs = colon + 1;
    let ve = eol;
    while (vs < ve && (text.charCodeAt(vs) === 32 || text.charCodeAt(vs) === 9)) vs++;
    while (ve > vs && (text.charCodeAt(ve - 1) === 32 || text.charCodeAt(ve - 1) === 9)) ve--;
    out.push(text.slice(vs, ve));
    i = eol + 2;
  }
  return out;
}

/** Whether `buf[start..end)` is `lower` (lower-case ASCII letters, digits and `-`) in any case. */
export function bytesAre(buf: Uint8Array, start: number, end: number, lower: string): boolean {
  if (end - start !== lower.length) return false;
  for (let j = 0; j < lower.length; j++) if ((buf[start + j]! | 0x20) !== lower.charCodeAt(j)) return false;
  return true;
}

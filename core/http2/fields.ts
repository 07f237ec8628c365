/**
 * A decoded header block checked as RFC 9113 §8.2–8.3 asks of a request (a malformed one is a
 * stream error, PROTOCOL_ERROR), and a response's fields written with HPACK: the status, then the
 * headers without the connection-specific ones (a backend's lines copied as bytes).
 */
import type { HeaderBlock } from "../http1/bytes.ts";
import { headerName } from "../http1/names.ts";
import { CONNECTION_SPECIFIC } from "./headers.ts";
import type { HpackEncoder } from "./hpack.ts";

/** A request the server must refuse as malformed (RST_STREAM PROTOCOL_ERROR). */
export class Malformed extends Error {}

/** tchar (RFC 9110 §5.6.2) without upper-case letters: what a field name may be made of in HTTP/2. */
const NAME_CHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") NAME_CHAR[c.charCodeAt(0)] = 1;

const PSEUDO = new Set([":method", ":scheme", ":authority", ":path", ":protocol"]);

function checkName(name: string, from: number): void {
  if (name.length <= from) throw new Malformed("empty field name");
  for (let i = from; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 128 || NAME_CHAR[c] !== 1) throw new Malformed(`invalid field name: ${name}`);
  }
}

function checkValue(name: string, value: string): void {
  const n = value.length;
  if (n === 0) return;
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(n - 1);
  if (first === 32 || first === 9 || last === 32 || last === 9) throw new Malformed(`whitespace around the value of ${name}`);
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c === 0 || c === 10 || c === 13) throw new Malformed(`invalid character in the value of ${name}`);
  }
}

/**
 * The fields of a request's header block (`list`: name, value, …) as the header object
 * requestHead (headers.ts) reads. Throws {@link Malformed}.
 */
export function requestFields(list: readonly string[], connectProtocol: boolean): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  let regular = false;
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!;
    const value = list[i + 1]!;
    if (name.charCodeAt(0) === 58) {
      if (regular) throw new Malformed("pseudo-header after a regular field");
      if (!PSEUDO.has(name)) throw new Malformed(`unknown pseudo-header ${name}`);
      if (out[name] !== undefined) throw new Malformed(`repeated ${name}`);
      if (name === ":protocol" && !connectProtocol) throw new Malformed(":protocol without extended CONNECT");
      checkValue(name, value);
      out[name] = value;
      continue;
    }
    regular = true;
    checkName(name, 0);
    checkValue(name, value);
    if (CONNECTION_SPECIFIC.has(name)) throw new Malformed(`connection-specific field ${name}`);
    if (name === "te" && value !== "trailers") throw new Malformed("te other than trailers");
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (typeof prev === "string") out[name] = [prev, value];
    else prev.push(value);
  }
  const method = out[":method"];
  if (method === undefined) throw new Malformed("no :method");
  if (method === "CONNECT") {
    if (out[":protocol"] !== undefined) {
      // Extended CONNECT (RFC 8441 §4): :scheme, :path and :authority as for any request.
      if (out[":scheme"] === undefined || out[":path"] === undefined || out[":authority"] === undefined) {
        throw new Malformed("extended CONNECT without :scheme, :path or :authority");
      }
    } else if (out[":scheme"] !== undefined || out[":path"] !== undefined || out[":authority"] === undefined) {
      throw new Malformed("CONNECT with :scheme or :path, or without :authority");
    }
  } else {
    if (out[":protocol"] !== undefined) throw new Malformed(":protocol on a method other than CONNECT");
    if (out[":scheme"] === undefined || out[":path"] === undefined || out[":path"] === "") {
      throw new Malformed("no :scheme or :path");
    }
  }
  return out;
}

/** Trailers: regular fields only (§8.1). */
export function checkTrailers(list: readonly string[]): void {
  for (let i = 0; i < list.length; i += 2) {
    if (list[i]!.charCodeAt(0) === 58) throw new Malformed("pseudo-header in trailers");
    checkName(list[i]!, 0);
    checkValue(list[i]!, list[i + 1]!);
  }
}

/** Not sent over HTTP/2 (connection-specific, or framing that DATA frames carry). */
function dropped(name: string): boolean {
  return CONNECTION_SPECIFIC.has(name) || name === "content-length" || name === "te" || name.charCodeAt(0) === 58;
}

/**
 * A response head: `:status`, the headers, and `content-length` when `length` is known. Returns
 * false for a field HTTP/2 cannot carry (a name with upper-case letters left after lower-casing
 * is impossible; an empty name is not): the stream is then reset.
 */
export function encodeResponse(
  enc: HpackEncoder,
  status: number,
  headers: readonly string[] | HeaderBlock,
  length: number,
  skip?: string,
): void {
  enc.reset();
  enc.status(status);
  if (!Array.isArray(headers)) encodeBlock(enc, headers as HeaderBlock, skip);
  else {
    const pairs = headers as readonly string[];
    for (let i = 0; i < pairs.length; i += 2) {
      const name = pairs[i]!.toLowerCase();
      if (!dropped(name) && name !== skip) enc.field(name, pairs[i + 1]!);
    }
  }
  if (length >= 0 && status !== 204 && status !== 304) enc.field("content-length", String(length));
}

/** A backend's header lines kept as bytes (checked by the response parser): names interned, values copied. */
function encodeBlock(enc: HpackEncoder, block: HeaderBlock, skip: string | undefined): void {
  const buf = block.buf;
  const runs = block.runs;
  for (let r = 0; r < runs.length; r += 2) {
    const base = runs[r]!;
    const end = runs[r + 1]!;
    for (let i = base; i < end;) {
      let colon = i;
      while (buf[colon] !== 58) colon++;
      let eol = colon;
      while (eol < end && buf[eol] !== 13) eol++;
      let vs = colon + 1;
      let ve = eol;
      while (vs < ve && (buf[vs] === 32 || buf[vs] === 9)) vs++;
      while (ve > vs && (buf[ve - 1] === 32 || buf[ve - 1] === 9)) ve--;
      // A common name comes back interned; any other as "" (sliced from no text): written as bytes,
      // unless it may be one HTTP/2 does not carry (te, upgrade, transfer-encoding, proxy-connection) or `skip`.
      let name = headerName(buf, i, colon, "", i);
      const n = colon - i;
      if (name === "" && (n === 2 || n === 7 || n === 16 || n === 17 || n === skip?.length)) {
        name = buf.toString("latin1", i, colon).toLowerCase();
      }
      if (name === "") enc.rawField(buf, i, colon, vs, ve);
      else if (!dropped(name) && name !== skip) enc.fieldBytes(name, buf, vs, ve);
      i = eol + 2;
    }
  }
}

// HPACK (RFC 7541) as Fulcrum's HTTP/2 layer decodes it: the RFC's own examples (Appendix C,
// with the dynamic table they build), Huffman strings, table size updates, and blocks that must
// fail (COMPRESSION_ERROR); and the encoder's blocks read back by the decoder.
import { Buffer } from "node:buffer";
import { describe, expect, test } from "bun:test";
import { HpackDecoder, HpackEncoder, HpackError } from "../../core/http2/hpack.ts";
import { huffmanDecode, huffmanEncode } from "../../core/http2/huffman.ts";

function decode(d: HpackDecoder, hex: string): [string, string][] {
  const b = Buffer.from(hex.replace(/\s+/g, ""), "hex");
  const out: [string, string][] = [];
  d.decode(b, 0, b.length, (n, v) => out.push([n, v]));
  return out;
}

describe("HPACK decoder", () => {
  test("RFC 7541 C.3: requests without Huffman, sharing a dynamic table", () => {
    const d = new HpackDecoder();
    expect(decode(d, "828684410f7777772e6578616d706c652e636f6d")).toEqual([
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
    ]);
    expect(d.size).toBe(57);
    expect(decode(d, "828684be58086e6f2d6361636865")).toEqual([
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
      ["cache-control", "no-cache"],
    ]);
    expect(d.size).toBe(110);
    expect(decode(d, "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565")).toEqual([
      [":method", "GET"],
      [":scheme", "https"],
      [":path", "/index.html"],
      [":authority", "www.example.com"],
      ["custom-key", "custom-value"],
    ]);
    expect(d.size).toBe(164);
  });

  test("RFC 7541 C.4: the same requests with Huffman strings", () => {
    const d = new HpackDecoder();
    expect(decode(d, "828684418cf1e3c2e5f23a6ba0ab90f4ff")[3]).toEqual([":authority", "www.example.com"]);
    expect(decode(d, "828684be5886a8eb10649cbf")[4]).toEqual(["cache-control", "no-cache"]);
    expect(decode(d, "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf")[4]).toEqual(["custom-key", "custom-value"]);
    expect(d.size).toBe(164);
  });

  test("Huffman: every byte value round-trips; EOS and bad padding are refused", () => {
    let all = "";
    for (let i = 0; i < 256; i++) all += String.fromCharCode(i);
    const e = huffmanEncode(all);
    expect(huffmanDecode(e, 0, e.length)).toBe(all);
    // "a" is 00011 (5 bits); padding with zeros is not a prefix of EOS.
    expect(huffmanDecode(new Uint8Array([0x18]), 0, 1)).toBeUndefined();
    expect(huffmanDecode(new Uint8Array([0x1f]), 0, 1)).toBe("a");
    // 8 bits or more of padding: refused.
    expect(huffmanDecode(new Uint8Array([0x1f, 0xff]), 0, 2)).toBeUndefined();
  });

  test("a table size update evicts; a larger one than allowed, or one after a field, fails", () => {
    const d = new HpackDecoder();
    decode(d, "828684410f7777772e6578616d706c652e636f6d");
    expect(d.size).toBe(57);
    // Size update to 0 (001 00000), then an indexed field: the entry is gone.
    expect(decode(d, "2082")).toEqual([[":method", "GET"]]);
    expect(d.size).toBe(0);
    expect(() => decode(d, "be")).toThrow(HpackError);
    // Back to 4096 (001 11111 + 4065 as 7-bit groups: e1 1f).
    expect(() => decode(new HpackDecoder(), "3fe11f82")).not.toThrow();
    // 4097: over the SETTINGS_HEADER_TABLE_SIZE this side allows.
    expect(() => decode(new HpackDecoder(), "3fe21f")).toThrow(HpackError);
    expect(() => decode(new HpackDecoder(), "8220")).toThrow(HpackError);
  });

  test("index 0, an index past the table, truncated strings and integers fail", () => {
    for (const hex of ["80", "ff00", "c0", "0f", "000a61", "40ff", "04ff8080808080"]) {
      expect(() => decode(new HpackDecoder(), hex)).toThrow(HpackError);
    }
  });

  test("an entry larger than the table empties it and is not added", () => {
    const d = new HpackDecoder();
    decode(d, "828684410f7777772e6578616d706c652e636f6d");
    const big = "v".repeat(4100);
    const b = Buffer.concat([Buffer.from([0x40, 1, 0x78, 0x7f]), Buffer.from([0x85, 0x1f]), Buffer.from(big)]);
    const got: string[] = [];
    d.decode(b, 0, b.length, (n, v) => got.push(n, v.length.toString()));
    expect(got).toEqual(["x", "4100"]);
    expect(d.size).toBe(0);
  });
});

describe("HPACK encoder", () => {
  test("a response head decodes back: indexed status, static names, new names, long values", () => {
    const e = new HpackEncoder();
    e.reset();
    e.status(200);
    e.field("content-type", "text/plain");
    e.field("x-custom", "v".repeat(300));
    e.field("set-cookie", "a=1");
    e.fieldBytes("etag", Buffer.from('  "abc"  '), 2, 7);
    const out: [string, string][] = [];
    new HpackDecoder().decode(e.buf, 0, e.len, (n, v) => out.push([n, v]));
    expect(out).toEqual([
      [":status", "200"],
      ["content-type", "text/plain"],
      ["x-custom", "v".repeat(300)],
      ["set-cookie", "a=1"],
      ["etag", '"abc"'],
    ]);
    e.reset();
    e.status(418);
    const s: [string, string][] = [];
    new HpackDecoder().decode(e.buf, 0, e.len, (n, v) => s.push([n, v]));
    expect(s).toEqual([[":status", "418"]]);
  });
});

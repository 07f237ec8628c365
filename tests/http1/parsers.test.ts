import { describe, expect, test } from "bun:test";
import { Buffer } from "node:buffer";
import { MAX_HEAD, ParseError, parseHead } from "../../core/http1/response.ts";
import { connectionTokens, downstreamRaw, upstreamHeadersBlock, upstreamHeadersRaw } from "../../core/http1/headers.ts";
import { ChunkedDecoder } from "../../core/http1/chunked.ts";
import { MAX_TARGET, normalizeTarget, parseRequestHead, type RequestError } from "../../core/http1/request.ts";

function head(text: string) {
  const buf = Buffer.from(`${text}\r\n\r\nBODY`, "latin1");
  const h = parseHead(buf, 0)!;
  expect(h.end).toBe(buf.length - 4);
  return h;
}

function decode(text: string | Buffer, pieces = 1): { body: string; used: number; done: boolean } {
  const buf = typeof text === "string" ? Buffer.from(text, "latin1") : text;
  const d = new ChunkedDecoder();
  const parts: Uint8Array[] = [];
  let used = 0;
  // Feed in `pieces` slices to exercise state kept across reads.
  const step = Math.ceil(buf.length / pieces);
  for (let off = 0; off < buf.length && !d.done; off += step) {
    used = d.feed(buf, off, Math.min(buf.length, off + step), parts);
  }
  return { body: Buffer.concat(parts).toString("latin1"), used, done: d.done };
}

describe("response head parsing", () => {
  test("a head whose bytes were written over (spend) is not read from them: headers read before are kept, others throw", () => {
    const read = head("HTTP/1.1 200 OK\r\nX-A: one");
    expect(read.rawHeaders).toEqual(["x-a", "one"]);
    read.spend();
    expect(read.rawHeaders).toEqual(["x-a", "one"]);
    expect(() => read.block).toThrow(/written over/);
    const unread = head("HTTP/1.1 200 OK\r\nX-A: one");
    unread.spend();
    expect(() => unread.rawHeaders).toThrow(/written over/);
  });

  test("status line, headers lower-cased in order, OWS trimmed, value bytes kept (obs-text)", () => {
    const h = head("HTTP/1.1 404 Not Found\r\nX-A:  one \r\nContent-Length: 3\r\nX-Latin: caf\xe9");
    expect(h).toMatchObject({ status: 404, statusText: "Not Found", contentLength: 3, chunked: false, close: false });
    expect(h.rawHeaders).toEqual(["x-a", "one", "content-length", "3", "x-latin", "caf\xe9"]);
  });

  test("a status line without a reason phrase is accepted", () => {
    expect(head("HTTP/1.1 204").statusText).toBe("");
    expect(head("HTTP/1.1 204 ").statusText).toBe("");
  });

  test("status lines are read as RFC 9112's grammar says (checked against a regular expression of it)", () => {
    const grammar = /^HTTP\/1\.([01]) ([1-5]\d\d)(?: (.*))?$/s;
    const pieces = [
      "HTTP/1.1",
      "HTTP/1.0",
      "HTTP/1.2",
      "HTTP/1",
      "http/1.1",
      " ",
      "  ",
      "200",
      "599",
      "600",
      "099",
      "1",
      "20",
      "2000",
      "OK",
      "Not Found",
      "\xe9",
      "x",
      "",
    ];
    let seed = 11;
    const next = () => ((seed ^= seed << 13), (seed ^= seed >>> 17), (seed ^= seed << 5), seed >>> 0);
    for (let i = 0; i < 5000; i++) {
      let line = "";
      for (let k = next() % 5; k >= 0; k--) line += pieces[next() % pieces.length];
      const m = grammar.exec(line);
      let got: { status: number; statusText: string } | "rejected";
      try {
        const h = head(`${line}\r\nContent-Length: 0`);
        got = { status: h.status, statusText: h.statusText };
      } catch (e) {
        if (!(e instanceof ParseError)) throw e;
        got = "rejected";
      }
      expect({ line, got }).toEqual({ line, got: m === null ? "rejected" : { status: Number(m[2]), statusText: m[3] ?? "" } });
    }
  });

  test("the lines to forward as bytes are the headers downstreamRaw keeps; rawHeaders are read as the grammar says (5000 generated heads)", () => {
    const names = [
      "X-A",
      "x-b",
      "Content-Type",
      "Date",
      "DATE",
      "Set-Cookie",
      "Keep-Alive",
      "keep-alive",
      "TE",
      "Trailer",
      "Upgrade",
      "Proxy-Connection",
      "Proxy-Authenticate",
      "proxy-authorization",
      "Transfer-Encoding",
      "Content-Length",
      "Connection",
      "Server",
      "X-Hop",
    ];
    const values = [
      "v",
      "",
      " spaced ",
      "\tx\t",
      "caf\xe9",
      "a, b",
      "keep-alive",
      "Keep-Alive",
      "close",
      "x-hop",
      "X-A, x-b",
      "3",
      "chunked",
    ];
    let seed = 29;
    const next = () => ((seed ^= seed << 13), (seed ^= seed >>> 17), (seed ^= seed << 5), seed >>> 0);
    let viaBytes = 0;
    for (let i = 0; i < 5000; i++) {
      const lines: [string, string][] = [];
      for (let k = next() % 9; k > 0; k--) lines.push([names[next() % names.length]!, values[next() % values.length]!]);
      const text = `HTTP/1.1 200 OK\r\n${lines.map(([n, v]) => `${n}:${v}\r\n`).join("")}\r\n`;
      let h: ReturnType<typeof parseHead>;
      try {
        h = parseHead(Buffer.from(text, "latin1"), 0);
      } catch (e) {
        if (!(e instanceof ParseError)) throw e;
        continue; // framing the parser refuses (e.g. two Content-Lengths): the same before and after
      }
      // rawHeaders: lower-cased names, values without surrounding spaces and tabs.
      const expected = lines.flatMap(([n, v]) => [n.toLowerCase(), v.replace(/^[ \t]+|[ \t]+$/g, "")]);
      expect({ text, raw: h!.rawHeaders }).toEqual({ text, raw: expected });
      const block = h!.block;
      const kept = downstreamRaw(h!.rawHeaders).headers;
      if (block === undefined) {
        // Only when Connection names a header to drop.
        expect(connectionTokens(lines.filter(([n]) => n === "Connection").map(([, v]) => v.toLowerCase()).join(", "))).toBeDefined();
        continue;
      }
      viaBytes++;
      let bytes = "";
      for (let r = 0; r < block.runs.length; r += 2) bytes += block.buf.toString("latin1", block.runs[r], block.runs[r + 1]);
      expect(bytes.length).toBe(block.size);
      const forwarded = bytes === "" ? [] : bytes.slice(0, -2).split("\r\n").flatMap((l) => {
        const c = l.indexOf(":");
        return [l.slice(0, c).toLowerCase(), l.slice(c + 1).replace(/^[ \t]+|[ \t]+$/g, "")];
      });
      expect({ text, forwarded }).toEqual({ text, forwarded: kept });
      expect(block.hasDate).toBe(lines.some(([n]) => n.toLowerCase() === "date"));
    }
    expect(viaBytes).toBeGreaterThan(1000);
  });

  test("detach() keeps only the head's bytes: lines, rawHeaders and framing unchanged", () => {
    const text = "HTTP/1.1 200 OK\r\nServer: x\r\nConnection: keep-alive\r\nContent-Length: 5\r\nX-Y: z\r\n\r\n";
    const chunk = Buffer.from(`junk${text}${"b".repeat(100_000)}`, "latin1");
    const h = parseHead(chunk, 4)!;
    const lines = (b: NonNullable<typeof h.block>) =>
      b.runs.map((_, i) => (i % 2 ? "" : b.buf.toString("latin1", b.runs[i], b.runs[i + 1]))).join("");
    const before = lines(h.block!);
    h.detach();
    expect(h.buf.length).toBe(text.length);
    expect(h.buf).not.toBe(chunk);
    chunk.fill(0); // the chunk's memory is reused: the head must not see it
    expect(lines(h.block!)).toBe(before);
    expect(before).toBe("Server: x\r\nX-Y: z\r\n");
    expect(h.rawHeaders).toEqual(["server", "x", "connection", "keep-alive", "content-length", "5", "x-y", "z"]);
    expect(h.end).toBe(text.length);
  });

  test("HTTP/1.0 and Connection: close mark the connection as not reusable", () => {
    expect(head("HTTP/1.0 200 OK\r\nContent-Length: 0").close).toBe(true);
    expect(head("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close").close).toBe(true);
    expect(head("HTTP/1.1 200 OK\r\nConnection: keep-alive").close).toBe(false);
  });

  test("chunked framing is recognised, case-insensitively", () => {
    expect(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked").chunked).toBe(true);
  });

  const rejected: [string, string][] = [
    ["a bad status line", "HTTP/1.1 2000 OK"],
    ["an unknown version", "HTTP/2.0 200 OK"],
    ["a status under 100", "HTTP/1.1 099 Odd"],
    ["a status over 599 (no Response can carry it)", "HTTP/1.1 600 Odd"],
    ["a short status", "HTTP/1.1 20"],
    ["two spaces before the status", "HTTP/1.1  200 OK"],
    ["a status with a letter", "HTTP/1.1 2x0 OK"],
    ["a status run into its reason", "HTTP/1.1 200OK"],
    ["a lower-case protocol name", "http/1.1 200 OK"],
    ["another protocol", "HTTPS/1.1 200 OK"],
    ["obs-fold (a continuation line)", "HTTP/1.1 200 OK\r\nX-A: one\r\n two"],
    ["a space before the colon", "HTTP/1.1 200 OK\r\nX-A : one"],
    ["an empty header name", "HTTP/1.1 200 OK\r\n: one"],
    ["a line without a colon", "HTTP/1.1 200 OK\r\nnonsense"],
    ["a NUL in a value", "HTTP/1.1 200 OK\r\nX-A: o\x00ne"],
    ["a bare CR in a value", "HTTP/1.1 200 OK\r\nX-A: o\rne"],
    ["a control character in the reason", "HTTP/1.1 200 O\x01K"],
    ["conflicting Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4"],
    ["duplicate Content-Length, even equal", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3"],
    ["a Content-Length list", "HTTP/1.1 200 OK\r\nContent-Length: 3, 3"],
    ["a negative Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: -1"],
    ["a non-numeric Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 0x10"],
    ["a huge Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999"],
    ["Transfer-Encoding with Content-Length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3"],
    ["a Transfer-Encoding other than chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked"],
    ["chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"],
  ];
  for (const [what, text] of rejected) {
    test(`rejects ${what}`, () => {
      expect(() => head(text)).toThrow(ParseError);
    });
  }

  test("a bare LF as line ending is rejected, in the status line or a header", () => {
    expect(() => parseHead(Buffer.from("HTTP/1.1 200 OK\nX-A: 1\r\n\r\n"), 0)).toThrow(ParseError);
    expect(() => parseHead(Buffer.from("HTTP/1.1 200 OK\r\nX-A: 1\n\r\n"), 0)).toThrow(ParseError);
  });

  test("a head that has not all arrived is undefined, at any cut; one over 64 KiB is an error", () => {
    const full = "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n";
    for (let cut = 0; cut < full.length; cut++) expect(parseHead(Buffer.from(full.slice(0, cut)), 0)).toBeUndefined();
    expect(parseHead(Buffer.from(`xx${full}`), 2)?.end).toBe(full.length + 2);
    const big = Buffer.from(`HTTP/1.1 200 OK\r\nX-A: ${"a".repeat(MAX_HEAD)}`);
    expect(() => parseHead(big, 0)).toThrow(/larger than/);
  });

  test("many headers (past the scratch size) are all kept", () => {
    const lines = Array.from({ length: 300 }, (_, i) => `X-${i}: v${i}`).join("\r\n");
    const h = head(`HTTP/1.1 200 OK\r\n${lines}`);
    expect(h.rawHeaders.length).toBe(600);
    expect(h.rawHeaders.slice(-2)).toEqual(["x-299", "v299"]);
  });
});

describe("chunked body decoding", () => {
  test("decodes sizes in hex, skips extensions, drops trailers, stops after the last chunk", () => {
    const text = "5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
    for (const pieces of [1, 3, text.length]) {
      const r = decode(text, pieces);
      expect(r).toMatchObject({ body: "hello0123456789", done: true });
    }
    expect(decode(text).used).toBe(text.length - 4);
  });

  test("is not done until the final CRLF arrives", () => {
    expect(decode("3\r\nabc\r\n0\r\n").done).toBe(false);
  });

  const rejected: [string, string][] = [
    ["a missing size", "\r\nabc\r\n0\r\n\r\n"],
    ["a non-hex size", "g\r\nabc\r\n0\r\n\r\n"],
    ["a signed size", "-3\r\nabc\r\n0\r\n\r\n"],
    ["a size over 52 bits", "fffffffffffffff\r\n"],
    ["data longer than its size", "2\r\nabc\r\n0\r\n\r\n"],
    ["a bare LF after the size", "3\nabc\r\n0\r\n\r\n"],
    ["a control character in an extension", "3;a=\x01\r\nabc\r\n0\r\n\r\n"],
    ["obs-fold in a trailer", "0\r\nX-T: 1\r\n folded\r\n\r\n"],
    ["a bare LF ending the body", "0\r\n\n"],
  ];
  for (const [what, text] of rejected) {
    test(`rejects ${what}`, () => {
      expect(() => decode(text)).toThrow(ParseError);
    });
  }
});

describe("request head parsing (the client-facing listener)", () => {
  const req = (text: string) => parseRequestHead(Buffer.from(text, "latin1"), 0);
  const status = (text: string) => {
    try {
      req(text);
      return 0;
    } catch (e) {
      return (e as RequestError).status;
    }
  };

  test("each request's Host as sent, byte for byte, when the one before had one of the same length", () => {
    // The parser reuses the last Host string when the bytes are the same: any other must not get it.
    const hosts = ["a.test", "a.test", "b.test", "a.tesT", "A.test", "a.test:1", "a.test", "[::1]:80", "[::2]:80"];
    expect(hosts.map((host) => req(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`)!.host)).toEqual(hosts);
    // Nor is a refused Host let through the second time.
    expect([status("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), status("GET / HTTP/1.1\r\nHost: a b\r\n\r\n")]).toEqual([400, 400]);
  });

  test("request line, lower-cased headers in order, framing and keep-alive", () => {
    const h = req("POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-A:  v \r\n\r\nabc")!;
    expect([h.method, h.target, h.minor, h.host, h.contentLength, h.chunked, h.keepAlive]).toEqual([
      "POST",
      "/a?b=1",
      1,
      "x",
      3,
      false,
      true,
    ]);
    expect(h.rawHeaders).toEqual(["host", "x", "content-length", "3", "x-a", "v"]);
    expect(h.end).toBe("POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-A:  v \r\n\r\n".length); // the body is not the head's
    expect(req("GET / HTTP/1.0\r\n\r\n")!.keepAlive).toBe(false);
    expect(req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")!.keepAlive).toBe(true);
    expect(req("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n")!.keepAlive).toBe(false);
  });

  test("a head not all there yet is undefined, at any cut", () => {
    const text = "GET /p HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\n";
    for (let i = 0; i < text.length; i++) expect(req(text.slice(0, i))).toBeUndefined();
  });

  test("absolute form: its authority is the host, its path the target", () => {
    const h = req("GET http://example.com:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n")!;
    expect([h.host, h.target]).toEqual(["example.com:8080", "/p?q"]);
  });

  test.each([
    ["two Content-Lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400],
    ["Content-Length and chunked", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
    ["chunked not last", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400],
    ["another coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501],
    ["a signed length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n", 400],
    ["no Host in 1.1", "GET / HTTP/1.1\r\n\r\n", 400],
    ["two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
    ["obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n", 400],
    ["space before the colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400],
    ["NUL in a value", "GET / HTTP/1.1\r\nHost: x\r\nA: b\0c\r\n\r\n", 400],
    ["bare LF", "GET / HTTP/1.1\nHost: x\r\n\r\n", 400],
    ["a fragment", "GET /admin#x HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["a backslash in the path", "GET /a\\..\\admin HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505],
    ["Expect other than 100-continue", "GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", 417],
    ["CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501],
    ["a target too long", `GET /${"a".repeat(MAX_TARGET + 1)} HTTP/1.1\r\nHost: x\r\n\r\n`, 414],
  ])("rejects %s", (_what, text, expected) => {
    expect(status(text)).toBe(expected);
  });

  test("methods are case-sensitive tokens: known ones come back as sent, others too", () => {
    for (const m of ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "Post", "pUT", "GETX", "PURGE", "M-SEARCH"]) {
      expect(req(`${m} / HTTP/1.1\r\nHost: x\r\n\r\n`)!.method).toBe(m);
    }
  });

  test("the lines forwarded as bytes with the proxy's own headers say what upstreamHeadersRaw says (5000 generated heads)", () => {
    const names = [
      "X-A",
      "x-a",
      "Accept",
      "Cookie",
      "Keep-Alive",
      "TE",
      "Upgrade",
      "Trailer",
      "Proxy-Connection",
      "Proxy-Authorization",
      "X-Forwarded-For",
      "x-forwarded-for",
      "X-Forwarded-Proto",
      "X-Forwarded-Host",
      "Content-Length",
      "Connection",
      "Expect",
      "User-Agent",
      "TraceParent",
    ];
    const values: Record<string, string[]> = {
      "Content-Length": ["0", "12", "007"],
      Connection: ["keep-alive", "close", "Keep-Alive", "keep-alive, X-A", "x-a"],
      Expect: ["100-continue"],
      default: ["v", "", " spaced ", "\tx\t", "caf\xe9", "a, b", "1.2.3.4"],
    };
    let seed = 47;
    const next = () => ((seed ^= seed << 13), (seed ^= seed >>> 17), (seed ^= seed << 5), seed >>> 0);
    const pick = <T>(a: T[]) => a[next() % a.length]!;
    let viaBytes = 0;
    for (let i = 0; i < 5000; i++) {
      const lines: string[] = [];
      for (let k = next() % 8; k > 0; k--) {
        const n = pick(names);
        lines.push(`${n}:${pick(values[n] ?? values.default!)}`);
      }
      lines.splice(next() % (lines.length + 1), 0, `Host: ${pick(["a.example", "b:8080", ""])}`);
      const text = `POST /p HTTP/1.1\r\n${lines.map((l) => `${l}\r\n`).join("")}\r\n`;
      let h: ReturnType<typeof parseRequestHead>;
      try {
        h = parseRequestHead(Buffer.from(text, "latin1"), 0);
      } catch {
        continue; // refused framing (two Content-Lengths, Expect on 1.0…): the same either way
      }
      // header() read from the bytes (before rawHeaders exist), then from the strings.
      const asked = ["x-a", "accept", "cookie", "host", "user-agent", "traceparent", "x-forwarded-for", "absent", "keep-alive"];
      const fromBytes = asked.map((n) => h!.header(n));
      const fromStrings = asked.map((n) => {
        const r = h!.rawHeaders;
        const v = r.filter((_, k) => k % 2 === 1 && r[k - 1] === n);
        return v.length ? v.join(n === "cookie" ? "; " : ", ") : null;
      });
      expect({ text, fromBytes }).toEqual({ text, fromBytes: fromStrings });
      expect(asked.map((n) => h!.header(n))).toEqual(fromStrings);
      const info = { clientIp: "10.0.0.9", proto: "http", hostOverride: undefined };
      const expected = upstreamHeadersRaw(h!.rawHeaders, info);
      const block = h!.block;
      if (block === undefined) continue;
      viaBytes++;
      const got: Record<string, string> = { ...upstreamHeadersBlock(h!.hostLine, h!.forwardedFor, h!.contentLength, info) };
      for (let r = 0; r < block.runs.length; r += 2) {
        for (const l of block.buf.toString("latin1", block.runs[r], block.runs[r + 1]! - 2).split("\r\n")) {
          const c = l.indexOf(":");
          const name = l.slice(0, c).toLowerCase();
          const value = l.slice(c + 1).replace(/^[ \t]+|[ \t]+$/g, "");
          got[name] = got[name] === undefined ? value : `${got[name]}, ${value}`;
        }
      }
      // Content-Length as a number: "007" goes out as "7".
      if (expected["content-length"] !== undefined) expected["content-length"] = String(Number(expected["content-length"]));
      const sorted = (o: Record<string, string>) => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1));
      expect({ text, got: sorted(got) }).toEqual({ text, got: sorted(expected) });
    }
    expect(viaBytes).toBeGreaterThan(1000);
  });

  test("dot segments are resolved (also %2e), the query is left alone", () => {
    expect(normalizeTarget("/x/../admin")).toBe("/admin");
    expect(normalizeTarget("/./admin/./users")).toBe("/admin/users");
    expect(normalizeTarget("/a/%2e%2E/b?x=/../")).toBe("/b?x=/../");
    expect(normalizeTarget("/a/b/..")).toBe("/a/");
    expect(normalizeTarget("/..")).toBe("/");
    expect(normalizeTarget("/a/.b/..c")).toBe("/a/.b/..c");
    expect(req("GET /x/../admin HTTP/1.1\r\nHost: x\r\n\r\n")!.target).toBe("/admin");
  });
});

describe("header names (core/http1/names.ts)", () => {
  const parse = (name: string) => parseHead(Buffer.from(`HTTP/1.1 200 OK\r\n${name}: v\r\nContent-Length: 0\r\n\r\n`), 0)!.rawHeaders[0];
  test("common names in any case come back lower-case", () => {
    for (const n of ["Content-Type", "CONTENT-TYPE", "content-type", "cOnTeNt-TyPe"]) expect(parse(n)).toBe("content-type");
    expect(parse("ETag")).toBe("etag");
    expect(parse("TE")).toBe("te");
  });
  test("a name of a common name's length that differs in one byte is not taken for it", () => {
    expect(parse("Content-Typf")).toBe("content-typf");
    expect(parse("Content_Type")).toBe("content_type");
    expect(parse("X-Backend")).toBe("x-backend");
    expect(parse("x-lower-already")).toBe("x-lower-already");
    expect(parse("Accept-Ranges1")).toBe("accept-ranges1");
  });
});

/**
 * Conformance of the client-facing HTTP/1.1 side (see conformance.ts): request smuggling by
 * Content-Length and Transfer-Encoding, header syntax, the request line.
 */
import { describe, expect, test } from "bun:test";
import { Buffer } from "node:buffer";
import type { Outcome } from "../helpers/raw-client.ts";
import { be, bodyText, conformanceSuite, exchange, expectRejected, expectStillServingAndNoSmuggling, SMUGGLED } from "./conformance.ts";

conformanceSuite();

describe("request smuggling: Content-Length", () => {
  test("two different Content-Length headers → 400, connection closed", async () => {
    await expectRejected(`POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 41\r\n\r\nhello${SMUGGLED}`);
  });

  const bad: [string, string][] = [
    ["non-numeric", "abc"],
    ["negative", "-1"],
    ["with a plus sign", "+5"],
    ["a list of different values", " 5, 6"],
    ["a list of equal values in one field", "5, 5"],
    ["hexadecimal", "0x5"],
    ["with an exponent", "5e0"],
    ["digits with a space inside", "5 5"],
    ["larger than any safe integer", "99999999999999999999999"],
  ];
  for (const [what, value] of bad) {
    test(`Content-Length ${what} (${JSON.stringify(value)}) → 400, closed, no smuggled request`, async () => {
      await expectRejected(`POST /a HTTP/1.1\r\nHost: x\r\nContent-Length:${value}\r\n\r\nhello${SMUGGLED}`);
    });
  }
});

describe("request smuggling: Transfer-Encoding", () => {
  // RFC 9112 §6.3: with both, Transfer-Encoding wins and the server MUST close after the
  // response; rejecting with 400 is the safer choice. Either way the backend never sees both
  // headers and never sees what follows the chunked body.
  const both: [string, string][] = [
    ["Content-Length then Transfer-Encoding", "Content-Length: 4\r\nTransfer-Encoding: chunked"],
    ["Transfer-Encoding then Content-Length", "Transfer-Encoding: chunked\r\nContent-Length: 4"],
    ["Content-Length: 0 with Transfer-Encoding", "Content-Length: 0\r\nTransfer-Encoding: chunked"],
  ];
  for (const [what, headers] of both) {
    test(`${what}: 400, or forwarded de-chunked and closed; never the trailing request`, async () => {
      const ex = await exchange(`POST /both HTTP/1.1\r\nHost: x\r\n${headers}\r\n\r\n5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`);
      expect<Outcome[]>([400, 200]).toContain(ex.outcome);
      expect(ex.closedAfter).toBe(true);
      if (ex.outcome === 200) {
        // Forwarded: exactly once, de-chunked, with one framing header.
        const fwd = be.requests.filter((q) => q.target === "/both");
        expect(fwd).toHaveLength(1);
        expect(fwd[0]!.body.toString()).toBe("hello");
      } else {
        expect(be.requests).toEqual([]);
      }
      await expectStillServingAndNoSmuggling();
    });
  }

  // A transfer coding Fulcrum does not implement, or chunked not last (the body's end cannot be
  // found): 400 or 501 (RFC 9112 §6.1), and the connection closed.
  const codings: [string, string][] = [
    ["gzip", "Transfer-Encoding: gzip"],
    ["chunked, gzip (chunked not last)", "Transfer-Encoding: chunked, gzip"],
    ["gzip, chunked (a coding Fulcrum does not decode)", "Transfer-Encoding: gzip, chunked"],
    ["xchunked", "Transfer-Encoding: xchunked"],
    ["chunked, then a second field with another coding", "Transfer-Encoding: chunked\r\nTransfer-Encoding: x"],
    ["chunked twice (two fields)", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"],
    ["identity", "Transfer-Encoding: identity"],
  ];
  for (const [what, header] of codings) {
    test(`Transfer-Encoding ${what} → 400 or 501, closed`, async () => {
      await expectRejected(`POST /a HTTP/1.1\r\nHost: x\r\n${header}\r\n\r\n5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`, [400, 501]);
    });
  }

  test("Transfer-Encoding in an HTTP/1.0 request → 400, closed (RFC 9112 §6.1: faulty framing)", async () => {
    await expectRejected(`POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`);
  });

  test("Transfer-Encoding: Chunked (any case) is chunked framing: forwarded de-chunked", async () => {
    const ex = await exchange("POST /case HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    expect(ex.outcome).toBe(200);
    expect(be.requests.find((q) => q.target === "/case")?.body.toString()).toBe("hello");
    // Kept alive, and the next request on the connection is the next answer.
    expect(ex.closedAfter).toBe(false);
    expect(bodyText(ex.sentinel!)).toBe("GET /sentinel");
    await expectStillServingAndNoSmuggling();
  });

  const chunks: [string, string][] = [
    ["a non-hex chunk size (zz)", "zz\r\nhello\r\n0\r\n\r\n"],
    ["a huge hex chunk size", "ffffffffffffffffffff1\r\nhello\r\n0\r\n\r\n"],
    ["a negative chunk size", "-5\r\nhello\r\n0\r\n\r\n"],
    ["a 0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"],
    ["chunk data not followed by CRLF", "5\r\nhelloXX0\r\n\r\n"],
    ["chunk data longer than its size", "3\r\nhello\r\n0\r\n\r\n"],
    ["a bare LF after the chunk size", "5\nhello\r\n0\r\n\r\n"],
    ["an empty chunk size line", "\r\nhello\r\n0\r\n\r\n"],
  ];
  for (const [what, body] of chunks) {
    test(`${what} → 400, closed, no smuggled request`, async () => {
      await expectRejected(`POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${body}${SMUGGLED}`);
    });
  }

  test("whitespace before a chunk extension (BWS): 400, or accepted and forwarded intact", async () => {
    const ex = await exchange(`POST /bws HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 ;ext=1\r\nhello\r\n0\r\n\r\n`);
    // RFC 9112 §7.1.1 allows BWS there, but parsers disagree about it: rejecting is the safe
    // choice (Bun.serve's), accepting is fine only if the body arrives exactly.
    expect<Outcome[]>([400, 200]).toContain(ex.outcome);
    if (ex.outcome === 200) expect(be.requests.find((q) => q.target === "/bws")?.body.toString()).toBe("hello");
    else expect(ex.closedAfter).toBe(true);
    await expectStillServingAndNoSmuggling();
  });
});

describe("header syntax", () => {
  const cases: [string, string][] = [
    ["a NUL byte in a header value", "X-A: a\x00b"],
    ["a bare CR inside a header value", "X-A: a\rb"],
    ["a bare LF inside the header block", "X-A: a\nX-B: b"],
    ["a space before the colon (Host : x)", "Host : y"],
    ["a space before the colon (another header)", "X-A : y"],
    ["a tab before the colon", "X-A\t: y"],
    ["obs-fold: a line starting with a space", "X-A: a\r\n  folded"],
    ["obs-fold: a line starting with a tab", "X-A: a\r\n\tfolded"],
    ["parentheses in a header name", "X(A): y"],
    ["a quote in a header name", 'X"A: y'],
    ["a space inside a header name", "X A: y"],
    ["a non-ASCII byte in a header name", "X-\xe9: y"],
    ["an empty header name", ": y"],
    ["a header line without a colon", "nocolon"],
  ];
  for (const [what, line] of cases) {
    test(`${what} → 400, closed`, async () => {
      await expectRejected(`GET /a HTTP/1.1\r\nHost: x\r\n${line}\r\n\r\n${SMUGGLED}`);
    });
  }

  test("obs-fold before Transfer-Encoding cannot hide it → 400", async () => {
    await expectRejected(
      `POST /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello${SMUGGLED}`,
    );
  });

  test("obs-text (bytes 0x80-0xff) in a header value is accepted and passed on as is", async () => {
    const ex = await exchange("GET /obs-text HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xe9\r\n\r\n");
    expect(ex.outcome).toBe(200);
    expect(be.requests.find((q) => q.target === "/obs-text")?.get("x-latin")).toBe("caf\xe9");
  });
});

describe("request line", () => {
  const bad: [string, string, Outcome[]][] = [
    ["an invalid method token", "G(T /a HTTP/1.1", [400]],
    ["a space inside the method", "GE T /a HTTP/1.1", [400]],
    ["two spaces after the method", "GET  /a HTTP/1.1", [400]],
    ["a space inside the target", "GET /a b HTTP/1.1", [400, 505]],
    // Without a version it would be HTTP/0.9, which nobody should speak any more.
    ["no HTTP version", "GET /a", [400, 505]],
    ["HTTP/2.0 in an HTTP/1 request line", "GET /a HTTP/2.0", [400, 505]],
    ["HTTP/3 in an HTTP/1 request line", "GET /a HTTP/3", [400, 505]],
    ["HTTP/1.2", "GET /a HTTP/1.2", [400, 505]],
    ["a lower-case protocol name (http/1.1)", "GET /a http/1.1", [400, 505]],
    ["a relative target (GET foo)", "GET foo HTTP/1.1", [400]],
    ["an asterisk target on GET", "GET * HTTP/1.1", [400]],
  ];
  for (const [what, line, allowed] of bad) {
    test(`${what} → ${allowed.join(" or ")}, closed`, async () => {
      await expectRejected(`${line}\r\nHost: x\r\n\r\n${SMUGGLED}`, allowed);
    });
  }

  test("garbage (a TLS ClientHello) → 400 or closed", async () => {
    const hello = Buffer.from("16030100a5010000a10303" + "ab".repeat(32) + "000020c02bc02f", "hex");
    // Either answer is safe: nothing can be parsed from it.
    await expectRejected(Buffer.concat([hello, Buffer.from("\r\n\r\n")]), [400, "closed"]);
  });

  test("garbage text → 400 or closed", async () => {
    await expectRejected("hello world, this is not http\r\n\r\n", [400, "closed"]);
  });

  test("an empty line before the request line: ignored (RFC 9112 §2.2 SHOULD) or 400", async () => {
    const ex = await exchange("\r\nGET /lead HTTP/1.1\r\nHost: x\r\n\r\n");
    // Bun.serve refuses it; serving it is what the RFC recommends. Both are safe.
    expect<Outcome[]>([400, 200]).toContain(ex.outcome);
    if (ex.outcome === 200) expect(bodyText(ex.first)).toBe("GET /lead");
    else expect(ex.closedAfter).toBe(true);
    await expectStillServingAndNoSmuggling();
  });

  test("an absolute-form target is proxied with its path and query", async () => {
    const ex = await exchange("GET http://example.com/p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    expect(ex.outcome).toBe(200);
    expect(bodyText(ex.first)).toBe("GET /p?q=1");
    const fwd = be.requests.find((q) => q.target === "/p?q=1")!;
    expect(fwd.get("host")).toBe("example.com");
    expect(bodyText(ex.sentinel!)).toBe("GET /sentinel");
  });

  // RFC 9112 §3.2.2: the target's authority replaces the Host line; nginx's $host does the same.
  // Both header paths: lines forwarded as bytes, and strings (Connection naming a header).
  for (const [path, extra] of [["/abs-bytes", ""], ["/abs-strings", "Connection: x-drop\r\nX-Drop: 1\r\n"], ["/abs-mw", ""]] as const) {
    test(`an absolute-form target's authority replaces a different Host line (${path})`, async () => {
      const ex = await exchange(`GET http://authority.test:8080${path} HTTP/1.1\r\nHost: other.test\r\n${extra}\r\n`);
      expect(ex.outcome).toBe(200);
      const fwd = be.requests.find((q) => q.target === path)!;
      expect(fwd.get("host")).toBe("authority.test:8080");
      expect(fwd.get("x-forwarded-host")).toBe("authority.test:8080");
      expect(fwd.get("x-drop")).toBeUndefined();
    });
  }
});

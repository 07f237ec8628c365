/**
 * The framing rules of issue "Correct under change and attack" (item 3), one by one: chunk
 * extensions and trailer fields (RFC 9112 §7.1.1, §7.1.2), fields refused in a trailer, no tab
 * after a Transfer-Encoding or Content-Length value, no pipelining after an upgrade Fulcrum does
 * not make, never an empty Host upstream, Cookie lines joined with "; ". The parser alone first,
 * then through a running Fulcrum to a recording backend. The differential test
 * (differential.test.ts) holds the same rules against llhttp over a corpus.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Buffer } from "node:buffer";
import { ChunkedDecoder } from "../../core/http1/chunked.ts";
import { parseRequestHead, RequestError } from "../../core/http1/request.ts";
import { ParseError } from "../../core/http1/response.ts";
import { startFulcrum, type InProcess } from "../helpers/fulcrum.ts";
import { RawClient, startRecordingBackend, type RecordingBackend } from "../helpers/raw-client.ts";

/** Decode a chunked body fed `step` bytes at a time; the body, or the error's message. */
function decode(text: string, step = text.length): { body: string; done: boolean } | string {
  const d = new ChunkedDecoder();
  const buf = Buffer.from(text, "latin1");
  const parts: Uint8Array[] = [];
  try {
    for (let i = 0; i < buf.length && !d.done; i += step) d.feed(buf, i, Math.min(buf.length, i + step), { push: (p) => parts.push(p) });
  } catch (e) {
    if (!(e instanceof ParseError)) throw e;
    return e.message;
  }
  return { body: Buffer.concat(parts).toString("latin1"), done: d.done };
}

const status = (text: string): number => {
  try {
    parseRequestHead(Buffer.from(text, "latin1"), 0);
    return 0;
  } catch (e) {
    return (e as RequestError).status;
  }
};

describe("chunk extensions (RFC 9112 §7.1.1)", () => {
  const valid = [";a", ";a=b", ';a="b"', ';a="b c"', ';a="b\\"c"', ";a=b;c=d", ";a;b", ';a=""', ';a="\xe9"', ';a="\t"'];
  for (const ext of valid) {
    test(`accepted: 5${JSON.stringify(ext).slice(1, -1)}`, () => {
      for (const step of [1, 1000])
        expect(decode(`5${ext}\r\nhello\r\n0;${ext.slice(1)}\r\n\r\n`, step)).toEqual({ body: "hello", done: true });
    });
  }
  const invalid: [string, string][] = [
    ["no name (the issue's `2;`)", "2;\r\nab\r\n0\r\n\r\n"],
    ["an unterminated quoted string (the issue's `5;a=\"abc`)", '5;a="abc\r\nhello\r\n0\r\n\r\n'],
    ["a name that is not a token (the issue's `5;@=1`)", "5;@=1\r\nhello\r\n0\r\n\r\n"],
    ["an empty name before =", "5;=b\r\nhello\r\n0\r\n\r\n"],
    ["an empty value", "5;a=\r\nhello\r\n0\r\n\r\n"],
    ["a space after the semicolon", "5; a\r\nhello\r\n0\r\n\r\n"],
    ["a space before the semicolon", "5 ;a\r\nhello\r\n0\r\n\r\n"],
    ["a space after the size", "5 \r\nhello\r\n0\r\n\r\n"],
    ["a space around =", "5;a =b\r\nhello\r\n0\r\n\r\n"],
    ["a value that is not a token", "5;a=b/c\r\nhello\r\n0\r\n\r\n"],
    ["a character after a quoted string", '5;a="b"c\r\nhello\r\n0\r\n\r\n'],
    ["a trailing semicolon", "5;a;\r\nhello\r\n0\r\n\r\n"],
    ["DEL in a quoted string", '5;a="\x7f"\r\nhello\r\n0\r\n\r\n'],
    ["a bare LF ending the line", "5;a\nhello\r\n0\r\n\r\n"],
    ["more than 4 KiB", `5;a=${"b".repeat(4100)}\r\nhello\r\n0\r\n\r\n`],
  ];
  for (const [what, text] of invalid) {
    test(`refused: ${what}`, () => {
      expect(typeof decode(text)).toBe("string");
      expect(typeof decode(text, 1)).toBe("string");
    });
  }
  test("leading zeros of a size do not count toward its 13 digits", () => {
    expect(decode(`${"0".repeat(20)}5\r\nhello\r\n0\r\n\r\n`)).toEqual({ body: "hello", done: true });
    expect(typeof decode("10000000000000\r\n")).toBe("string");
  });
});

describe("trailer fields (RFC 9112 §7.1.2)", () => {
  const body = (trailer: string) => `5\r\nhello\r\n0\r\n${trailer}\r\n\r\n`;
  for (const t of ["X-T: 1", "X-T:1", "X-T: \xe9", "X-A: 1\r\nX-B: 2", "Trailer: x", "X-Content-Length: 5", "Hostname: y", "X-T:"]) {
    test(`accepted: ${JSON.stringify(t)}`, () => {
      for (const step of [1, 1000]) expect(decode(body(t), step)).toEqual({ body: "hello", done: true });
    });
  }
  const invalid: [string, string, string][] = [
    ["no colon (the issue's `foo`)", "foo", "invalid trailer field"],
    ["a space before the colon (the issue's `X-T : 1`)", "X-T : 1", "whitespace before the colon of a trailer field"],
    ["obs-fold", "X: a\r\n b", "obsolete line folding in trailer"],
    ["an empty name", ": v", "invalid trailer field name"],
    ["a control byte in the value", "X: a\x01b", "invalid character in trailer"],
    ["Content-Length (the issue's)", "Content-Length: 5", "content-length in a trailer"],
    ["content-length in another case", "cOnTeNt-LeNgTh: 0", "content-length in a trailer"],
    ["Transfer-Encoding", "Transfer-Encoding: chunked", "transfer-encoding in a trailer"],
    ["Host", "Host: y", "host in a trailer"],
    ["Connection", "Connection: close", "connection in a trailer"],
  ];
  for (const [what, t, message] of invalid) {
    test(`refused: ${what}`, () => {
      expect(decode(body(t))).toBe(message);
      expect(decode(body(t), 1)).toBe(message);
    });
  }
});

describe("request head", () => {
  const te = (value: string) => `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:${value}\r\nX: y\r\n\r\n`;
  test("Transfer-Encoding: a tab after chunked, or NBSP around it, is refused (the issue's `chunked<TAB>`)", () => {
    expect(status(te(" chunked\t"))).toBe(400);
    expect(status(te(" chunked \t"))).toBe(400);
    expect(status(te(" chunked\xa0"))).toBe(400);
    expect(status(te(" \xa0chunked"))).toBe(400);
    // The OWS llhttp takes: a tab before the value, spaces after it.
    expect(status(te("\tchunked"))).toBe(0);
    expect(status(te(" chunked "))).toBe(0);
    expect(status(`POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\t\r\n\r\n`)).toBe(400);
  });

  test("Content-Length: a tab after the digits is refused; leading zeros are read", () => {
    expect(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\t\r\n\r\n")).toBe(400);
    expect(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5 \r\n\r\n")).toBe(0);
    const h = parseRequestHead(Buffer.from(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${"0".repeat(30)}5\r\n\r\n`), 0)!;
    expect(h.contentLength).toBe(5);
  });

  test("an upgrade Fulcrum does not make ends the connection after its answer (nothing after it is read as requests)", () => {
    const keepAlive = (fields: string) => parseRequestHead(Buffer.from(`GET / HTTP/1.1\r\nHost: x\r\n${fields}\r\n`), 0)!.keepAlive;
    expect(keepAlive("Connection: Upgrade\r\nUpgrade: websocket\r\n")).toBe(false);
    expect(keepAlive("Connection: keep-alive, upgrade\r\nUpgrade: h2c\r\n")).toBe(false);
    expect(keepAlive("Upgrade: websocket\r\n")).toBe(true);
    expect(keepAlive("Connection: upgrade\r\n")).toBe(true);
    expect(keepAlive("Connection: upgrade\r\nUpgrade: \r\n")).toBe(true);
  });

  test("HTTP/1.1 without Host is refused with an absolute-form target too (RFC 9112 §3.2)", () => {
    expect(status("GET http://example.com/ HTTP/1.1\r\n\r\n")).toBe(400);
    expect(status("GET http://example.com/ HTTP/1.0\r\n\r\n")).toBe(0);
  });

  test("header('cookie') joins several Cookie lines with '; ', from the bytes and from the strings", () => {
    const h = parseRequestHead(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\nX: 1\r\nCookie: b=2\r\nX: 2\r\n\r\n"), 0)!;
    expect(h.header("cookie")).toBe("a=1; b=2");
    expect(h.header("x")).toBe("1, 2");
    void h.rawHeaders; // the strings are made: header() reads them now
    expect(h.header("cookie")).toBe("a=1; b=2");
    expect(h.header("x")).toBe("1, 2");
  });
});

describe("through Fulcrum", () => {
  let be: RecordingBackend;
  let f: InProcess;
  beforeAll(async () => {
    be = await startRecordingBackend();
    f = await startFulcrum(`pools:
  web:
    backends: ["${be.url}"]
routes:
  - { match: { path: / }, pool: web }
  - { match: { path: /mw }, pool: web, middleware: [{ rate-limit: { rate: 1000000/s } }] }
log: { level: error, access_log: false }
admin: false
`);
  });
  afterAll(async () => {
    await f?.stop();
    await be?.stop();
  });

  async function send(text: string): Promise<{ statuses: number[]; closed: boolean }> {
    be.reset();
    const c = await RawClient.connect(f.server.listener.port);
    c.write(text);
    const statuses: number[] = [];
    for (;;) {
      const r = await c.readResponse();
      if (r === "closed") break;
      statuses.push(r.status);
      if (r.get("connection") === "close") break;
    }
    const closed = await c.waitClosed();
    c.destroy();
    return { statuses, closed };
  }

  test("Content-Length in a trailer, then a pipelined request: 400, and the backend sees neither (the issue's)", async () => {
    const r = await send(
      "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    expect(r.statuses).toEqual([400]);
    expect(r.closed).toBe(true);
    expect(be.requests.filter((q) => q.target === "/smuggled")).toEqual([]);
    expect(be.allBytes()).not.toContain("smuggled");
  });

  test("an upgrade request, then a pipelined one: the first is answered, the connection closed, the second never forwarded", async () => {
    const r = await send(
      "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    expect(r.statuses).toEqual([200]);
    expect(r.closed).toBe(true);
    expect(be.requests.map((q) => q.target)).toEqual(["/ws"]);
  });

  test("HTTP/1.0 without Host: the backend gets its own host:port, never an empty Host (also through middleware)", async () => {
    for (const path of ["/h10", "/mw/h10"]) {
      const r = await send(`GET ${path} HTTP/1.0\r\n\r\n`);
      expect(r.statuses).toEqual([200]);
      expect(be.requests.map((q) => q.all("host"))).toEqual([[`127.0.0.1:${be.port}`]]);
    }
  });

  test("several Cookie lines reach the backend as one, joined with '; ' (bytes path and middleware path)", async () => {
    for (const path of ["/ck", "/mw/ck"]) {
      await send(`GET ${path} HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\nX-A: 1\r\ncookie: b=2\r\nCOOKIE: c=3\r\nConnection: close\r\n\r\n`);
      expect(be.requests.map((q) => q.all("cookie"))).toEqual([["a=1; b=2; c=3"]]);
    }
  });
});

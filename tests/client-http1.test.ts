/**
 * Conformance of Fulcrum's CLIENT-facing HTTP/1.1 side, over real sockets on 127.0.0.1: what a
 * client gets for malformed, hostile and unusual requests, and what the backend behind it sees.
 * Raw bytes go in (tests/helpers/raw-client.ts), raw replies are parsed strictly, and a raw
 * recording backend parses every request Fulcrum forwards, so a smuggled second request, a
 * request forwarded with both Content-Length and Transfer-Encoding, or a body that is not
 * byte-identical is seen. This is the safety net for replacing Bun.serve with our own listener.
 *
 * The rule for a hostile request: the client gets the status (or the connection is closed), the
 * backend never sees a smuggled request (nor the marker `smuggled` anywhere in its bytes), and
 * Fulcrum goes on serving a normal request on a new connection.
 *
 * Where two answers are both safe, a test accepts that set explicitly, with the reason. Behaviour
 * that the Bun.serve front (FULCRUM_BUN_SERVE=1) gets wrong and our own listener (the default)
 * gets right is in `describe("Bun.serve gaps")` at the end: those tests run on the default front
 * and are skipped under FULCRUM_BUN_SERVE=1. Everything else passes on both fronts.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { Buffer } from "node:buffer";
import type { Socket } from "node:net";
import { startFulcrum, type InProcess } from "./helpers/fulcrum.ts";
import {
  RawClient,
  echoTarget,
  outcome,
  startRecordingBackend,
  type BackendReply,
  type Outcome,
  type RawResponse,
  type RecordedRequest,
  type RecordingBackend,
} from "./helpers/raw-client.ts";
import { testScope } from "./helpers/scope.ts";

const scope = testScope();

/** A request that must never reach the backend: it follows the hostile message on the wire. */
const SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
/** Written after a response, on the same connection: the next answer must be for it, not for a smuggled request. */
const SENTINEL = "GET /sentinel HTTP/1.1\r\nHost: x\r\n\r\n";

const MAX_BODY = 1024; // limits.max_request_body
const IDLE_MS = 1000; // limits.client_idle_timeout
const BODY_TIMEOUT_MS = 1000; // limits.client_body_timeout

/** Every byte value once. */
const BINARY = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/** 150 KiB with every byte value, streamed chunked by the backend in 5000-byte chunks. */
const STREAMED = Buffer.alloc(150 * 1024);
for (let i = 0; i < STREAMED.length; i++) STREAMED[i] = (i * 7 + (i >> 8)) & 0xff;

function streamChunked(body: Buffer, chunk: number): BackendReply {
  return async (s: Socket) => {
    s.write("HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n");
    for (let off = 0; off < body.length; off += chunk) {
      const part = body.subarray(off, off + chunk);
      s.write(`${part.length.toString(16)}\r\n`);
      s.write(part);
      s.write("\r\n");
      // Yield so the body leaves as a stream of writes, not one buffer.
      await new Promise((r) => setImmediate(r));
    }
    s.write("0\r\n\r\n");
  };
}

function backendReply(req: RecordedRequest): BackendReply {
  switch (req.target) {
    case "/204":
      return "HTTP/1.1 204 No Content\r\nx-kind: no-content\r\n\r\n";
    case "/304":
      // A 304 may carry the Content-Length of the representation; it never has a body.
      return 'HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncontent-length: 10\r\n\r\n';
    case "/head":
      return req.method === "HEAD"
        ? "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\n"
        : "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\nhello world";
    case "/stream":
      return streamChunked(STREAMED, 5000);
    case "/head-chunked":
      return req.method === "HEAD"
        ? "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        : "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    case "/forwarded-lines":
      // Framing and hop-by-hop lines first, in the middle and last, names in odd case, odd spacing,
      // a value with a byte >= 0x80: everything else must arrive byte for byte, in order.
      return (
        "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nX-First:one\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n" +
        "CONTENT-LENGTH: 2\r\nProxy-Connection: x\r\nSet-Cookie: a=1\r\nset-cookie: b=2  \r\nX-Latin: caf\xe9\r\n" +
        "conNection: Keep-Alive\r\nTE: trailers\r\nX-Last: \t tab\r\nUpgrade: h2c\r\n\r\nok"
      );
    case "/forwarded-no-date":
      return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Only: 1\r\n\r\nok";
    default:
      return echoTarget(req);
  }
}

let be: RecordingBackend;
let fulcrum: InProcess;
let port: number;

beforeAll(async () => {
  be = await startRecordingBackend(backendReply);
  // One Fulcrum for the whole file: every hostile case hits the same process, so "still serving
  // afterwards" covers everything sent before it too.
  fulcrum = await startFulcrum(`pools:
  web:
    backends: ["${be.url}"]
routes:
  - { match: { path: / }, pool: web }
  # A route with middleware: its requests go through the web Request (toRequest), not the bytes.
  - { match: { path: /abs-mw }, pool: web, middleware: [{ rate-limit: { rate: 1000000/s } }] }
limits:
  max_request_body: ${MAX_BODY}
  client_idle_timeout: ${IDLE_MS}ms
  client_body_timeout: ${BODY_TIMEOUT_MS}ms
log: { level: error, access_log: false }
admin: false
`);
  port = fulcrum.server.listener.port;
});

afterAll(async () => {
  await fulcrum?.stop();
  await be?.stop();
});

beforeEach(() => be.reset());

/** A raw client connection to Fulcrum, destroyed after the test. */
async function client(): Promise<RawClient> {
  const c = await RawClient.connect(port);
  scope.cleanups.push(() => c.destroy());
  return c;
}

function bodyText(r: RawResponse | "closed"): string {
  if (r === "closed") throw new Error("expected a response, the connection was closed");
  return r.body.toString("latin1");
}

let probes = 0;
/**
 * A normal GET on a new connection gets 200 from the backend (the process is up and serving),
 * then: no smuggled request reached the backend, and nothing was forwarded with ambiguous framing.
 */
async function expectStillServingAndNoSmuggling(): Promise<void> {
  const target = `/probe-${++probes}`;
  const c = await client();
  c.write(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
  const r = await c.readResponse();
  expect(outcome(r)).toBe(200);
  expect(bodyText(r)).toBe(`GET ${target}`);
  expect(be.requests.map((q) => q.target)).not.toContain("/smuggled");
  expect(be.allBytes()).not.toContain("smuggled");
  expect(be.errors).toEqual([]);
}

interface Exchange {
  /** The first response, or "closed" without one. */
  first: RawResponse | "closed";
  outcome: Outcome;
  /** The connection was closed after the first response (a sentinel request written on it got no answer). */
  closedAfter: boolean;
  /** The answer to the sentinel request when the connection stayed open. */
  sentinel?: RawResponse;
}

/** Send `bytes` on a new connection; read one response; then see whether the connection still serves, in order. */
async function exchange(bytes: string | Buffer, method?: string): Promise<Exchange> {
  const c = await client();
  c.write(bytes);
  const first = await c.readResponse({ method });
  if (first === "closed") return { first, outcome: "closed", closedAfter: true };
  c.write(SENTINEL);
  const next = await c.readResponse();
  if (next === "closed") return { first, outcome: first.status, closedAfter: true };
  return { first, outcome: first.status, closedAfter: false, sentinel: next };
}

/**
 * A request that must be refused: its outcome is one of `allowed` (by default 400), the
 * connection is closed after it (RFC 9112 §6.3: after a framing error the server MUST close;
 * for a malformed head nothing after it can be trusted either), nothing reached the backend,
 * and Fulcrum still serves.
 */
async function expectRejected(bytes: string | Buffer, allowed: Outcome[] = [400]): Promise<Exchange> {
  const ex = await exchange(bytes);
  expect(allowed).toContain(ex.outcome);
  expect(ex.closedAfter).toBe(true);
  expect(be.requests.filter((q) => !q.target.startsWith("/probe-"))).toEqual([]);
  await expectStillServingAndNoSmuggling();
  return ex;
}

// ---------------------------------------------------------------------------------------------

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
    await expectRejected(`POST /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello${SMUGGLED}`);
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

describe("limits", () => {
  test("a 100 KB URL → 414, 431 or 400 and the connection closed; the backend sees nothing", async () => {
    await expectRejected(`GET /${"a".repeat(100 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`, [414, 431, 400]);
  });

  test("one header over 64 KiB → 431 or 400, closed", async () => {
    await expectRejected(`GET /a HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(70 * 1024)}\r\n\r\n`, [431, 400]);
  });

  test("a header block over 64 KiB in many headers → 431 or 400, closed", async () => {
    const headers = Array.from({ length: 700 }, (_, i) => `X-H${i}: ${"b".repeat(100)}\r\n`).join("");
    await expectRejected(`GET /a HTTP/1.1\r\nHost: x\r\n${headers}\r\n`, [431, 400]);
  });

  test("1000 small headers: refused with 431 (or 400) and closed, or served with all of them", async () => {
    const headers = Array.from({ length: 1000 }, (_, i) => `X-H${i}: ${i}\r\n`).join("");
    const ex = await exchange(`GET /many HTTP/1.1\r\nHost: x\r\n${headers}\r\n`);
    // A cap on the header count is a legitimate limit (Bun.serve's is 200); serving is fine too.
    expect<Outcome[]>([431, 400, 200]).toContain(ex.outcome);
    if (ex.outcome === 200) {
      const fwd = be.requests.find((q) => q.target === "/many")!;
      expect(fwd.get("x-h999")).toBe("999");
    } else expect(ex.closedAfter).toBe(true);
    await expectStillServingAndNoSmuggling();
  });

  test("90 headers (what browsers behind CDNs send, with room) are all forwarded", async () => {
    const headers = Array.from({ length: 90 }, (_, i) => `X-H${i}: value-${i}\r\n`).join("");
    const ex = await exchange(`GET /ninety HTTP/1.1\r\nHost: x\r\n${headers}\r\n`);
    expect(ex.outcome).toBe(200);
    const fwd = be.requests.find((q) => q.target === "/ninety")!;
    for (let i = 0; i < 90; i++) expect(fwd.get(`x-h${i}`)).toBe(`value-${i}`);
  });

  test("a body of exactly max_request_body is forwarded intact", async () => {
    const body = "z".repeat(MAX_BODY);
    const ex = await exchange(`POST /at-limit HTTP/1.1\r\nHost: x\r\nContent-Length: ${MAX_BODY}\r\n\r\n${body}`);
    expect(ex.outcome).toBe(200);
    expect(be.requests.find((q) => q.target === "/at-limit")?.body.toString()).toBe(body);
  });

  test("Content-Length over max_request_body → 413 before the body is sent, closed; the backend sees nothing", async () => {
    const c = await client();
    // Only the head: the answer must not wait for a body it will refuse.
    c.write(`POST /too-big HTTP/1.1\r\nHost: x\r\nContent-Length: ${MAX_BODY + 1}\r\n\r\n`);
    const r = await c.readResponse();
    expect(outcome(r)).toBe(413);
    expect(await c.waitClosed()).toBe(true);
    expect(be.requests).toEqual([]);
    await expectStillServingAndNoSmuggling();
  });

  test("Content-Length over max_request_body with the body and a request after it → 413, closed", async () => {
    await expectRejected(`POST /too-big HTTP/1.1\r\nHost: x\r\nContent-Length: ${MAX_BODY + 1}\r\n\r\n${"z".repeat(MAX_BODY + 1)}${SMUGGLED}`, [413]);
  });

  test("a chunked body over max_request_body → 413, closed; the backend never gets a complete request", async () => {
    const chunk = `100\r\n${"y".repeat(256)}\r\n`;
    await expectRejected(`POST /too-big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunk.repeat(5)}0\r\n\r\n${SMUGGLED}`, [413]);
  });

  test("a chunked body over max_request_body in one big chunk → 413, closed", async () => {
    const n = MAX_BODY * 4;
    await expectRejected(`POST /too-big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${n.toString(16)}\r\n${"y".repeat(n)}\r\n0\r\n\r\n`, [413]);
  });
});

describe("Host", () => {
  test("HTTP/1.1 without Host → 400, closed (RFC 9112 §3.2)", async () => {
    await expectRejected(`GET /a HTTP/1.1\r\nX-A: 1\r\n\r\n${SMUGGLED}`);
  });

  test("HTTP/1.0 without Host is served, and the connection closed after it", async () => {
    const c = await client();
    c.write("GET /old HTTP/1.0\r\n\r\n");
    const r = await c.readResponse();
    expect(outcome(r)).toBe(200);
    expect(be.requests).toHaveLength(1);
    expect(await c.waitClosed()).toBe(true);
  });
});

describe("keep-alive", () => {
  test("HTTP/1.1 keeps the connection alive by default: two requests, one after the other, both answered", async () => {
    const c = await client();
    c.write("GET /k1 HTTP/1.1\r\nHost: x\r\n\r\n");
    const r1 = await c.readResponse();
    expect(bodyText(r1)).toBe("GET /k1");
    expect((r1 as RawResponse).get("connection")?.toLowerCase()).not.toBe("close");
    c.write("GET /k2 HTTP/1.1\r\nHost: x\r\n\r\n");
    const r2 = await c.readResponse();
    expect(bodyText(r2)).toBe("GET /k2");
    expect(c.closed).toBe(false);
    expect(be.requests.map((q) => q.target)).toEqual(["/k1", "/k2"]);
  });

  test("Connection: close → the response, then the socket is closed", async () => {
    const c = await client();
    c.write("GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const r = await c.readResponse();
    expect(bodyText(r)).toBe("GET /close");
    // RFC 9112 §9.6: the server SHOULD say close (Bun.serve does not), and MUST close.
    expect([undefined, "close"]).toContain((r as RawResponse).get("connection")?.toLowerCase());
    expect(await c.waitClosed()).toBe(true);
  });

  test("HTTP/1.0 without keep-alive → closed after the response", async () => {
    const c = await client();
    c.write("GET /ten HTTP/1.0\r\nHost: x\r\n\r\n");
    const r = await c.readResponse();
    expect(bodyText(r)).toBe("GET /ten");
    expect((r as RawResponse).get("connection")?.toLowerCase()).not.toBe("keep-alive");
    expect(await c.waitClosed()).toBe(true);
  });

  test("HTTP/1.0 with Connection: keep-alive → kept open and says so, or closed and does not", async () => {
    const c = await client();
    c.write("GET /ten-ka HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
    const r = (await c.readResponse()) as RawResponse;
    expect(bodyText(r)).toBe("GET /ten-ka");
    // Keeping it alive is optional (Bun.serve closes); what must hold is that the response says
    // keep-alive exactly when the connection stays usable, or an HTTP/1.0 client would hang.
    if (r.get("connection")?.toLowerCase() === "keep-alive") {
      c.write("GET /ten-ka2 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
      expect(bodyText(await c.readResponse())).toBe("GET /ten-ka2");
    } else {
      expect(await c.waitClosed()).toBe(true);
    }
  });

  test("a request with a body, then another on the same connection: both answered, bodies kept apart", async () => {
    const c = await client();
    c.write("POST /b1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst");
    expect(bodyText(await c.readResponse())).toBe("POST /b1");
    c.write("POST /b2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsecond\r\n0\r\n\r\n");
    expect(bodyText(await c.readResponse())).toBe("POST /b2");
    expect(be.requests.map((q) => [q.target, q.body.toString()])).toEqual([
      ["/b1", "first"],
      ["/b2", "second"],
    ]);
  });
});

describe("pipelining", () => {
  test("three GETs in one write: every response that comes is the right one, in order; the rest only by closing", async () => {
    const c = await client();
    c.write("GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\nGET /p3 HTTP/1.1\r\nHost: x\r\n\r\n");
    const got: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await c.readResponse();
      if (r === "closed") break;
      got.push(bodyText(r));
    }
    // Answering all three is the goal (see "Bun.serve gaps"); Bun.serve closes the connection instead,
    // which is safe: a client re-sends unanswered requests. A wrong or reordered answer is not.
    expect(got).toEqual(["GET /p1", "GET /p2", "GET /p3"].slice(0, got.length));
    if (got.length < 3) expect(c.closed).toBe(true);
    expect(be.requests.every((q) => ["/p1", "/p2", "/p3"].includes(q.target))).toBe(true);
    await expectStillServingAndNoSmuggling();
  });
});

describe("Expect: 100-continue", () => {
  test("the client gets 100 Continue before sending the body; the body reaches the backend intact", async () => {
    const c = await client();
    c.write("POST /expect HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
    const interim = await c.readResponse();
    expect(outcome(interim)).toBe(100);
    c.write("hello world");
    const r = await c.readResponse();
    expect(outcome(r)).toBe(200);
    expect(bodyText(r)).toBe("POST /expect");
    const fwd = be.requests.find((q) => q.target === "/expect")!;
    expect(fwd.body.toString()).toBe("hello world");
  });

  test("a client that sends the body without waiting still gets the final response; the body arrives once", async () => {
    const c = await client();
    c.write("POST /expect2 HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\nhello world");
    let r = await c.readResponse();
    if (r !== "closed" && r.status === 100) r = await c.readResponse();
    expect(outcome(r)).toBe(200);
    expect(be.requests.filter((q) => q.target === "/expect2").map((q) => q.body.toString())).toEqual(["hello world"]);
    // The connection is in sync afterwards.
    c.write(SENTINEL);
    expect(bodyText(await c.readResponse())).toBe("GET /sentinel");
  });
});

describe("chunked request bodies", () => {
  test("chunk extensions: the backend gets the body de-chunked and byte-identical (every byte value)", async () => {
    const head = Buffer.from("POST /chunked-in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "latin1");
    const body = Buffer.concat([
      Buffer.from('5;ext=1;quoted="ab"\r\nhello\r\n', "latin1"),
      Buffer.from("100;name\r\n", "latin1"),
      BINARY,
      Buffer.from("\r\n1\r\n\n\r\n0;last=yes\r\n\r\n", "latin1"),
    ]);
    const ex = await exchange(Buffer.concat([head, body]));
    expect(ex.outcome).toBe(200);
    const fwd = be.requests.find((q) => q.target === "/chunked-in")!;
    expect(Buffer.compare(fwd.body, Buffer.concat([Buffer.from("hello"), BINARY, Buffer.from("\n")]))).toBe(0);
    // One framing header only, and the connection stays in sync.
    expect(fwd.get("content-length") === undefined || fwd.get("transfer-encoding") === undefined).toBe(true);
    expect(bodyText(ex.sentinel!)).toBe("GET /sentinel");
  });

  for (const [what, ext] of [
    ["a space", '"a b"'],
    ["a semicolon", '"a;b"'],
  ]) {
    test(`a quoted chunk extension value with ${what} in it: 400, or forwarded intact`, async () => {
      const ex = await exchange(`POST /qs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;q=${ext}\r\nhello\r\n0\r\n\r\n`);
      // Valid (RFC 9112 §7.1.1 quoted-string), but Bun.serve refuses it; refusing is safe.
      expect<Outcome[]>([400, 200]).toContain(ex.outcome);
      if (ex.outcome === 200) expect(be.requests.find((q) => q.target === "/qs")?.body.toString()).toBe("hello");
      else expect(ex.closedAfter).toBe(true);
      await expectStillServingAndNoSmuggling();
    });
  }

  test("a chunked body arriving in small pieces (split inside size lines and CRLFs) is reassembled exactly", async () => {
    const c = await client();
    const text = "POST /pieces HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + "a\r\n0123456789\r\n3;x=y\r\nabc\r\n0\r\n\r\n";
    for (let i = 0; i < text.length; i += 3) {
      c.write(text.slice(i, i + 3));
      // Yield between writes so they tend to arrive as separate reads (correct either way).
      await new Promise((r) => setImmediate(r));
    }
    expect(bodyText(await c.readResponse())).toBe("POST /pieces");
    expect(be.requests.find((q) => q.target === "/pieces")?.body.toString()).toBe("0123456789abc");
  });
});

describe("HEAD, 204 and 304", () => {
  test("HEAD: no body bytes, and the connection serves the next request", async () => {
    const c = await client();
    c.write("HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n");
    const r = await c.readResponse({ method: "HEAD" });
    expect(outcome(r)).toBe(200);
    expect(be.requests.map((q) => q.method)).toEqual(["HEAD"]);
    // Were any body bytes sent after the head, the next response would not start with a status line.
    c.write("GET /head HTTP/1.1\r\nHost: x\r\n\r\n");
    const next = await c.readResponse();
    expect(bodyText(next)).toBe("hello world");
    expect(c.pending.length).toBe(0);
  });

  for (const status of [204, 304]) {
    test(`${status} from the backend: no body, and the connection serves the next request`, async () => {
      const c = await client();
      c.write(`GET /${status} HTTP/1.1\r\nHost: x\r\n\r\n`);
      const r = (await c.readResponse()) as RawResponse;
      expect(r.status).toBe(status);
      expect(r.get("transfer-encoding")).toBeUndefined();
      c.write(SENTINEL);
      expect(bodyText(await c.readResponse())).toBe("GET /sentinel");
      expect(c.pending.length).toBe(0);
    });
  }
});

describe("slow clients", () => {
  // Bun.serve closes an incomplete request head after a fixed ~10 s (plus its 4 s timer
  // granularity), whatever limits.client_idle_timeout says. This bound holds on both fronts;
  // the known gap below holds the configured one.
  const HEAD_DEADLINE_MS = 14_000;

  test(
    "a partial request head, or no bytes at all, is disconnected (or answered 408) in bounded time",
    async () => {
      const started = performance.now();
      const partial = await client();
      partial.write("GET /slow HTTP/1.1\r\nHost: x\r\nX-Unfinished: ");
      const silent = await client();
      const [a, b] = await Promise.all(
        [partial, silent].map(async (c) => {
          const r = await c.readResponse({ timeoutMs: HEAD_DEADLINE_MS });
          return outcome(r);
        }),
      );
      expect<Outcome[]>([408, "closed"]).toContain(a!);
      expect<Outcome[]>([408, "closed"]).toContain(b!);
      expect(performance.now() - started).toBeLessThan(HEAD_DEADLINE_MS);
      expect(be.requests).toEqual([]);
    },
    HEAD_DEADLINE_MS + 2000,
  );

  test("a body that stops coming → 408 within client_body_timeout; its remaining bytes are never a request", async () => {
    const c = await client();
    const started = performance.now();
    c.write(`POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: ${3 + SMUGGLED.length}\r\n\r\nabc`);
    const r = await c.readResponse({ timeoutMs: BODY_TIMEOUT_MS + 2000 });
    expect(outcome(r)).toBe(408);
    expect(performance.now() - started).toBeLessThan(BODY_TIMEOUT_MS + 1500);
    // The rest of the declared body arrives late, and spells a request: it must not be one.
    c.write(SMUGGLED);
    c.write(SENTINEL);
    const next = await c.readResponse();
    // Closing after the 408 is safest (the streamed-body path does); the buffered path keeps the
    // connection and reads the late bytes as the body they were declared as, which is safe too.
    if (next !== "closed") expect(bodyText(next)).toBe("GET /sentinel");
    expect(be.requests.filter((q) => q.target === "/stall")).toEqual([]);
    await expectStillServingAndNoSmuggling();
  });
});

describe("request headers", () => {
  test("the client's lines reach the backend byte for byte in order; hop-by-hop dropped, Host and X-Forwarded-* ours", async () => {
    const c = await client();
    c.write(
      "POST /fwd-lines HTTP/1.1\r\nKeep-Alive: timeout=5\r\nX-First:one\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.7\r\n" +
        "Accept: a\r\naccept: b  \r\nTE: trailers\r\nX-Forwarded-Proto: https\r\nContent-Length: 2\r\nX-Latin: caf\xe9\r\n" +
        "Proxy-Authorization: Basic x\r\nx-forwarded-for: 198.51.100.1\r\nX-Forwarded-Host: elsewhere\r\nConnection: keep-alive\r\n" +
        "Upgrade: h2c\r\nCookie: a=1\r\nX-Last: \t tab\r\n\r\nok",
    );
    expect(outcome(await c.readResponse())).toBe(200);
    const req = be.requests.find((q) => q.target === "/fwd-lines")!;
    expect(req.body.toString()).toBe("ok");
    const head = be.allBytes().split("\r\n\r\n")[0]!.split("\r\n");
    const ours = /^(host|x-forwarded-(for|proto|host)|content-length):/i;
    expect(head.slice(1).filter((l) => !ours.test(l))).toEqual(["X-First:one", "Accept: a", "accept: b  ", "X-Latin: caf\xe9", "Cookie: a=1", "X-Last: \t tab"]);
    expect(req.all("host")).toEqual(["shop.example"]);
    expect(req.all("x-forwarded-for")).toEqual(["203.0.113.7, 198.51.100.1, 127.0.0.1"]);
    expect(req.all("x-forwarded-proto")).toEqual(["http"]);
    expect(req.all("x-forwarded-host")).toEqual(["shop.example"]);
    expect(req.all("content-length")).toEqual(["2"]);
  });

  test("Cookie sent twice is joined into one line; a header named in Connection is dropped", async () => {
    const c = await client();
    c.write("GET /cookies HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\nX-Keep: 1\r\nCookie: b=2\r\n\r\n");
    expect(outcome(await c.readResponse())).toBe(200);
    c.write("GET /named HTTP/1.1\r\nHost: x\r\nX-Drop: 1\r\nX-Keep: 2\r\nConnection: keep-alive, X-Drop\r\n\r\n");
    expect(outcome(await c.readResponse())).toBe(200);
    const cookies = be.requests.find((q) => q.target === "/cookies")!;
    expect(cookies.all("cookie")).toEqual(["a=1; b=2"]);
    expect(cookies.all("x-keep")).toEqual(["1"]);
    const named = be.requests.find((q) => q.target === "/named")!;
    expect(named.all("x-drop")).toEqual([]);
    expect(named.all("x-keep")).toEqual(["2"]);
  });
});

describe("response headers", () => {
  test("forwarded byte for byte in order, names in the backend's case; framing and hop-by-hop lines dropped", async () => {
    const c = await client();
    c.write("GET /forwarded-lines HTTP/1.1\r\nHost: x\r\n\r\n");
    const r = await c.readResponse();
    if (r === "closed") throw new Error("no response");
    expect(bodyText(r)).toBe("ok");
    const lines = r.head.split("\r\n").slice(1);
    expect(lines.filter((l) => !/^content-length:/i.test(l))).toEqual([
      "X-First:one",
      "Date: Sun, 06 Nov 1994 08:49:37 GMT",
      "Set-Cookie: a=1",
      "set-cookie: b=2  ",
      "X-Latin: caf\xe9",
      "X-Last: \t tab",
    ]);
    // One Content-Length (ours) and the backend's Date only.
    expect(r.all("content-length")).toEqual(["2"]);
    expect(r.all("date")).toEqual(["Sun, 06 Nov 1994 08:49:37 GMT"]);
  });

  test("a response without Date gets one", async () => {
    const c = await client();
    c.write("GET /forwarded-no-date HTTP/1.1\r\nHost: x\r\n\r\n");
    const r = await c.readResponse();
    if (r === "closed") throw new Error("no response");
    expect(r.get("x-only")).toBe("1");
    expect(r.all("date")).toHaveLength(1);
    expect(Date.parse(r.get("date")!)).toBeGreaterThan(Date.parse("2020-01-01"));
  });
});

describe("chunked responses from the backend", () => {
  test("a streamed chunked response over 64 KiB reaches an HTTP/1.1 client intact", async () => {
    const c = await client();
    c.write("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    const r = (await c.readResponse({ timeoutMs: 5000 })) as RawResponse;
    expect(r.status).toBe(200);
    expect(["chunked", "length"]).toContain(r.framing);
    expect(r.body.length).toBe(STREAMED.length);
    expect(Buffer.compare(r.body, STREAMED)).toBe(0);
    // And the connection is still in sync.
    c.write(SENTINEL);
    expect(bodyText(await c.readResponse())).toBe("GET /sentinel");
  });

  test("the same response to an HTTP/1.0 client: intact, without chunked framing", async () => {
    const c = await client();
    c.write("GET /stream HTTP/1.0\r\nHost: x\r\n\r\n");
    const r = (await c.readResponse({ timeoutMs: 5000 })) as RawResponse;
    expect(r.status).toBe(200);
    // HTTP/1.0 has no chunked coding: the body is close-delimited or has a Content-Length.
    expect(["close", "length"]).toContain(r.framing);
    expect(r.get("transfer-encoding")).toBeUndefined();
    expect(Buffer.compare(r.body, STREAMED)).toBe(0);
    expect(await c.waitClosed()).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Wrong on the Bun.serve front (FULCRUM_BUN_SERVE=1), right on our own listener (the default);
// the comment in each says what Bun.serve does. Each test states the behaviour it wants. They run
// on the default front (they pin its fixes) and are skipped on the Bun.serve fallback.
const gap = process.env.FULCRUM_BUN_SERVE === "1" ? test.skip : test;

const API_KEY_PLUGIN = new URL("../plugins/api-key.ts", import.meta.url).pathname;

/** A second Fulcrum in front of the same backend, with /admin behind the api-key middleware. */
async function withProtectedAdmin(): Promise<number> {
  const f = await scope.fulcrum(`pools:
  web:
    backends: ["${be.url}"]
routes:
  - match: { path: /admin }
    pool: web
    middleware:
      - plugin: ${API_KEY_PLUGIN}
        options: { header: x-api-key, keys: ["secret"] }
  - match: { path: / }
    pool: web
log: { level: error, access_log: false }
admin: false
`);
  return f.server.listener.port;
}

async function getOn(p: number, target: string): Promise<Outcome> {
  const c = await RawClient.connect(p);
  scope.cleanups.push(() => c.destroy());
  c.write(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
  return outcome(await c.readResponse());
}

describe("Bun.serve gaps", () => {
  gap("duplicate equal Content-Length: 400, or forwarded with one valid Content-Length", async () => {
    // Bun.serve front: Bun.serve merges the fields and Fulcrum forwards `content-length: 5, 5`,
    // which a backend may reject (502 here) or misread (a desync on a shared upstream connection).
    const ex = await exchange("POST /dup-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello");
    expect<Outcome[]>([400, 200]).toContain(ex.outcome);
    if (ex.outcome === 200) {
      const fwd = be.requests.find((q) => q.target === "/dup-cl")!;
      expect(fwd.all("content-length")).toEqual(["5"]);
      expect(fwd.body.toString()).toBe("hello");
    } else expect(ex.closedAfter).toBe(true);
    await expectStillServingAndNoSmuggling();
  });

  gap("a chunked body with trailers (and extensions) reaches the backend de-chunked, byte-identical; 200", async () => {
    // Bun.serve front: 400 for the client, and the connection closed. Bun.serve refuses trailers
    // when the handler has not read the body by the time they arrive (Fulcrum reads it
    // asynchronously); depending on timing the backend has already received the whole request
    // (then the client is told 400 for a request that was processed), or not.
    const head = Buffer.from("POST /trailers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "latin1");
    const body = Buffer.concat([
      Buffer.from("5;ext=1\r\nhello\r\n100\r\n", "latin1"),
      BINARY,
      Buffer.from("\r\n0;last\r\nX-Trailer: t1\r\nX-Other: t2\r\n\r\n", "latin1"),
    ]);
    const ex = await exchange(Buffer.concat([head, body]));
    expect(ex.outcome).toBe(200);
    const fwd = be.requests.filter((q) => q.target === "/trailers");
    expect(fwd).toHaveLength(1);
    expect(Buffer.compare(fwd[0]!.body, Buffer.concat([Buffer.from("hello"), BINARY]))).toBe(0);
    expect(bodyText(ex.sentinel!)).toBe("GET /sentinel");
  });

  gap("two Host headers → 400 (RFC 9112 §3.2 MUST)", async () => {
    // Bun.serve front: 200; the backend gets `host: x, y` and routing matches on "x, y".
    await expectRejected(`GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n`);
  });

  gap("a Host that is not a host (has a slash) → 400", async () => {
    // Bun.serve front: 200, forwarded with `host: evil.com/x`, and the path loses its first
    // segment (/p/q → /q).
    await expectRejected(`GET /p/q HTTP/1.1\r\nHost: evil.com/x\r\n\r\n`);
  });

  gap("HTTP/1.0 without Host: the backend gets the path that was asked for", async () => {
    // Bun.serve front: Bun gives a relative request.url without a host, and Fulcrum cuts the
    // path at its second slash: GET /a/b reaches the backend as GET /b (and GET /a as GET /).
    const c = await client();
    c.write("GET /a/b HTTP/1.0\r\n\r\n");
    expect(outcome(await c.readResponse())).toBe(200);
    expect(be.requests.map((q) => q.target)).toEqual(["/a/b"]);
  });

  gap("pipelining: three GETs in one write get three responses, in order", async () => {
    // Bun.serve front: with an async handler Bun.serve closes the connection when pipelined
    // requests arrive while the first is in flight: no response at all, though /p1 reached the
    // backend.
    const c = await client();
    c.write("GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\nGET /p3 HTTP/1.1\r\nHost: x\r\n\r\n");
    const got: string[] = [];
    for (let i = 0; i < 3; i++) got.push(bodyText(await c.readResponse()));
    expect(got).toEqual(["GET /p1", "GET /p2", "GET /p3"]);
    expect(be.requests.map((q) => q.target)).toEqual(["/p1", "/p2", "/p3"]);
  });

  gap("HEAD then GET pipelined: the HEAD response has no body and the GET is answered", async () => {
    const c = await client();
    c.write("HEAD /head HTTP/1.1\r\nHost: x\r\n\r\nGET /head HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(outcome(await c.readResponse({ method: "HEAD" }))).toBe(200);
    expect(bodyText(await c.readResponse())).toBe("hello world");
  });

  gap("a partial request head is disconnected (or 408) within client_idle_timeout", async () => {
    // Bun.serve front: ~12 s whatever the setting (see "slow clients").
    const c = await client();
    const started = performance.now();
    c.write("GET /slow HTTP/1.1\r\nHost: x\r\nX-Unfinished: ");
    const r = await c.readResponse({ timeoutMs: IDLE_MS + 2000 });
    expect<Outcome[]>([408, "closed"]).toContain(outcome(r));
    expect(performance.now() - started).toBeLessThan(IDLE_MS + 1500);
  });

  gap("an idle keep-alive connection is closed after client_idle_timeout", async () => {
    // Bun.serve front: never. Fulcrum turns Bun.serve's idle timer off for each request (so a
    // slow backend is bounded by the pool's timeouts instead) and it stays off for the
    // kept-alive connection.
    const c = await client();
    c.write("GET /idle HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(outcome(await c.readResponse())).toBe(200);
    const started = performance.now();
    expect(await c.waitClosed(IDLE_MS + 2500)).toBe(true);
    expect(performance.now() - started).toBeGreaterThanOrEqual(IDLE_MS - 100);
  });

  gap("CONNECT is refused (400, 405 or 501), not forwarded", async () => {
    // Bun.serve front: forwarded to the backend as `CONNECT / HTTP/1.1`, its 200 relayed, and
    // then the client's connection answers nothing more (a tunnel nobody serves).
    await expectRejected("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", [400, 405, 501]);
  });

  gap("a fragment (#) in the request-target cannot route around a protected prefix", async () => {
    // Bun.serve front (and the own listener before it refused '#'): `GET /admin#x` is routed as path "/admin#x", which the /admin route does not
    // match, so it goes to the / route without the api-key check, and the backend gets
    // `/admin#x` (servers drop the fragment: it serves /admin). '#' is not allowed in an
    // origin-form target (RFC 9112 §3.2): 400, or route on the path without it (401 here).
    const p = await withProtectedAdmin();
    expect(await getOn(p, "/admin")).toBe(401);
    for (const target of ["/admin#x", "/admin#/users"]) {
      expect<Outcome[]>([400, 401]).toContain(await getOn(p, target));
    }
    expect(be.requests).toEqual([]);
  });

  gap("dot segments in the request-target cannot route around a protected prefix", async () => {
    // Bun.serve front: request.url is normalised, so /x/../admin and /./admin match /admin (401).
    // Own listener: normalised the same way (normalizeTarget in core/http1/request.ts); routed
    // as written they would miss /admin and reach / without the api-key check.
    const p = await withProtectedAdmin();
    for (const target of ["/x/../admin", "/./admin", "/admin/./users"]) {
      expect<Outcome[]>([400, 401]).toContain(await getOn(p, target));
    }
    expect(be.requests).toEqual([]);
  });

  gap("a 304 keeps the backend's Content-Length or has none; never a made-up one", async () => {
    // RFC 9110 §8.6: a 304 MUST NOT carry a Content-Length other than the 200's. Both fronts keep
    // the backend's (the own listener once wrote `content-length: 0` on every 304).
    const c = await client();
    c.write("GET /304 HTTP/1.1\r\nHost: x\r\n\r\n");
    const r = (await c.readResponse()) as RawResponse;
    expect(r.status).toBe(304);
    expect([undefined, "10"]).toContain(r.get("content-length"));
  });

  gap("HEAD of a resource the backend would send chunked: no made-up Content-Length", async () => {
    // Bun.serve front: `content-length: 0` added, telling the client the resource is empty.
    // Own listener: none (correct).
    const c = await client();
    c.write("HEAD /head-chunked HTTP/1.1\r\nHost: x\r\n\r\n");
    const r = (await c.readResponse({ method: "HEAD" })) as RawResponse;
    expect(r.status).toBe(200);
    expect(r.get("content-length")).toBeUndefined();
  });
});

import { afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { gunzipSync } from "node:zlib";
import { startBackend, startRawBackend, type RawBackend } from "../helpers/backends.ts";
import { startFulcrum, type InProcess } from "../helpers/fulcrum.ts";

// The upstream client as a strict HTTP/1.1 client, seen end to end: a raw TCP backend sends
// exact bytes, Fulcrum proxies, a client checks what comes out and how connections are used.
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

type Respond = (head: string, s: Socket<{ conn: number; buf: string }>, at: { conn: number; nthOnConn: number }) => void;

const ok = (body: string, extra = "") => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n${extra}\r\n${body}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const conns = (b: RawBackend) => new Set(b.heads.map((h) => h.conn)).size;

/** Write all of `text`, waiting out a full socket buffer (Bun sockets write partially). */
function writeAll(s: Socket<unknown>, text: string): void {
  const n = s.write(text);
  if (n < text.length) setTimeout(() => writeAll(s, text.slice(Math.max(0, n))), 1);
}

async function via(respond: Respond, pool = ""): Promise<{ b: RawBackend; f: InProcess }> {
  const b = startRawBackend(respond);
  cleanups.push(() => b.stop());
  const f = await startFulcrum(
    `pools:\n  web:\n    backends: ["${b.url}"]\n    retry: { attempts: 1 }\n${pool}log: { access_log: true }\n`,
  );
  cleanups.push(() => f.stop());
  return { b, f };
}

describe("malformed responses are refused with 502", () => {
  const cases: [string, string][] = [
    ["obs-fold", "HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 2\r\n\r\nok"],
    ["a NUL in a header value", "HTTP/1.1 200 OK\r\nX-A: o\x00ne\r\nContent-Length: 2\r\n\r\nok"],
    ["a space before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"],
    ["conflicting Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"],
    ["duplicate Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"],
    [
      "Transfer-Encoding and Content-Length",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ],
    ["a bad status line", "HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\nok"],
    ["bare LF line endings", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok"],
    ["a header section over 64 KiB", `HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(70 * 1024)}\r\nContent-Length: 2\r\n\r\nok`],
    ["a bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n"],
    ["chunk data longer than its size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nok\r\n0\r\n\r\n"],
    ["an unrequested 101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"],
  ];
  for (const [what, raw] of cases) {
    test(what, async () => {
      const { f } = await via((_h, s) => writeAll(s, raw));
      const r = await fetch(f.url);
      expect(r.status).toBe(502);
      expect(f.access().at(-1)?.error).toMatch(/invalid response/);
    });
  }

  test("a small body cut short by the backend closing → 502", async () => {
    const { f } = await via((_h, s) => s.end("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"));
    expect((await fetch(f.url)).status).toBe(502);
  });

  test("a bad chunk after the response started streaming fails the client's body, and the connection is dropped", async () => {
    const { b, f } = await via((_h, s, at) => {
      if (at.conn > 1) return void s.write(ok("fine"));
      s.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`);
      setTimeout(() => s.write("zz\r\n"), 50);
    });
    const r = await fetch(f.url);
    expect(r.status).toBe(200);
    expect(r.text()).rejects.toThrow();
    await sleep(100);
    expect(await (await fetch(f.url)).text()).toBe("fine");
    expect(conns(b)).toBe(2);
  });

  test("a large body cut short fails the client's body", async () => {
    const { f } = await via((_h, s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n${"x".repeat(1000)}`);
      setTimeout(() => s.end(), 50);
    });
    const r = await fetch(f.url);
    expect(r.status).toBe(200);
    expect(r.text()).rejects.toThrow();
  });
});

describe("message framing", () => {
  // A body read whole with its head is sent from that read, the client's head written over the
  // backend's (BodyInRead, core/http1/bytes.ts) when it fits there, else copied behind ours.
  for (
    const [what, extra] of [
      // As nginx answers: its Date is kept, its Connection dropped, so the client's head is shorter.
      [
        "the client's head fits where the backend's was",
        `Date: Sun, 06 Dec 2026 04:00:00 GMT\r\nConnection: keep-alive\r\nX-Long: ${"l".repeat(300)}\r\n`,
      ],
      ["the client's head is longer than the backend's", ""],
    ] as const
  ) {
    test(`a body read whole with its head (5 KiB, 16 KiB, 40 KiB): ${what}`, async () => {
      const bodies = [5000, 16 * 1024, 40 * 1024].map((n, k) =>
        Array.from({ length: n }, (_, i) => String.fromCharCode(97 + ((i * 7 + k) % 26))).join("")
      );
      let n = 0;
      const { b, f } = await via((_h, s) => writeAll(s, ok(bodies[n++ % bodies.length]!, `X-Seq: ${n}\r\n${extra}`)));
      for (let round = 0; round < 2; round++) {
        for (let k = 0; k < bodies.length; k++) {
          const r = await fetch(f.url);
          expect(r.status).toBe(200);
          expect(r.headers.get("content-length")).toBe(String(bodies[k]!.length));
          expect(r.headers.get("x-seq")).toBe(String(round * bodies.length + k + 1));
          if (extra !== "") expect(r.headers.get("x-long")).toBe("l".repeat(300));
          expect(await r.text()).toBe(bodies[k]!);
        }
      }
      expect(conns(b)).toBe(1);
      expect(f.access().map((l) => l.bytes)).toEqual([...bodies, ...bodies].map((x) => x.length));
    });
  }

  test("a body read whole with its head reaches middleware as its bytes (the view of the read made when read)", async () => {
    const body = Array.from({ length: 16 * 1024 }, (_, i) => String.fromCharCode(97 + (i % 26))).join("");
    const b = startRawBackend((_h, s) => writeAll(s, ok(body, "Content-Type: text/plain\r\nX-Pad: p\r\n")));
    cleanups.push(() => b.stop());
    const f = await startFulcrum(`pools:
  web: { backends: ["${b.url}"], retry: { attempts: 1 } }
routes:
  - match: { path: /mw }
    pool: web
    middleware: [ { compress: { encodings: [gzip], min_size: 1 } } ]
  - match: { path: / }
    pool: web
`);
    cleanups.push(() => f.stop());
    for (let i = 0; i < 2; i++) {
      const zipped = await fetch(`${f.url}/mw`, { headers: { "accept-encoding": "gzip" }, decompress: false } as RequestInit);
      expect(zipped.headers.get("content-encoding")).toBe("gzip");
      expect(gunzipSync(new Uint8Array(await zipped.arrayBuffer())).toString()).toBe(body);
      const plain = await fetch(`${f.url}/plain`);
      expect(plain.headers.get("x-pad")).toBe("p");
      expect(await plain.text()).toBe(body);
    }
  });

  test("chunked: body decoded across reads, trailers dropped", async () => {
    const { f } = await via((_h, s) => {
      s.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n3;ext=1\r\nabc\r\n");
      setTimeout(() => s.write("4\r\ndefg\r\n0\r\nx-sum: 7\r\n\r\n"), 20);
    });
    const r = await fetch(f.url);
    expect(await r.text()).toBe("abcdefg");
    expect(r.headers.has("x-sum")).toBe(false);
  });

  test("no Content-Length and not chunked: read until the backend closes, then a new connection", async () => {
    const { b, f } = await via((_h, s) => {
      s.write("HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\npart1-");
      setTimeout(() => s.end("part2"), 30);
    });
    expect(await (await fetch(f.url)).text()).toBe("part1-part2");
    expect(await (await fetch(f.url)).text()).toBe("part1-part2");
    expect(conns(b)).toBe(2);
  });

  test("HEAD, 204 and 304 have no body whatever their Content-Length; the connection is reused", async () => {
    const { b, f } = await via((head, s) => {
      if (head.startsWith("HEAD")) s.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
      else if (head.startsWith("GET /204")) s.write("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
      else if (head.startsWith("GET /304")) s.write("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
      else s.write(ok("after"));
    });
    const h = await fetch(f.url, { method: "HEAD" });
    expect(h.status).toBe(200);
    expect(h.headers.get("content-length")).toBe("5");
    expect((await fetch(`${f.url}/204`)).status).toBe(204);
    expect((await fetch(`${f.url}/304`)).status).toBe(304);
    expect(await (await fetch(`${f.url}/x`)).text()).toBe("after");
    expect(conns(b)).toBe(1);
  });

  test("a small body whose rest comes after the response timeout is streamed, not answered 504", async () => {
    // Bodies up to 64 KiB are collected whole before they are handed over; the response timeout
    // bounds the head, so a slow rest must not turn an answer already under way into a 504.
    // Under both limits (64 KiB on the own listener, 16 KiB on Bun.serve): collected whole first.
    const body = "b".repeat(10_000);
    const { f } = await via((_h, s) => {
      writeAll(s, `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 1000)}`);
      setTimeout(() => writeAll(s, body.slice(1000)), 400);
    }, "    timeouts: { response: 100ms }\n");
    const r = await fetch(f.url);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe(body);
    expect(f.access().at(-1)?.status).toBe(200);
  });

  test("1xx interim responses (100 Continue, 103 Early Hints) are skipped", async () => {
    const { f } = await via((_h, s) =>
      s.write(`HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n${ok("final")}`)
    );
    const r = await fetch(f.url);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe("final");
  });
});

describe("connection reuse", () => {
  test("Connection: close from the backend is honoured", async () => {
    const { b, f } = await via((_h, s) => s.write(ok("x", "Connection: close\r\n")));
    await (await fetch(f.url)).text();
    await (await fetch(f.url)).text();
    expect(b.heads.map((h) => h.conn)).toEqual([1, 2]);
  });

  test("a connection is reused only after its response was read to the end", async () => {
    const { b, f } = await via((head, s) => {
      if (!head.startsWith("GET /slow")) return void s.write(ok("quick"));
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n${"a".repeat(50000)}`);
      setTimeout(() => s.write("b".repeat(50000)), 150);
    });
    const slow = fetch(`${f.url}/slow`).then((r) => r.text());
    await sleep(50);
    expect(await (await fetch(`${f.url}/quick`)).text()).toBe("quick");
    expect((await slow).length).toBe(100000);
    expect(b.heads.map((h) => h.conn)).toEqual([1, 2]);
    await (await fetch(`${f.url}/again`)).text();
    expect(conns(b)).toBe(2);
  });

  test("bytes after a complete response are never served: the connection is closed (no smuggling)", async () => {
    const { b, f } = await via((_h, s, at) =>
      s.write(at.conn === 1 ? ok("ok") + "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil" : ok("ok"))
    );
    expect(await (await fetch(f.url)).text()).toBe("ok");
    expect(await (await fetch(f.url)).text()).toBe("ok");
    expect(b.heads.map((h) => h.conn)).toEqual([1, 2]);
  });

  test("bytes arriving on an idle connection close it", async () => {
    const { b, f } = await via((_h, s, at) => {
      s.write(ok("ok"));
      if (at.conn === 1) setTimeout(() => s.write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"), 20);
    });
    expect(await (await fetch(f.url)).text()).toBe("ok");
    await sleep(80);
    expect(await (await fetch(f.url)).text()).toBe("ok");
    expect(b.heads.map((h) => h.conn)).toEqual([1, 2]);
  });

  test("concurrent requests open at most one connection each, then share them", async () => {
    const { b, f } = await via((_h, s) => void setTimeout(() => s.write(ok("x")), 30));
    const burst = () => Promise.all(Array.from({ length: 10 }, () => fetch(f.url).then((r) => r.text())));
    await burst();
    const opened = conns(b);
    expect(opened).toBeLessThanOrEqual(10);
    await burst();
    expect(conns(b)).toBe(opened);
    expect(b.heads.length).toBe(20);
  });

  test("idle connections are closed after keepalive.idle_timeout", async () => {
    const { b, f } = await via((_h, s) => s.write(ok("x")), "    keepalive: { idle_timeout: 100ms }\n");
    await (await fetch(f.url)).text();
    await (await fetch(f.url)).text();
    expect(conns(b)).toBe(1);
    await sleep(300);
    await (await fetch(f.url)).text();
    expect(b.heads.map((h) => h.conn)).toEqual([1, 1, 2]);
  });

  test("keepalive.max_idle bounds the idle connections kept", async () => {
    const { b, f } = await via((_h, s) => void setTimeout(() => s.write(ok("x")), 30), "    keepalive: { max_idle: 2 }\n");
    const burst = () => Promise.all(Array.from({ length: 6 }, () => fetch(f.url).then((r) => r.text())));
    await burst();
    const first = conns(b);
    await burst();
    // Only 2 of the first burst's connections were kept: the second burst opened the rest anew.
    expect(conns(b) - first).toBeGreaterThanOrEqual(first - 2);
  });

  test("256 concurrent clients do not make the proxy reconnect per request", async () => {
    const { b, f } = await via((_h, s) => void setTimeout(() => s.write(ok("x")), 5), "    keepalive: { max_idle: 256 }\n");
    await Promise.all(
      Array.from({ length: 256 }, async () => {
        for (let i = 0; i < 4; i++) expect(await (await fetch(f.url)).text()).toBe("x");
      }),
    );
    expect(b.heads.length).toBe(1024);
    expect(conns(b)).toBeLessThanOrEqual(2 * 256);
  }, 30_000);
});

describe("requests as sent upstream", () => {
  test("exactly the headers given, once each: one Host (the client's), no Connection added", async () => {
    const { b, f } = await via((_h, s) => s.write(ok("x")));
    await (await fetch(`${f.url}/p?q=1`, { headers: { host: "shop.example.com", "x-one": "1", "x-latin": "caf\xe9" } })).text();
    // obs-text passes as the byte it was (latin1), not re-encoded as UTF-8.
    expect(b.heads[0]!.head).toContain("x-latin: caf\xe9\r\n");
    const lines = b.heads[0]!.head.split("\r\n").map((l) => l.toLowerCase());
    expect(lines[0]).toBe("get /p?q=1 http/1.1");
    expect(lines.filter((l) => l.startsWith("host:"))).toEqual(["host: shop.example.com"]);
    expect(lines.filter((l) => l.startsWith("x-one:"))).toEqual(["x-one: 1"]);
    expect(lines.some((l) => l.startsWith("connection:") || l.startsWith("transfer-encoding:"))).toBe(false);
  });

  test("a body is sent with the client's Content-Length, or chunked when it sent none", async () => {
    const seen: { te: string | null; cl: string | null; body: string }[] = [];
    const b = startBackend("echo", async (req) => {
      seen.push({ te: req.headers.get("transfer-encoding"), cl: req.headers.get("content-length"), body: await req.text() });
      return new Response("ok");
    });
    cleanups.push(() => b.stop());
    const f = await startFulcrum(`pools:\n  web:\n    backends: ["${b.url}"]\n    retry: { attempts: 1 }\n`);
    cleanups.push(() => f.stop());
    await (await fetch(f.url, { method: "POST", body: "hello" })).text();
    const stream = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode("chunk-1,"));
        c.enqueue(new TextEncoder().encode("chunk-2"));
        c.close();
      },
    });
    await (await fetch(f.url, { method: "POST", body: stream, duplex: "half" } as RequestInit)).text();
    expect(seen).toEqual([
      { te: null, cl: "5", body: "hello" },
      { te: "chunked", cl: null, body: "chunk-1,chunk-2" },
    ]);
  });
});
